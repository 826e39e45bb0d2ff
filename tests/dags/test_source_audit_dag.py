"""The source audit DAG: parsing its file is as cheap as the report DAGs', and the DAG is what the README says."""

from __future__ import annotations

from pathlib import Path

from tests.dags.test_top_level_imports import FORBIDDEN_PREFIXES, _parse_in_fresh_interpreter

AUDIT_DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "cdr_source_audit_dag.py"


def test_parsing_the_source_audit_dag_imports_no_driver_and_touches_nothing(tmp_path):
    report = _parse_in_fresh_interpreter(tmp_path, AUDIT_DAG_FILE)
    assert report["dag_ids"] == ["cdr_source_audit"]
    new = report["new_modules"]
    assert [m for m in new if m.startswith((*FORBIDDEN_PREFIXES, "cdr_reports.pipeline.audit"))] == []
    assert "cdr_reports.integration.source_audit" in new
    assert report["parse_attempts"] == [] and report["canaries"] == [True] * 6


def test_source_audit_dag_shape():
    from cdr_reports.integration.source_audit import DAG_ID, build_source_audit_dag
    from cdr_reports.pipeline.config import load_settings

    dag = build_source_audit_dag(load_settings({}))
    assert dag.dag_id == DAG_ID == "cdr_source_audit"
    assert dag.task_ids == ["audit"]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 5 * * *", "Europe/Istanbul")
    assert "no index serves the query" in dag.doc_md
    task = dag.get_task("audit")
    assert task.retries == 3 and task.doc_md and "collection scan" in task.doc_md

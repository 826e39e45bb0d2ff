"""Late data: re-running a reported day with report_date replaces its numbers exactly."""

from __future__ import annotations

import random
from datetime import timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa

from cdr_reports.pipeline.load import read_report
from tests.support.processes import build_dag, task_states
from tests.support.reference import expected_report, random_documents
from tests.support.reports import DAY, assert_stored_equals_reference


def test_late_cdrs_and_late_deletions_replace_the_days_report(dag_env, mongo_uri, mongo_db, tmp_path):
    rng = random.Random(77)
    on_time = random_documents(rng, 300, DAY.start_utc, DAY.end_utc)
    # An operator whose every call is withdrawn later (set IsDeleted): its row must disappear.
    withdrawn = [
        {"Operator": {"Id": "WITHDRAWN"}, "DateTime": {"Start": DAY.start_utc + timedelta(hours=h)}, "Duration": 30}
        for h in (1, 5, 9)
    ]
    docs = on_time + withdrawn
    mongo_db.CdrRecords.insert_many([dict(d) for d in docs])
    sink = tmp_path / "reports.db"
    dag_env(
        {},
        {"cdr_mongo": f"mongo://{urlsplit(mongo_uri).netloc}/{mongo_db.name}", "cdr_reports_db": f"sqlite:///{sink}"},
    )
    engine = sa.create_engine(f"sqlite:///{sink}")
    dag = build_dag("daily")
    conf = {"report_date": DAY.start_date.isoformat()}

    first = dag.test(run_conf=conf)
    assert str(first.state) == "success"
    assert_stored_equals_reference(engine, expected_report(docs, DAY.start_utc, DAY.end_utc))
    assert "WITHDRAWN" in {row["operator_id"] for row in read_report(engine, "daily", DAY.start_date)["rows"]}

    # Late arrivals for the day (a new operator, more calls for known ones, some junk) ...
    late = random_documents(random.Random(78), 120, DAY.start_utc, DAY.end_utc)
    late += [
        {
            "Operator": {"Id": "LATE-OP"},
            "DateTime": {"Start": DAY.end_utc - timedelta(minutes=m), "Connect": DAY.end_utc},
            "Duration": 45,
        }
        for m in (1, 2)
    ]
    mongo_db.CdrRecords.insert_many([dict(d) for d in late])
    # ... and late deletions.
    mongo_db.CdrRecords.update_many({"Operator.Id": "WITHDRAWN"}, {"$set": {"IsDeleted": True}})
    for doc in withdrawn:
        doc["IsDeleted"] = True
    everything = docs + late

    second = dag.test(run_conf=conf)
    assert str(second.state) == "success"
    assert task_states(second)["load"] == ("success", 1)
    expected = expected_report(everything, DAY.start_utc, DAY.end_utc)
    assert_stored_equals_reference(engine, expected)
    stored = read_report(engine, "daily", DAY.start_date)
    operators = {row["operator_id"] for row in stored["rows"]}
    assert "LATE-OP" in operators and "WITHDRAWN" not in operators
    # Replaced, not added to: every row comes from the re-run, one row per operator.
    assert {row["dag_run_id"] for row in stored["rows"]} == {stored["run"]["dag_run_id"]} == {second.run_id}
    assert len(stored["rows"]) == len(expected["rows"])
    print(
        f"\nfirst run: source={expected_report(docs, DAY.start_utc, DAY.end_utc)['source']}, "
        f"re-run: source={expected['source']} valid={expected['valid']} rejected={expected['rejected']}"
    )
    engine.dispose()

"""A week's rebuild is as durable as a report: a kill at any step boundary of its load loses nothing.

The rebuild run's `load` task body (`integration.tasks.load` with the run's `rebuild_reason`)
runs in a child process, with its connections from AIRFLOW_CONN_* variables as Airflow gives
them. The child counts its step boundaries (before and after every COMMIT on the report database) and, for
each boundary N, a fresh source and sink are prepared, the child is `kill -9`-ed at boundary N
(Airflow would retry the task: its heartbeat stops) and a second child runs the same body (the
retry). Then the stored week is exactly the rebuilt one, equal to the reference with the late CDR,
and its one `rebuilt` finding names the run and the reason. (The steps before the load keep no
state: `rebuild_rollups` reads the report tables, and `trigger_rebuilds` re-creates nothing on a
retry because the run id is derived from that state: tests/integration/test_rollup.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import date
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.aggregate import build_report
from cdr_reports.pipeline.config import Settings
from cdr_reports.pipeline.load import read_report
from cdr_reports.pipeline.periods import local_midnight_utc, period_containing
from cdr_reports.pipeline.quality.store import read_findings
from cdr_reports.pipeline.rollup import period_days, rules_fingerprint
from cdr_reports.pipeline.runner import count_window, plan_report_windows, run_report
from tests.support.findings import calls
from tests.support.reference import expected_report

pytestmark = pytest.mark.services

TZ = "Europe/Istanbul"
DAY = date(2026, 11, 18)  # the Wednesday a late CDR arrives for
WEEK = period_containing("weekly", DAY, TZ)
RUN_ID = "rebuild__2026-11-16__0123456789abcdef"
REASON = "daily report(s) of 2026-11-18 stored after it (2026-11-23T01:00:00 UTC)"

_TASK = textwrap.dedent(
    """
    import json, os, signal, sys
    from sqlalchemy.engine import default

    kill_at, seen = int(os.environ["KILL_AT"]), []
    original_commit = default.DefaultDialect.do_commit

    def boundary(what):
        seen.append(what)
        print(f"BOUNDARY {len(seen)} {what}", flush=True)
        if len(seen) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def do_commit(self, dbapi_connection):
        boundary("before a commit")
        original_commit(self, dbapi_connection)
        boundary("after a commit")

    default.DefaultDialect.do_commit = do_commit

    from cdr_reports.integration.tasks import load
    from cdr_reports.pipeline.config import load_settings

    report_data = json.loads(open(os.environ["REPORT_JSON"]).read())
    loaded = load(report_data, load_settings(), rebuild_reason=os.environ["REASON"])
    print(f"DONE {len(seen)} {loaded['method']}", flush=True)
    """
)


@pytest.fixture
def stage(tmp_path, mongo_uri, mongo_client):
    """Per call of fresh(n): a fresh collection and SQLite sink with a stale stored week and its rebuild."""
    db = mongo_client[f"cdrrebuild_{os.getpid()}"]
    made: list[str] = []

    class Stage:
        def fresh(self, index: int):
            self.collection = db[f"c{index}"]
            made.append(self.collection.name)
            self.path = tmp_path / f"reports-{index}.db"
            self.engine = sa.create_engine(f"sqlite:///{self.path}")
            self.settings = Settings(collection=self.collection.name)
            for day in period_days(WEEK):
                daily = period_containing("daily", day, TZ)
                self.collection.insert_many([dict(d) for d in calls(daily, "A", 6) + calls(daily, "B", 3)])
                run_report(self.collection, self.engine, daily, self.settings, f"d-{day}")
            run_report(self.collection, self.engine, WEEK, self.settings, "week-before")
            late = {"Operator": {"Id": "LATE"}, "DateTime": {"Start": local_midnight_utc(DAY, TZ)}, "Duration": 2.5}
            self.collection.insert_one(dict(late))
            run_report(self.collection, self.engine, period_containing("daily", DAY, TZ), self.settings, "late")
            # What the rebuild run's extract and aggregate tasks hand to its load.
            fingerprint = rules_fingerprint(self.settings)
            windows = plan_report_windows(self.engine, WEEK, self.settings, fingerprint)
            parts = [count_window(lambda: self.collection, self.engine, w, self.settings) for w in windows]
            report = build_report(WEEK, parts, dag_run_id=RUN_ID, rules_fingerprint=fingerprint)
            assert report.method == "rollup"
            self.report_json = tmp_path / f"report-{index}.json"
            self.report_json.write_text(json.dumps(report.to_dict()))
            return self

        def run(self, kill_at: int) -> tuple[int, str]:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_") or k.startswith("CDR_TEST_")}
            env.update(
                {
                    "KILL_AT": str(kill_at),
                    "REPORT_JSON": str(self.report_json),
                    "REASON": REASON,
                    "CDR_MONGO_COLLECTION": self.collection.name,
                    "AIRFLOW_CONN_CDR_MONGO": f"mongo://{urlsplit(mongo_uri).netloc}/{db.name}",
                    "AIRFLOW_CONN_CDR_REPORTS_DB": f"sqlite:///{self.path}",
                }
            )
            child = subprocess.run([sys.executable, "-c", _TASK], env=env, capture_output=True, text=True, timeout=300)
            return child.returncode, child.stdout + child.stderr[-3000:]

    yield Stage()
    for name in made:
        db.drop_collection(name)


def _check(st, killed_at: str) -> None:
    stored = read_report(st.engine, "weekly", WEEK.start_date)
    assert stored is not None, f"no stored week after {killed_at}"
    want = expected_report(list(st.collection.find({}, {"_id": 0})), WEEK.start_utc, WEEK.end_utc)
    assert (stored["run"]["dag_run_id"], stored["run"]["method"]) == (RUN_ID, "rollup"), killed_at
    assert stored["run"]["source_records"] == want["source"] == 7 * 9 + 1, killed_at
    assert {r["operator_id"]: r["total_calls"] for r in stored["rows"]} == {
        key: row["total_calls"] for key, row in want["rows"].items()
    }, killed_at
    [finding] = read_findings(st.engine, "weekly", WEEK.start_date, verdicts=("rebuilt",))
    assert (finding["dag_run_id"], finding["expected"], finding["actual"]) == (RUN_ID, 63.0, 64), killed_at
    assert finding["detail"] == (
        f"by run {RUN_ID} (rollup, 0 day(s) read from MongoDB): {REASON}; 63 source CDRs before, 64 now"
    ), killed_at


def test_the_rebuild_load_and_its_finding_survive_a_kill_at_every_step(stage):
    probe = stage.fresh(0)
    code, output = probe.run(0)
    assert code == 0, output
    steps = [line for line in output.splitlines() if line.startswith("BOUNDARY ")]
    print(f"\nrebuild load: {len(steps)} step boundaries")
    # One transaction: the rebuilt week and its finding commit together (before and after that commit).
    assert [line.split(" ", 2)[2] for line in steps] == ["before a commit", "after a commit"]
    _check(probe, "no kill")
    for number in range(1, len(steps) + 1):
        st = stage.fresh(number)
        code, output = st.run(number)
        assert code == -signal.SIGKILL, output  # died at the boundary
        code, output = st.run(0)  # the retry
        assert code == 0, output
        _check(st, f"killed at {steps[number - 1]}")

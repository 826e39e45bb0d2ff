"""The MongoDB source failing: a try fails fast with a transient error, retries recover exactly.

Runs a private FerretDB process (fixture `ferret`) that the tests kill and restart on the same
port and data directory, like a crashed and restarted server.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import sqlalchemy as sa
from pymongo.errors import ConnectionFailure

from cdr_reports.integration.connections import mongo_collection
from cdr_reports.integration.failures import fail_fast
from cdr_reports.pipeline import extract as extract_module
from cdr_reports.pipeline.config import load_settings
from tests.support.processes import build_dag, task_states
from tests.support.reference import edge_case_documents, expected_report, random_documents
from tests.support.reports import DAY, assert_stored_equals_reference

DATABASE = "cdr_faults"


@pytest.fixture
def seeded(ferret, ferret_client):
    docs = random_documents(random.Random(11), 300, DAY.start_utc, DAY.end_utc) + edge_case_documents(
        DAY.start_utc, DAY.end_utc
    )
    ferret_client[DATABASE].CdrRecords.insert_many([dict(d) for d in docs])
    return docs


def _extract_like_the_task(settings):
    """Exactly what the extract task does for the day's single slice."""
    with fail_fast("extracting"):
        collection = mongo_collection(settings)
        return extract_module.extract_slice(
            collection, DAY.start_utc, DAY.end_utc, settings.global_filter, settings.max_call_duration_seconds
        )


def test_dead_server_fails_a_try_within_seconds(ferret, seeded, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CDR_MONGO", ferret.conn_uri(DATABASE))
    settings = load_settings({"CDR_MONGO_TIMEOUT_MS": "2000"})
    assert _extract_like_the_task(settings).source_records > 0  # up: works
    ferret.kill()
    began = time.monotonic()
    with pytest.raises(ConnectionFailure) as caught:  # transient: Airflow retries it (no AirflowFailException)
        _extract_like_the_task(settings)
    elapsed = time.monotonic() - began
    print(f"\ndead server: try failed after {elapsed:.2f} s with {type(caught.value).__name__}")
    assert elapsed < 30  # pymongo's own default server selection timeout is 30 s; we configure 2 s


def _killing_find(ferret, after_documents: int, fired: list):
    """ScopedCollection.find that kills the server once `after_documents` have been streamed."""
    original = extract_module.ScopedCollection.find

    def find(self, projection, batch_size):
        for seen, document in enumerate(original(self, projection, batch_size)):
            if seen == after_documents and ferret.running and not fired:
                fired.append(seen)
                ferret.kill()
            yield document

    return find


def test_server_killed_in_the_middle_of_the_stream(ferret, seeded, monkeypatch):
    """The server dies between two batches of the extract's find: the try fails with a transient
    error (no partial counts are returned), and the retry starts the slice from scratch."""
    monkeypatch.setenv("AIRFLOW_CONN_CDR_MONGO", ferret.conn_uri(DATABASE))
    settings = load_settings({"CDR_MONGO_TIMEOUT_MS": "2000"})
    fired: list[int] = []
    monkeypatch.setattr(extract_module, "STREAM_BATCH_SIZE", 50)
    monkeypatch.setattr(extract_module.ScopedCollection, "find", _killing_find(ferret, 60, fired))
    with pytest.raises(ConnectionFailure) as caught:
        _extract_like_the_task(settings)
    print(f"\nkilled after {fired} documents: {type(caught.value).__name__}: {str(caught.value)[:160]}")
    assert fired == [60]  # the getMore of the second batch is what failed


def _restart_later(ferret, seconds: float, log: list) -> threading.Thread:
    def restart():
        time.sleep(seconds)
        ferret.start()  # same port, same data directory
        log.append(time.monotonic())

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("when", ["before-extract", "during-extract"])
def test_retries_recover_once_the_server_is_back(ferret, seeded, dag_env, tmp_path, monkeypatch, when):
    """dag.test of the daily DAG: extract's first try fails, a retry succeeds, the report is exact."""
    sink = tmp_path / "reports.db"
    dag_env({"CDR_RETRIES": "4"}, {"cdr_mongo": ferret.conn_uri(DATABASE), "cdr_reports_db": f"sqlite:///{sink}"})
    attempts: list[float] = []
    restarted: list[float] = []
    threads: list[threading.Thread] = []
    original_extract = extract_module.extract_slice
    original_find = extract_module.ScopedCollection.find

    def extract_slice(*args, **kwargs):
        attempts.append(time.monotonic())
        if when == "before-extract" and len(attempts) == 1:
            threads.append(_restart_later(ferret, 3.0, restarted))  # down since before the run
        return original_extract(*args, **kwargs)

    def find(self, projection, batch_size):
        for seen, document in enumerate(original_find(self, projection, batch_size)):
            if when == "during-extract" and seen == 60 and len(attempts) == 1 and ferret.running and not threads:
                ferret.kill()  # after the first batch of the first try
                threads.append(_restart_later(ferret, 3.0, restarted))
            yield document

    monkeypatch.setattr(extract_module, "extract_slice", extract_slice)
    monkeypatch.setattr(extract_module, "STREAM_BATCH_SIZE", 50)
    monkeypatch.setattr(extract_module.ScopedCollection, "find", find)
    if when == "before-extract":
        ferret.kill()

    dag = build_dag("daily")
    began = time.monotonic()
    run = dag.test(run_conf={"report_date": DAY.start_date.isoformat()})
    took = time.monotonic() - began
    for thread in threads:
        thread.join(10)
    states = task_states(run)
    print(
        f"\n{when}: run {run.state} in {took:.1f} s, extract tries at "
        f"{[round(t - attempts[0], 1) for t in attempts]} s, server back at "
        f"{[round(t - attempts[0], 1) for t in restarted]} s; {states}"
    )
    assert restarted, "the server was never restarted"
    assert str(run.state) == "success"
    state, tries = states["extract[0]"]
    assert state == "success" and tries >= 2, states  # the first try failed and was retried
    assert len(attempts) == tries
    engine = sa.create_engine(f"sqlite:///{sink}")
    assert_stored_equals_reference(engine, expected_report(seeded, DAY.start_utc, DAY.end_utc))
    engine.dispose()

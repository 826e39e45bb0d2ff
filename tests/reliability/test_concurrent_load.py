"""Two loads of the same period at the same time end in exactly one complete report, never a mix."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.load import ensure_tables, load_report
from tests.support.reports import expected_state, make_report, row_counts, stored_state

# Different operators (overlapping and disjoint ids) and different numbers: any mix shows.
REPORT_A = make_report("A", range(0, 12), base=100)
REPORT_B = make_report("B", range(6, 20), base=500)
PREVIOUS = make_report("previous", range(0, 3), base=7)


def _race(
    engine: sa.engine.Engine, reports, barrier_at: str | None = "DELETE FROM cdr_report_run"
) -> dict[str, BaseException | None]:
    """Run load_report for each report in its own thread; all meet at a barrier just before
    their first `barrier_at` statement (by default the load transaction's first statement; None:
    each thread's very first statement), then race."""
    with engine.connect():
        pass  # first connect initializes the dialect under a pool lock: not inside the race
    barrier = threading.Barrier(len(reports))
    arrived: set[int] = set()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def meet(conn, cursor, statement, parameters, context, executemany):
        me = threading.get_ident()
        wanted = barrier_at is None or statement.lstrip().upper().startswith(barrier_at.upper())
        if wanted and me not in arrived:
            arrived.add(me)
            barrier.wait(timeout=30)

    outcomes: dict[str, BaseException | None] = {}

    def load(report):
        try:
            load_report(engine, report)
            outcomes[report.dag_run_id] = None
        except BaseException as exc:
            outcomes[report.dag_run_id] = exc

    threads = [threading.Thread(target=load, args=(report,)) for report in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    sa.event.remove(engine, "before_cursor_execute", meet)
    assert not any(thread.is_alive() for thread in threads), "a load hung (deadlock?)"
    assert len(arrived) == len(reports), "the loads did not all reach the barrier inside their transaction"
    return outcomes


def _check_one_complete_report(engine, outcomes) -> str:
    state = stored_state(engine)
    candidates = {"run-A": expected_state(REPORT_A), "run-B": expected_state(REPORT_B)}
    winners = [name for name, expected in candidates.items() if state == expected]
    assert len(winners) == 1, f"stored report is not exactly one of the two loads: {state}"
    winner = winners[0]
    assert row_counts(engine) == {"cdr_operator_report": len(candidates[winner]["rows"]), "cdr_report_run": 1}
    for name, error in outcomes.items():
        # A load may lose, but only with an error worth a retry: never a permanent one.
        assert error is None or not isinstance(error, PermanentError), f"{name}: {error!r}"
    return winner


@pytest.mark.parametrize("previous", [False, True], ids=["first-load", "replacing"])
def test_two_concurrent_loads_leave_one_complete_report(sql_engine, previous):
    ensure_tables(sql_engine)
    if previous:
        load_report(sql_engine, PREVIOUS)
    outcomes = _race(sql_engine, [REPORT_A, REPORT_B])
    winner = _check_one_complete_report(sql_engine, outcomes)
    print(
        f"\n{sql_engine.dialect.name} previous={previous}: final state = {winner}; outcomes = "
        f"{ {k: type(v).__name__ if v else 'ok' for k, v in outcomes.items()} }"
    )
    # Whatever happened, retrying a loser converges: the retried report is then stored exactly.
    loser = REPORT_A if winner == "run-B" else REPORT_B
    if outcomes[loser.dag_run_id] is not None:
        load_report(sql_engine, loser)
        assert stored_state(sql_engine) == expected_state(loser)


def test_concurrent_first_loads_into_an_empty_database(pg_engine):
    """Both loads also race to create the tables (the very first report of a new sink)."""
    outcomes = _race(pg_engine, [REPORT_A, REPORT_B], barrier_at=None)
    _check_one_complete_report(pg_engine, outcomes)

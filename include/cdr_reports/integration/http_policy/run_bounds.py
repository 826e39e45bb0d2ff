"""Backfill and trigger bounds of the report DAGs, answered early by the api-server.

For the DAGs on ``CalendarPeriodTimetable``: ``POST /api/v2/backfills`` (and its dry run) is
refused with 422 when the backfill would start before ``CDR_EARLIEST_REPORT_DATE`` or create more
than the timetable's run cap, and ``POST /api/v2/dags/<id>/dagRuns`` when its ``conf.report_date``
names such a period. The body is read with Airflow's own request models (every date form Airflow
accepts: ISO text with or without an offset, date-only, unix seconds as number or text) and the
rule is the timetable's (``timetable.py``), which also enforces it at depth for every client, the
CLI included. FAB authorizes a backfill as "create DAG runs", the same permission as a manual
trigger, so a role that may trigger may also backfill.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cdr_reports.integration.http_policy.asgi import ASGIApp, Receive, Scope, Send, app_path, read_body, send_json
from cdr_reports.integration.timetable import CalendarPeriodTimetable, report_date_refusal

log = logging.getLogger(__name__)

BACKFILL_PATHS = frozenset({"/api/v2/backfills", "/api/v2/backfills/dry_run"})
TRIGGER_PATH = re.compile(r"^/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns$")


class RunBounds:
    """ASGI policy: 422 for a backfill or a manual run outside the report DAG's bounds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") != "POST":
            await self.app(scope, receive, send)
            return
        path = app_path(scope)
        trigger = TRIGGER_PATH.match(path)
        if path in BACKFILL_PATHS or trigger:
            from anyio import to_thread  # the api-server's event loop library (not needed elsewhere)

            body, receive = await read_body(receive)
            # The DAG's stored timetable is a database read: off the event loop.
            if trigger:
                refusal = await to_thread.run_sync(trigger_refusal, trigger["dag_id"], body)
            else:
                refusal = await to_thread.run_sync(backfill_refusal, body)
            if refusal is not None:
                log.warning("refused a %s request: %s", "trigger" if trigger else "backfill", refusal)
                await send_json(send, 422, {"detail": refusal})
                return
        await self.app(scope, receive, send)


def stored_timetable(dag_id: str) -> Any:
    """The timetable of the latest serialized version of ``dag_id`` (None: no such DAG)."""
    # Deferred, as below: the api-server's modules; the plugin importing this runs in every Airflow process.
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        serdag = session.scalar(SerializedDagModel.latest_item_select_object(dag_id))
        return serdag.dag.timetable if serdag is not None else None


def backfill_refusal(
    body: bytes, now: datetime | None = None, timetable_of: Callable[[str], Any] = stored_timetable
) -> str | None:
    """Why a backfill request must be refused, or None (Airflow decides the rest).

    The body is validated by Airflow's own ``BackfillPostBody`` and its dates coerced as the route
    does (``timezone.coerce_datetime``: naive means ``[core] default_timezone``), so the dates
    checked are exactly the dates Airflow would use. Only DAGs on ``CalendarPeriodTimetable``.
    """
    from airflow._shared.timezones import timezone  # what the backfill routes use
    from airflow.api_fastapi.core_api.datamodels.backfills import BackfillPostBody
    from pydantic import ValidationError

    try:
        request = BackfillPostBody.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        return None  # Airflow answers malformed bodies itself (422)
    timetable = timetable_of(request.dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return None
    start = timezone.coerce_datetime(request.from_date)
    end = timezone.coerce_datetime(request.to_date)
    return timetable.backfill_refusal(request.dag_id, start, end, now or datetime.now(UTC))


def trigger_refusal(
    dag_id: str, body: bytes, now: datetime | None = None, timetable_of: Callable[[str], Any] = stored_timetable
) -> str | None:
    """Why a manual run's ``conf.report_date`` must be refused, or None.

    ``logical_date`` and explicit data intervals are refused by the timetable itself (400); the
    ``report_date`` param is plain text to Airflow (JSON schema ``format: date``), so its period
    is checked here, before a run is created (the ``plan`` task would refuse it at run time).
    """
    try:
        request = json.loads(body)
    except ValueError:
        return None
    conf = request.get("conf") if isinstance(request, dict) else None
    report_date = conf.get("report_date") if isinstance(conf, dict) else None
    if not isinstance(report_date, str):
        return None
    timetable = timetable_of(dag_id)
    if not isinstance(timetable, CalendarPeriodTimetable):
        return None
    return report_date_refusal(timetable, report_date, now or datetime.now(UTC))

"""The FastAPI app of the "CDR Reports" view, mounted by the plugin in the api-server.

Routes (relative to the mount path, ``/cdr-reports`` by default):

====================  =========================================================================
``GET /``             the view (HTML): type, period, operator table, reconciliation, trend chart
``GET /report.csv``   the shown report as CSV (``type``, ``period``)
``GET /api/periods``  stored periods of a type, newest first (``limit`` <= 500)
``GET /api/report``   one stored report as JSON (``type``, ``period``; default the latest)
``GET /api/trend``    totals per period (``periods`` <= 100, optional ``operator``, ``until``)
``GET /static/...``   the page's own script, stylesheet and nav icons
====================  =========================================================================

Every route needs an authenticated Airflow user (401 otherwise); the report routes also need
read access to the runs of the DAG writing that report type (403 otherwise), see ``access``.
Responses are ``Cache-Control: no-store`` (reports change on re-runs) and carry a strict
Content-Security-Policy. The report database is the Airflow connection ``CDR_SQL_CONN_ID``.
"""

from __future__ import annotations

import logging
from datetime import date
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from cdr_reports.integration.connections import sql_engine
from cdr_reports.integration.report_view import access
from cdr_reports.integration.report_view.csv_export import csv_filename
from cdr_reports.integration.report_view.csv_export import report_csv as to_csv
from cdr_reports.integration.report_view.queries import (
    DEFAULT_LISTED_PERIODS,
    DEFAULT_TREND_PERIODS,
    MAX_LISTED_PERIODS,
    MAX_TREND_PERIODS,
    EngineCache,
    find_period,
    list_periods,
    operator_choices,
    read_stored_report,
    read_trend,
)
from cdr_reports.integration.report_view.render import CONTENT_SECURITY_POLICY, PageModel, message_page, page_html
from cdr_reports.pipeline.config import load_settings
from cdr_reports.pipeline.report_types import REPORT_TYPES, ReportTypeName

log = logging.getLogger(__name__)

URL_PREFIX = "/cdr-reports"
APP_NAME = "CDR Reports"
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "icon-dark.svg": "image/svg+xml",
}
_engines = EngineCache()

TypeQuery = Annotated[ReportTypeName, Query(description="report type")]
OptionalTypeQuery = Annotated[ReportTypeName | None, Query(description="report type (default: the first you may read)")]
PeriodQuery = Annotated[date | None, Query(description="any date inside the period (default: the latest stored)")]
OperatorQuery = Annotated[str | None, Query(max_length=255, description="operator id for the trend (default: all)")]
TrendQuery = Annotated[
    int, Query(ge=1, le=MAX_TREND_PERIODS, description=f"periods in the trend, 1..{MAX_TREND_PERIODS}")
]
UserDep = Annotated[Any, Depends(access.current_user)]


def _security_headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _settings() -> Any:
    return load_settings()


def report_engine(settings: Any) -> Any:
    """The report database's engine (connection ``settings.sql_conn_id``, resolved by Airflow)."""
    return _engines.get(settings.sql_conn_id, lambda: sql_engine(settings))


def _airflow_base() -> str:
    """The Airflow UI's root path without the trailing slash ("" when served at the host root)."""
    # Deferred: the API server's app module loads the plugins, this one included (a cycle at the top).
    from airflow.api_fastapi.app import API_ROOT_PATH

    return API_ROOT_PATH.rstrip("/")


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _database_error(exc: Exception) -> HTTPException:
    log.error("reading the report database failed", exc_info=exc)
    return HTTPException(503, f"the report database cannot be read: {type(exc).__name__} (see the api-server log)")


class Reader:
    """Queries of one request, against the configured report database."""

    def __init__(self) -> None:
        try:
            self.settings = _settings()
            self.engine = report_engine(self.settings)
        except Exception as exc:  # a missing or bad connection is a 503, not a crash
            raise _database_error(exc) from exc
        self.schema = self.settings.sql_schema

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(self.engine, *args, schema=self.schema, **kwargs)
        except HTTPException:
            raise
        except Exception as exc:  # any driver error: 503, logged with its traceback
            raise _database_error(exc) from exc


def _stored_report(reader: Reader, report_type: str, period: date | None) -> Any:
    start = reader.call(find_period, report_type, period)
    if start is None:
        return None
    return reader.call(read_stored_report, report_type, start)


def _report_json(report: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value

    return {
        "run": {key: plain(value) for key, value in report.run.items()},
        "columns": list(report.columns),
        "rows": [{key: plain(value) for key, value in row.items()} for row in report.rows],
        "totals": report.totals(),
        "checks": [{"check": text, "ok": ok} for text, ok in report.checks()],
        "quality": None if report.quality is None else [{k: plain(v) for k, v in f.items()} for f in report.quality],
    }


async def http_error(request: Request, exc: HTTPException) -> Response:
    """JSON for API clients; a small readable page when a browser opens a view URL."""
    headers = dict(exc.headers or {})
    if _wants_html(request) and exc.status_code in (401, 403, 404, 503):
        prefix = _prefix(request)
        titles = {401: "Sign in required", 403: "No access", 404: "Not found", 503: "Report database unavailable"}
        text, link = str(exc.detail), None
        if exc.status_code == 401:
            target = prefix + "/" + (f"?{request.url.query}" if request.url.query else "")
            link = (f"{_airflow_base()}/auth/login/?next={quote(target, safe='')}", "Sign in")
        elif exc.status_code == 403:
            text = (
                "Your account may not read the runs of this report's DAG, so it may not see its reports "
                "(the ReportViewer role may). Ask an Airflow administrator."
            )
            link = (f"{_airflow_base()}/", "Back to Airflow")
        response: Response = HTMLResponse(
            message_page(prefix, titles[exc.status_code], text, link), exc.status_code, headers=headers
        )
    else:
        response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=headers)
    return _security_headers(response)


def create_app() -> FastAPI:
    """A new app instance (the plugin mounts one; tests may build their own)."""
    app = FastAPI(
        title="CDR Reports view",
        description="Stored CDR reports for the Airflow UI (plugin cdr_reports)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]

    @app.get("/", response_class=HTMLResponse)
    def view(
        request: Request,
        user: UserDep,
        type: OptionalTypeQuery = None,  # the query parameter's name
        period: PeriodQuery = None,
        operator: OperatorQuery = None,
        periods: TrendQuery = DEFAULT_TREND_PERIODS,
    ) -> Response:
        readable = access.readable_report_types(user)
        report_type = type or (readable[0] if readable else REPORT_TYPES[0])
        access.require_report_read(request, user, report_type)
        reader = Reader()
        report = _stored_report(reader, report_type, period)
        operator = operator or None
        trend = reader.call(read_trend, report_type, periods, operator, until=report.period_start if report else None)
        model = PageModel(
            prefix=_prefix(request),
            airflow_base=_airflow_base(),
            report_types=readable,
            report_type=report_type,
            periods=reader.call(list_periods, report_type, limit=DEFAULT_LISTED_PERIODS),
            report=report,
            requested_period=period,
            operators=operator_choices(report) if report else [],
            operator=operator,
            trend_periods=periods,
            trend=trend,
            user=access.user_name(user),
        )
        status = 404 if report is None and period is not None else 200
        return _security_headers(HTMLResponse(page_html(model), status))

    @app.get("/report.csv")
    def report_csv(request: Request, user: UserDep, type: TypeQuery, period: PeriodQuery = None) -> Response:
        access.require_report_read(request, user, type)
        report = _stored_report(Reader(), type, period)
        if report is None:
            raise HTTPException(404, f"no {type} report stored" + (f" for {period.isoformat()}" if period else ""))
        response = Response(
            to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{csv_filename(report)}"'},
        )
        return _security_headers(response)

    @app.get("/api/report")
    def report_json(request: Request, user: UserDep, type: TypeQuery, period: PeriodQuery = None) -> Response:
        access.require_report_read(request, user, type)
        report = _stored_report(Reader(), type, period)
        if report is None:
            raise HTTPException(404, f"no {type} report stored" + (f" for {period.isoformat()}" if period else ""))
        return _security_headers(JSONResponse(_report_json(report)))

    @app.get("/api/periods")
    def periods_json(
        request: Request,
        user: UserDep,
        type: TypeQuery,
        limit: Annotated[int, Query(ge=1, le=MAX_LISTED_PERIODS)] = DEFAULT_LISTED_PERIODS,
    ) -> Response:
        access.require_report_read(request, user, type)
        rows = Reader().call(list_periods, type, limit=limit)
        body = [
            {"period_start": p.period_start.isoformat(), "period_end": p.period_end.isoformat(),
             "operators": p.operators, "valid_records": p.valid_records}
            for p in rows
        ]  # fmt: skip
        return _security_headers(JSONResponse({"report_type": type, "periods": body}))

    @app.get("/api/trend")
    def trend_json(
        request: Request,
        user: UserDep,
        type: TypeQuery,
        periods: TrendQuery = DEFAULT_TREND_PERIODS,
        operator: OperatorQuery = None,
        until: PeriodQuery = None,
    ) -> Response:
        access.require_report_read(request, user, type)
        trend = Reader().call(read_trend, type, periods, operator or None, until=until)
        body = {
            "report_type": type,
            "operator_id": trend.operator_id,
            "points": [
                {"period_start": p.period_start.isoformat(), "period_end": p.period_end.isoformat(),
                 "total_calls": p.total_calls, "answered_calls": p.answered_calls, "answer_ratio": p.answer_ratio}
                for p in trend.points
            ],
        }  # fmt: skip
        return _security_headers(JSONResponse(body))

    @app.get("/static/{name}")
    def static(name: str, user: UserDep) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise HTTPException(404, "not found")
        data = resources.files("cdr_reports.integration.report_view").joinpath("static", name).read_bytes()
        response = Response(data, media_type=media_type)
        _security_headers(response)
        response.headers["Cache-Control"] = "private, max-age=300"
        return response

    return app


app = create_app()


def plugin_registration(url_prefix: str = URL_PREFIX) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fastapi_apps entry, external_views entry) for the AirflowPlugin."""
    fastapi_app = {"app": app, "url_prefix": url_prefix, "name": APP_NAME}
    external_view = {
        "name": APP_NAME,
        # Relative to the UI's base URL: the UI resolves it against its own location.
        "href": f"{url_prefix.lstrip('/')}/",
        "url_route": url_prefix.strip("/"),
        "destination": "nav",
        "nav_top_level": True,
        "icon": f"{url_prefix.lstrip('/')}/static/icon.svg",
        "icon_dark_mode": f"{url_prefix.lstrip('/')}/static/icon-dark.svg",
    }
    return fastapi_app, external_view

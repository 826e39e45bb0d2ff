"""The report e-mail, composed from a stored report: subject, HTML body and CSV attachment.

Rendering only (render.py, csv_export.py); sending it once per distinct content is
integration/report_delivery.py's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdr_reports.integration.report_view.csv_export import csv_filename, report_csv
from cdr_reports.integration.report_view.queries import StoredReport, dag_id_for
from cdr_reports.integration.report_view.render import airflow_run_path, email_html, email_subject


@dataclass(frozen=True)
class ReportEmail:
    subject: str
    html: str
    attachment_name: str
    attachment: str


def compose_email(
    report: StoredReport, *, corrected: bool, previous: Mapping[str, Any] | None, airflow_base_url: str
) -> ReportEmail:
    """The e-mail of `report`; `corrected` marks a copy replacing `previous` (the last one sent).

    The run is linked in the Airflow UI when `airflow_base_url` (``[api] base_url``) is absolute.
    """
    base = airflow_base_url.rstrip("/")
    dag_run_id = str(report.run["dag_run_id"])
    run_url = (
        airflow_run_path(base, dag_id_for(report.report_type), dag_run_id)
        if base.startswith(("http://", "https://"))
        else None
    )
    return ReportEmail(
        subject=email_subject(report, corrected=corrected),
        html=email_html(report, corrected=corrected, previous=previous, run_url=run_url),
        attachment_name=csv_filename(report),
        attachment=report_csv(report),
    )

"""The "CDR Reports" view in the Airflow UI, and the rendering its e-mail shares.

The DAG-side code lives beside it in ``cdr_reports.integration``: the report Assets
(``report_assets``), the ``email_report`` task (``email_task``) and the once-per-content delivery
(``report_delivery``); import-linter keeps it out of this package (pyproject.toml).

Modules (each imported only where it is needed, so DAG parsing stays cheap):

* ``queries``: read-only SQLAlchemy queries of the stored reports;
* ``render``: HTML (view and e-mail), server-side SVG trend chart, number formatting;
* ``csv_export``: CSV of a stored report, neutralised against spreadsheet formula injection;
* ``access``: the api-server's own FastAPI security dependencies applied to the report DAGs;
* ``app``: the FastAPI app the plugin mounts in the api-server (``/cdr-reports``);
* ``email``: the report e-mail (subject, HTML, CSV attachment) composed from a stored report.
"""

"""The "CDR Reports" view in the Airflow UI, report Assets and report e-mail delivery.

Modules (each imported only where it is needed, so DAG parsing stays cheap):

* ``assets``: the Asset each report DAG's ``load`` task produces (``airflow.sdk`` only: DAG parse time);
* ``queries``: read-only SQLAlchemy queries of the stored reports;
* ``render``: HTML (view and e-mail), server-side SVG trend chart, number formatting;
* ``csv_export``: CSV of a stored report, neutralised against spreadsheet formula injection;
* ``access``: the api-server's own FastAPI security dependencies applied to the report DAGs;
* ``app``: the FastAPI app the plugin mounts in the api-server (``/cdr-reports``);
* ``delivery``: e-mail of a stored report after a successful load, once per distinct content.
"""

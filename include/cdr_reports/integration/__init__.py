"""Airflow integration: DAG building, task bodies, connections, timetable, alerts, RBAC, UI.

Depends on `cdr_reports.pipeline`; the pipeline never imports from here.
"""

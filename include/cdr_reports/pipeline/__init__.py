"""The report pipeline without Airflow: plan → extract → aggregate → load.

Nothing in this subpackage imports Airflow (tests/dags/test_layers.py checks it), so the same
code runs in DAG tasks, tests, the demo and the benchmarks.
"""

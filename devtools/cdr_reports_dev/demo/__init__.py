"""The local demo (`make demo`, `make airflow`, `make airflow-cli`) and the Docker stack's seed step.

One job per module:

- `state`: where the demo keeps its state, its private modes, the knobs it reads from the environment.
- `seeding`: synthetic CDRs and the report index in MongoDB/FerretDB.
- `airflow_config`: the environment every Airflow process of the demo runs with.
- `metadata_db`: the Airflow metadata database (PostgreSQL), its migration and the admin user.
- `processes`: the Airflow processes: `airflow` commands, DAG runs, the supervised components.
- `reports`: which periods the demo reports, the daily reports its roll-ups read, the printed tables.
- `cli`: the commands (`python -m cdr_reports_dev.demo seed|run|airflow|cli|print`).
"""

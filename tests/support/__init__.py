"""The one test-support package: servers, processes, ports, the skip-or-fail rule, reference data.

- `services`: the servers `make services` starts (URIs from the environment or .services/env),
  `in_ci()` and `skip_or_fail()` (skip loudly locally, fail under CI=true), free ports.
- `processes`: servers a test owns (its own FerretDB, PostgreSQL cluster, SMTP/Slack sinks) and
  Airflow run helpers.
- `reference`: the independent reference implementation and random/edge-case CDR datasets.
- `reports`: hand-made reports and stored-state helpers for load tests.
"""

"""The api-server's HTTP policy: four ASGI policies, composed in one root middleware (middleware.py).

Airflow 3.3 puts a plugin's ``fastapi_root_middlewares`` around the whole api-server app: the
React UI and its static files, ``/api/v2``, ``/ui``, the FAB pages and APIs under ``/auth``, the
task execution API under ``/execution`` and plugin apps. The policies add there what Airflow and
FAB do not do themselves (docs/security.md lists them, tests/security checks them), one module each:

* ``headers``: response headers (Content-Security-Policy, framing, nosniff, referrer policy).
* ``closed_endpoints``: anonymous visitors get 401 on the version and OpenAPI documents, everyone
  404 on the Swagger/ReDoc pages.
* ``token_brake``: the brute-force brake on the password-taking JSON endpoints.
* ``run_bounds``: backfill and trigger bounds of the report DAGs, answered early.

``asgi`` holds what they share (ASGI types, the app path, JSON answers, body replay). Only the
standard library at import time: the plugin that imports the middleware is loaded by every
Airflow process, and only the api-server builds it.
"""

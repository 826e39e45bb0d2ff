"""Task-instance hostname of a Celery worker of the test stack: `<worker name>@<host>`.

Airflow records on each task instance the hostname its worker reports ([core] hostname_callable,
default the FQDN). In production every worker runs on its own host or container, so the FQDN
already tells them apart; the test stack runs two workers on one machine, so each worker process
gets CDR_TEST_WORKER_NAME and this callable, and the task instances say which worker ran them.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """`w1@host` (the Celery node name) inside a test worker; the plain FQDN anywhere else."""
    name = os.environ.get("CDR_TEST_WORKER_NAME")
    return f"{name}@{socket.getfqdn()}" if name else socket.getfqdn()

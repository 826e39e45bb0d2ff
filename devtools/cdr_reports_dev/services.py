"""The local servers `make services` starts: their URIs, read from the environment or .services/env.

One reader for the demo, the benchmarks and the tests (tests/support/services.py re-exports it).
"""

from __future__ import annotations

import os
from pathlib import Path


def services_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .services/env file (empty when `make services` has not run)."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def service_uri(name: str, env_file: Path) -> str | None:
    """`name` from the environment first, else from `env_file`; None when neither has it."""
    return os.environ.get(name) or services_env(env_file).get(name)

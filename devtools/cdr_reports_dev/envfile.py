"""Write a `.env` for the compose stack from `.env.example`, with every empty secret generated.

    python -m cdr_reports_dev.envfile            # or: make env   (refuses to overwrite .env)
    python -m cdr_reports_dev.envfile --force --output other.env

Every secret is random (the `secrets` module), URL-safe (they end up in connection URLs) and
meets its server's rules (SQL Server wants upper case, lower case and digits). Non-secret
settings keep the example's values; `AIRFLOW_UID` is set to the current user on Linux.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _hex(n: int) -> Callable[[], str]:
    return lambda: secrets.token_hex(n)


def _fernet_key() -> str:
    # What cryptography.fernet.Fernet.generate_key() returns: 32 random bytes, URL-safe base64.
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _mssql_password() -> str:
    return f"Cdr-{secrets.token_hex(16)}X"


# One generator per secret of .env.example (tests/unit/test_envfile.py: none is missing).
GENERATORS: dict[str, Callable[[], str]] = {
    "AIRFLOW_DB_PASSWORD": _hex(24),
    "AIRFLOW_FERNET_KEY": _fernet_key,
    "AIRFLOW_JWT_SECRET": _hex(32),
    "AIRFLOW_API_SECRET_KEY": _hex(32),
    "_AIRFLOW_WWW_USER_PASSWORD": _hex(16),
    "MONGO_ROOT_PASSWORD": _hex(24),
    "MONGO_REPORTS_PASSWORD": _hex(24),
    "MSSQL_SA_PASSWORD": _mssql_password,
    "MSSQL_REPORTS_PASSWORD": _mssql_password,
}


def render(example: str, uid: int | None = None) -> str:
    """`.env.example` with each empty `NAME=` line filled; unknown empty names are an error."""
    lines = []
    for line in example.splitlines():
        if match := re.fullmatch(r"([A-Z_][A-Z0-9_]*)=", line):
            name = match.group(1)
            if name not in GENERATORS:
                raise SystemExit(f".env.example: no generator for the secret {name} (add one to {__name__})")
            line = f"{name}={GENERATORS[name]()}"
        lines.append(line)
    if uid is not None and not any(line.startswith("AIRFLOW_UID=") for line in lines):
        lines += [
            "",
            "# Owner of the files the containers write into mounted folders (this user).",
            f"AIRFLOW_UID={uid}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdr_reports_dev.envfile", description=__doc__.split("\n")[0])
    parser.add_argument("--example", type=Path, default=REPO / ".env.example")
    parser.add_argument("--output", type=Path, default=REPO / ".env")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    args = parser.parse_args(argv)
    if args.output.exists() and not args.force:
        print(
            f"{args.output} exists; keep it, or pass --force to replace it (its secrets would change)", file=sys.stderr
        )
        return 1
    text = render(args.example.read_text(), uid=os.getuid() if hasattr(os, "getuid") else None)
    args.output.touch(mode=0o600)
    args.output.chmod(0o600)
    args.output.write_text(text)
    print(f"wrote {args.output} with generated secrets (mode 600); next: docker compose up -d --build")
    return 0


if __name__ == "__main__":
    sys.exit(main())

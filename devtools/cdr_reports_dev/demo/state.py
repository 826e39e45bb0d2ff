"""Where the demo keeps its state, and the knobs it reads from the environment.

The state folder (DEMO_STATE_DIR, default .services) holds the Airflow home
(`demo_airflow_home`: secrets, logs, the migration marker) and the SQLite report database; both
are owner-only (docs/security.md, "Secrets at rest").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cdr_reports_dev.services import services_env

DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27027/"
DAG_FILE = Path("dags") / "cdr_report_dags.py"

# What the demo keeps in its state folder: Airflow's home (secrets, logs, marker), the report
# database, the services' URIs with the test PostgreSQL password.
PRIVATE_STATE_ENTRIES = (
    "demo_airflow_home",
    "demo_reports.db",
    "demo_reports.db-journal",
    "demo_reports.db-wal",
    "env",
)


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


@dataclass(frozen=True)
class DemoPaths:
    repo: Path
    state: Path

    @property
    def airflow_home(self) -> Path:
        return self.state / "demo_airflow_home"

    @property
    def reports_db(self) -> Path:
        return self.state / "demo_reports.db"

    @property
    def logs(self) -> Path:
        return self.airflow_home / "logs"


def repo_root() -> Path:
    for candidate in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (candidate / DAG_FILE).is_file():
            return candidate
    raise SystemExit(f"cannot find {DAG_FILE}: run the demo from the repository (make demo)")


def demo_paths() -> DemoPaths:
    repo = repo_root()
    state = Path(os.environ.get("DEMO_STATE_DIR") or repo / ".services").resolve()
    return DemoPaths(repo=repo, state=state)


def make_private(paths: DemoPaths) -> None:
    """Owner-only modes for the demo's state, whatever the parent folder's mode and the umask.

    Everything created from here on is private through the umask (0077, inherited by the Airflow
    processes and their task processes); what an earlier run left with wider modes is narrowed:
    folders 0700, files 0600 (docs/security.md, "Secrets at rest").
    """
    os.umask(0o077)
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o700)
    for name in PRIVATE_STATE_ENTRIES:
        top = paths.state / name
        if top.is_symlink() or not top.exists():
            continue
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)


def int_env(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise SystemExit(f"{name}={raw!r} must be >= {low}")
    return value


def demo_mongo_uri(repo: Path) -> str:
    return (
        os.environ.get("DEMO_MONGO_URI")
        or os.environ.get("CDR_TEST_MONGO_URI")
        or services_env(repo / ".services" / "env").get("CDR_TEST_MONGO_URI")
        or DEFAULT_MONGO_URI
    )


def mongo_database() -> str:
    return os.environ.get("DEMO_MONGO_DATABASE") or "cdr_demo"

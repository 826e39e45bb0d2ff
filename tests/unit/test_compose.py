"""The Docker stack's files: docker-compose.yaml, Dockerfile, .env.example and docker/ scripts.

No Docker engine is needed: the compose file is checked as YAML, validated with the
`docker-compose config` CLI, and the two Airflow scripts of the stack (init, maintenance) are
run natively against a copy of a migrated SQLite metadata DB.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from cdr_reports.integration.security import AIRFLOW_HARDENING_ENV, REPORT_ACCESS_VARIABLE, REPORT_DB_GRANTS
from cdr_reports.pipeline.config import ENV_VARS
from tests.support.services import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
FAB = "cdr_reports.integration.auth_manager.CdrFabAuthManager"  # FabAuthManager + credential-bound tokens

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-db-clean",
    "airflow-worker",
    "flower",
}
REQUIRED_SERVICES = AIRFLOW_SERVICES | {
    "postgres",
    "mongo",
    "mongo-seed",
    "mongo-init",
    "mssql",
    "reports-schema",
    "mssql-init",
    "redis",
}
# Values that carry a credential: they must come from .env as ${VAR:?...}.
# (SECRET_MASK_ADAPTER names a function, not a secret.)
SECRET_KEY_RE = re.compile(
    r"PASSWORD|SECRET(?!_MASK_ADAPTER)|FERNET|_KEY$|^AIRFLOW_CONN_|SQL_ALCHEMY_CONN|RESULT_BACKEND|MONGO_URI"
)
REQUIRED_REF_RE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):\?[^}]*\}")
ANY_REF_RE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")
OPTIONAL_REF_RE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*:-[^}]*\}")


def mask(value: str) -> str:
    """Required references -> REF, optional ones -> VAR, so that a URL parses."""
    return OPTIONAL_REF_RE.sub("VAR", REQUIRED_REF_RE.sub("REF", value))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_example_names() -> dict[str, str | None]:
    """Variable -> value for set lines, None for commented-out `# NAME=...` lines."""
    names: dict[str, str | None] = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if match := re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line):
            names[match.group(1)] = match.group(2)
        elif match := re.match(r"^#\s*([A-Z_][A-Z0-9_]*)=", line):
            names.setdefault(match.group(1), None)
    return names


def depends(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), f"depends_on must state conditions, got {deps!r}"
    return {name: spec["condition"] for name, spec in deps.items()}


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_all_services_are_defined(services):
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)
    # The Celery pieces stay out of a plain `docker compose up`.
    assert services["redis"]["profiles"] == ["celery", "flower"]
    assert services["airflow-worker"]["profiles"] == ["celery"]
    assert services["flower"]["profiles"] == ["flower"]
    for name in REQUIRED_SERVICES - {"redis", "airflow-worker", "flower"}:
        assert "profiles" not in services[name], name


def test_healthchecks(services):
    assert healthcheck_text(services["postgres"]).startswith("CMD pg_isready -U airflow")
    assert "mongosh" in healthcheck_text(services["mongo"]) and "ping" in healthcheck_text(services["mongo"])
    mssql = healthcheck_text(services["mssql"])
    assert "sqlcmd" in mssql and "SELECT 1" in mssql and "-b" in mssql.split()
    assert (
        healthcheck_text(services["airflow-apiserver"]) == "CMD curl --fail http://localhost:8080/api/v2/monitor/health"
    )
    assert healthcheck_text(services["airflow-scheduler"]) == "CMD curl --fail http://localhost:8974/health"
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "DagProcessorJob" in healthcheck_text(services["airflow-dag-processor"])
    assert "TriggererJob" in healthcheck_text(services["airflow-triggerer"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])


def test_startup_order_uses_conditions(services):
    healthy, done = "service_healthy", "service_completed_successfully"
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-db-clean",
    ):
        deps = depends(services[name])
        assert deps["postgres"] == healthy, name
        assert deps["airflow-init"] == done, name
    assert depends(services["airflow-init"]) == {"postgres": healthy}
    # Tasks run in the scheduler (LocalExecutor) or the workers (Celery): both need the data ready.
    for name in ("airflow-scheduler", "airflow-worker"):
        deps = depends(services[name])
        assert deps["mongo-seed"] == done and deps["mongo-init"] == done and deps["mssql-init"] == done, name
    assert depends(services["airflow-worker"])["redis"] == healthy
    assert depends(services["airflow-worker"])["airflow-apiserver"] == healthy
    assert depends(services["mongo-seed"]) == {"mongo": healthy}
    assert depends(services["mongo-init"]) == {"mongo": healthy}
    # The init step owns the DDL: tables first (reports-schema), then the DAG login's grants on them.
    assert depends(services["reports-schema"]) == {"mssql": healthy}
    assert depends(services["mssql-init"]) == {"mssql": healthy, "reports-schema": done}
    for one_shot in ("airflow-init", "mongo-seed", "mongo-init", "reports-schema", "mssql-init"):
        assert services[one_shot]["restart"] == "no", one_shot


def _secret_values(services: dict) -> list[tuple[str, str, str]]:
    found = []
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY_RE.search(key):
                found.append((name, key, str(value)))
    return found


def test_no_inline_secrets(services):
    checked = _secret_values(services)
    assert len(checked) >= 20  # the check really looks at the credential-bearing variables
    example = env_example_names()
    for name, key, value in checked:
        refs = REQUIRED_REF_RE.findall(value)
        assert refs, f"{name}: {key}={value!r} is not a ${{VAR:?...}} reference"
        if "://" in value:
            # The URL's password must be exactly one required reference, nothing typed in.
            url = urlsplit(mask(value))
            assert url.password == "REF", f"{name}: {key} has an inline password"
        else:
            assert REQUIRED_REF_RE.fullmatch(value), f"{name}: {key}={value!r} must be only a ${{VAR:?...}}"
        for ref in refs:
            # Secrets are listed but empty in .env.example, so an unfilled .env cannot start.
            assert example.get(ref) == "", f"{ref} must be listed empty (uncommented) in .env.example"
    text = COMPOSE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text
    # No password typed into a command line or healthcheck.
    assert not re.search(r"(-P|--password)\s+[^$\s]", text)


def test_fab_auth_and_shared_secrets_on_every_airflow_service(services):
    shared = {}
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB, name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        # Least privilege: the DAGs' own accounts, never sa or the Mongo root user.
        assert env["AIRFLOW_CONN_CDR_REPORTS_DB"].startswith(
            "mssql://${MSSQL_REPORTS_LOGIN:-cdr_reports_app}:${MSSQL_REPORTS_PASSWORD:?"
        ), name
        assert env["AIRFLOW_CONN_CDR_MONGO"].startswith(
            "mongo://${MONGO_REPORTS_USERNAME:-cdr_reports_reader}:${MONGO_REPORTS_PASSWORD:?"
        ), name
        # The deployment's hardening, exactly the table the security tests run with.
        assert {k: str(env.get(k)) for k in AIRFLOW_HARDENING_ENV} == AIRFLOW_HARDENING_ENV, name
        assert env["AIRFLOW_CONN_CDR_REPORTS_DB"].endswith("@mssql:1433/cdr_reports"), name
        mongo = urlsplit(mask(env["AIRFLOW_CONN_CDR_MONGO"]))
        assert (mongo.scheme, mongo.hostname, mongo.port, mongo.path, mongo.query) == (
            "mongo",
            "mongo",
            27017,
            "/cdr",
            "authSource=admin",
        ), name
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
            shared.setdefault(key, set()).add(env[key])
        # Every report setting reaches the DAGs (empty means the package default).
        cdr = {k: v for k, v in env.items() if k.startswith("CDR_")}
        # ... and the per-report roles (security.py), read by ensure-roles and the DAG processor.
        assert set(cdr) == set(ENV_VARS) | {REPORT_ACCESS_VARIABLE}, name
        assert all(value == f"${{{key}:-}}" for key, value in cdr.items()), name
        assert services[name]["volumes"][:2] == ["./dags:/opt/airflow/dags:ro", "./plugins:/opt/airflow/plugins:ro"]
    for key, values in shared.items():
        assert len(values) == 1, f"{key} differs between Airflow services: {values}"
        assert REQUIRED_REF_RE.fullmatch(next(iter(values))), key
    assert (
        services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
        == "${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
    )


# ---------------------------------------------------------------- least privilege (docs/security.md)

# Services that may hold the root credentials (sa, the Mongo root user): the servers themselves and
# the one-shot init steps.
ROOT_CREDENTIAL_SERVICES = {"mongo", "mongo-seed", "mongo-init", "mssql", "reports-schema", "mssql-init"}


def test_root_credentials_reach_only_the_init_steps(services):
    holders: dict[str, set[str]] = {}
    for name, service in services.items():
        text = " ".join(str(v) for v in (service.get("environment") or {}).values())
        text += " " + " ".join(str(v) for v in (service.get("healthcheck") or {}).get("test", []))
        for secret in ("MSSQL_SA_PASSWORD", "MONGO_ROOT_PASSWORD"):
            if "${" + secret in text or "$${" + secret in text:
                holders.setdefault(secret, set()).add(name)
    assert holders["MSSQL_SA_PASSWORD"] == {"mssql", "reports-schema", "mssql-init"}
    assert holders["MONGO_ROOT_PASSWORD"] == {"mongo", "mongo-seed", "mongo-init"}
    assert set().union(*holders.values()) <= ROOT_CREDENTIAL_SERVICES
    assert not AIRFLOW_SERVICES & set().union(*holders.values())


def _mssql_grants() -> dict[str, tuple[str, ...]]:
    sql = (REPO / "docker" / "mssql-init.sql").read_text()
    grants = {}
    for privileges, table, grantee in re.findall(
        r"^GRANT ([A-Z, ]+) ON OBJECT::\[\$\(REPORT_SCHEMA\)\]\.\[(\w+)\] TO (\w+);$", sql, re.M
    ):
        assert grantee == "cdr_report_writer"
        grants[table] = tuple(p.strip() for p in privileges.split(","))
    assert len(grants) == sql.count("GRANT "), "a GRANT the check does not understand"
    return grants


def test_mssql_grants_are_exactly_the_report_db_grants():
    from cdr_reports.pipeline.migrations import VERSION_TABLE
    from cdr_reports.pipeline.schema import TABLES

    assert _mssql_grants() == REPORT_DB_GRANTS
    # Every table of the release's schema, and the migrations' version table, has its grants...
    assert set(REPORT_DB_GRANTS) == set(TABLES) | {VERSION_TABLE}
    # ...and the DAG's login never gets UPDATE or DDL rights, nor a fixed role that has them.
    sql = (REPO / "docker" / "mssql-init.sql").read_text()
    assert not {"UPDATE", "ALTER", "CONTROL", "REFERENCES"} & {p for ps in REPORT_DB_GRANTS.values() for p in ps}
    for fixed_role in ("db_owner", "db_ddladmin", "db_datawriter", "db_datareader", "sysadmin"):
        assert fixed_role not in sql
    assert "ALTER ROLE cdr_report_writer ADD MEMBER [$(APP_LOGIN)]" in sql
    # The password comes from the environment (sqlcmd scripting variables), not a command line.
    script = (REPO / "docker" / "mssql-init.sh").read_text()
    assert 'export APP_PASSWORD="${MSSQL_REPORTS_PASSWORD}"' in script and " -v " not in script


def test_mongo_user_of_the_dags_may_only_read_the_cdr_database(services):
    js = (REPO / "docker" / "mongo-init.js").read_text()
    assert re.findall(r'role: "(\w+)"', js) == ["read"]
    assert "createUser" in js and "updateUser" in js  # idempotent: .env stays the source of truth
    env = services["mongo-init"]["environment"]
    connection = urlsplit(mask(services["airflow-scheduler"]["environment"]["AIRFLOW_CONN_CDR_MONGO"]))
    assert env["CDR_MONGO_DB"] == connection.path.strip("/") == "cdr"
    assert env["MONGO_REPORTS_USERNAME"] == "${MONGO_REPORTS_USERNAME:-cdr_reports_reader}"


def test_reports_schema_step_migrates_a_real_database(pg_schema):
    """docker/reports-schema.py, run natively against PostgreSQL: the init step creates the tables."""
    import sqlalchemy as sa

    url, schema = pg_schema
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDR_", "AIRFLOW"))}
    env.update({"CDR_INIT_SQL_ALCHEMY_CONN": url, "CDR_SQL_SCHEMA": schema})
    script = [sys.executable, str(REPO / "docker" / "reports-schema.py")]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[reports-schema] report tables: (empty) ->" in first.stdout
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    head = re.search(r"\(head (\w+)\)", again.stdout).group(1)
    assert f"report tables: {head} -> {head}" in again.stdout  # idempotent
    engine = sa.create_engine(url)
    try:
        assert set(sa.inspect(engine).get_table_names(schema=schema)) == set(REPORT_DB_GRANTS)
    finally:
        engine.dispose()
    missing = subprocess.run(script, env={k: v for k, v in env.items() if k != "CDR_INIT_SQL_ALCHEMY_CONN"},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "set CDR_INIT_SQL_ALCHEMY_CONN" in missing.stderr


def test_images_are_pinned_and_airflow_is_built_from_the_dockerfile(services):
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if "build" in service:
            if name == "mongo-seed":  # the tools stage: production image + cdr_reports_dev
                assert service["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": "tools"}, name
                assert image == "${CDR_TOOLS_IMAGE:-cdr-reports-tools:3.3.2}", name
            else:
                assert service["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": "airflow"}, name
                assert image == "${CDR_AIRFLOW_IMAGE:-cdr-reports-airflow:3.3.2}", name
        else:
            # A version, not a moving major: 16.10-bookworm, 8.0.17, 2022-CU26-..., 7.2-bookworm.
            assert re.match(r"(\d+\.\d+|\d{4}-CU\d+)", tag), f"{name}: {image!r} has no version tag"
    assert {name for name, s in services.items() if "build" in s} == AIRFLOW_SERVICES | {"mongo-seed", "reports-schema"}
    assert services["mongo"]["image"].startswith("mongo:8.0.")
    assert re.fullmatch(r"mcr\.microsoft\.com/mssql/server:2022-CU\d+-ubuntu-22\.04", services["mssql"]["image"])


def test_published_ports_are_loopback_only(services):
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published["airflow-apiserver"] == ["127.0.0.1:${AIRFLOW_API_PORT:-8080}:8080"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_dockerfile_installs_pinned_requirements_and_the_package_at_build_time():
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [
        line.strip() for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    joined = "\n".join(instructions).replace("\\\n", " ")
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert instructions[0] == f"FROM apache/airflow:{airflow_pin}-python3.11 AS airflow"
    # The production stage never installs the developer tooling; only the `tools` stage does.
    production = joined.split("FROM airflow AS tools")[0]
    assert "devtools" not in production and '! python -c "import cdr_reports_dev"' in production
    assert "pip install --no-cache-dir --no-deps /opt/cdr-reports/devtools" in joined.split("FROM airflow AS tools")[1]
    install = re.search(r"RUN pip install[^\n]*", joined).group(0)
    assert "-r /opt/cdr-reports/requirements.txt" in install and "-c /opt/cdr-reports/requirements.lock" in install
    assert re.search(r"COPY \S* ?requirements\.txt requirements\.lock /opt/cdr-reports/", joined)
    assert re.search(r"COPY \S* ?include/ /opt/cdr-reports/include/", joined)
    assert re.search(r"COPY \S* ?pyproject\.toml /opt/cdr-reports/", joined)
    assert re.search(r"RUN pip install --no-cache-dir --no-deps /opt/cdr-reports", joined)
    # Dependencies before the package: editing include/ must not reinstall every dependency.
    assert joined.index("requirements.lock") < joined.index("include/")
    # .dockerignore excludes everything but what the COPY lines need.
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    for needed in ("requirements.txt", "requirements.lock", "pyproject.toml", "include/"):
        assert f"!{needed}" in ignore, needed


def test_mounted_files_and_scripts_exist(services):
    for name in AIRFLOW_SERVICES:
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_dir(), f"{name} mounts missing {source}"
    fab_config = services["airflow-apiserver"]["environment"]["AIRFLOW__FAB__CONFIG_FILE"]
    assert fab_config == "/opt/airflow/config/webserver_config.py"
    assert (REPO / "config" / "webserver_config.py").is_file()
    assert services["airflow-init"]["command"] == ["bash", "/opt/airflow/docker/airflow-init.sh"]
    assert services["airflow-db-clean"]["command"] == ["bash", "/opt/airflow/docker/airflow-maintenance.sh"]
    assert services["mssql-init"]["entrypoint"] == ["/bin/bash", "/docker/mssql-init.sh"]
    assert services["mongo-init"]["entrypoint"] == ["mongosh", "--nodb", "--quiet", "--file", "/docker/mongo-init.js"]
    assert services["reports-schema"]["command"] == ["python", "/opt/airflow/docker/reports-schema.py"]
    for script in (
        "airflow-init.sh",
        "airflow-maintenance.sh",
        "mssql-init.sh",
        "mssql-init.sql",
        "mongo-init.js",
        "reports-schema.py",
    ):
        assert (REPO / "docker" / script).is_file(), script
    assert services["mongo-seed"]["command"][:4] == ["python", "-m", "cdr_reports_dev.demo", "seed"]
    for script in ("airflow-init.sh", "airflow-maintenance.sh", "mssql-init.sh"):
        result = subprocess.run(["bash", "-n", str(REPO / "docker" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_env_example_lists_every_variable():
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    referenced = set(ANY_REF_RE.findall(text))
    assert {"AIRFLOW_FERNET_KEY", "MSSQL_SA_PASSWORD", "AIRFLOW_API_PORT", "CDR_TIMEZONE"} <= referenced
    names = env_example_names()
    assert referenced - set(names) == set(), "variables missing from .env.example"
    assert set(ENV_VARS) - set(names) == set(), "CDR_* settings missing from .env.example"
    # Every variable (or group of adjacent variables) sits under a descriptive comment.
    lines = (REPO / ".env.example").read_text().splitlines()
    is_variable = [bool(re.match(r"^(#\s*)?[A-Z_][A-Z0-9_]*=", line)) for line in lines]
    for i, line in enumerate(lines):
        if is_variable[i]:
            j = i - 1
            while j >= 0 and is_variable[j]:
                j -= 1
            assert j >= 0 and lines[j].startswith("# ") and len(lines[j]) > 10, f".env.example: {line!r} has no comment"
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text()
    assert "/.env" in (REPO / ".gitignore").read_text().split()


# ---------------------------------------------------------------- docker-compose config


def _compose_cli() -> str:
    found = shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if os.path.exists("/usr/bin/docker-compose") else None
    )
    if found:
        return found
    skip_or_fail("docker-compose CLI not installed (make services installs it): cannot validate docker-compose.yaml")


def _filled_env_file(tmp_path: Path) -> Path:
    """The .env that `make env` writes (every secret generated), as a user's would be."""
    from cdr_reports_dev import envfile

    path = tmp_path / "filled.env"
    assert envfile.main(["--output", str(path)]) == 0
    return path


def _run_compose(cli: str, env_file: Path, *args: str) -> subprocess.CompletedProcess:
    # A bare environment: the test process's AIRFLOW__* variables must not leak into interpolation.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [cli, "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=env_file.parent,
    )


@pytest.mark.services  # the docker-compose CLI comes with `make services` (install-test-packages.sh)
def test_compose_config_refuses_unset_secrets(tmp_path):
    cli = _compose_cli()
    example = tmp_path / "example.env"
    shutil.copy(REPO / ".env.example", example)
    result = _run_compose(cli, example, "config")
    assert result.returncode != 0
    assert re.search(r"set [A-Z_]+ in \.env", result.stderr), result.stderr[-2000:]


@pytest.mark.services  # the docker-compose CLI comes with `make services` (install-test-packages.sh)
def test_compose_config_validates_with_a_filled_env(tmp_path):
    cli = _compose_cli()
    env_file = _filled_env_file(tmp_path)
    result = _run_compose(cli, env_file, "config")
    assert result.returncode == 0, result.stderr[-3000:]
    rendered = yaml.safe_load(result.stdout)
    secrets = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", env_file.read_text(), re.M))
    api = rendered["services"]["airflow-apiserver"]
    assert api["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == secrets["AIRFLOW_JWT_SECRET"]
    assert api["environment"]["AIRFLOW_CONN_CDR_REPORTS_DB"] == (
        f"mssql://cdr_reports_app:{secrets['MSSQL_REPORTS_PASSWORD']}@mssql:1433/cdr_reports"
    )
    assert api["environment"]["AIRFLOW_CONN_CDR_MONGO"] == (
        f"mongo://cdr_reports_reader:{secrets['MONGO_REPORTS_PASSWORD']}@mongo:27017/cdr?authSource=admin"
    )
    published = api["ports"][0]
    assert published in ("127.0.0.1:8080:8080/tcp", "127.0.0.1:8080:8080") or (
        isinstance(published, dict) and published.get("host_ip") == "127.0.0.1"
    )
    # (docker-compose 1.29 lists profiled services whatever --profile says; profiles are checked above.)
    celery = _run_compose(cli, env_file, "--profile", "celery", "--profile", "flower", "config", "--services")
    assert celery.returncode == 0, celery.stderr
    assert set(celery.stdout.split()) >= REQUIRED_SERVICES


# ---------------------------------------------------------------- the stack's Airflow scripts, run natively


def _airflow_script_env(db_copy: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db_copy}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__AUTH_MANAGER": FAB,
            "AIRFLOW__FAB__CONFIG_FILE": str(REPO / "config" / "webserver_config.py"),
        }
    )
    return env


@pytest.fixture
def metadata_copy(airflow_db, tmp_path):
    """A private copy of the session's migrated metadata DB (the scripts write to it)."""
    copy = tmp_path / "airflow.db"
    shutil.copy(airflow_db / "airflow.db", copy)
    home = tmp_path / "home"
    home.mkdir()
    return copy, home


def test_maintenance_script_purges_old_metadata_and_logs(metadata_copy):
    db, home = metadata_copy
    now = datetime.now(UTC).replace(tzinfo=None)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM log")
        conn.executemany(
            "INSERT INTO log (dttm, event, dag_id) VALUES (?, ?, 'cdr_daily_report')",
            [((now - timedelta(days=45)).isoformat(" "), "old"), ((now - timedelta(days=3)).isoformat(" "), "recent")],
        )
    logs = home / "logs"
    old_file = logs / "dag_id=cdr_daily_report" / "run_id=old" / "task_id=plan" / "attempt=1.log"
    new_file = logs / "dag_id=cdr_daily_report" / "run_id=new" / "task_id=plan" / "attempt=1.log"
    for path in (old_file, new_file):
        path.parent.mkdir(parents=True)
        path.write_text("log line\n")
    forty_days_ago = time.time() - 40 * 86400
    os.utime(old_file, (forty_days_ago, forty_days_ago))

    env = _airflow_script_env(db, home)
    env["AIRFLOW_DB_RETENTION_DAYS"] = "30"
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "airflow-maintenance.sh"), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        kept = [row[0] for row in conn.execute("SELECT event FROM log WHERE event IN ('old', 'recent') ORDER BY id")]
    assert kept == ["recent"]
    assert not old_file.exists() and not old_file.parent.parent.exists()  # empty run folder removed too
    assert new_file.read_text() == "log line\n"
    assert "deleted 1 log file(s) older than 30 day(s)" in result.stdout


def test_maintenance_script_rejects_a_bad_retention():
    env = {"PATH": os.environ.get("PATH", ""), "AIRFLOW_DB_RETENTION_DAYS": "30d"}
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "airflow-maintenance.sh"), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2
    assert "AIRFLOW_DB_RETENTION_DAYS=30d: must be a whole number >= 1" in result.stderr


def test_init_script_migrates_and_creates_the_admin_and_report_roles(metadata_copy):
    db, home = metadata_copy
    env = _airflow_script_env(db, home)
    env.update({"_AIRFLOW_WWW_USER_USERNAME": "stack-admin", "_AIRFLOW_WWW_USER_PASSWORD": "Init-Test-7f3a"})
    result = subprocess.run(
        ["bash", str(REPO / "docker" / "airflow-init.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[airflow-init] done" in result.stdout
    with sqlite3.connect(db) as conn:
        roles = {
            row[0]
            for row in conn.execute(
                "SELECT r.name FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id JOIN ab_role r ON r.id = ur.role_id "
                "WHERE u.username = 'stack-admin'"
            )
        }
        all_roles = {row[0] for row in conn.execute("SELECT name FROM ab_role")}
    assert roles == {"Admin"}
    assert {"ReportViewer", "ReportOperator"} <= all_roles
    assert (home / "logs").is_dir()

    missing = {k: v for k, v in env.items() if k != "_AIRFLOW_WWW_USER_PASSWORD"}
    refused = subprocess.run(
        ["bash", str(REPO / "docker" / "airflow-init.sh")], capture_output=True, text=True, env=missing, timeout=60
    )
    assert refused.returncode != 0
    assert "set _AIRFLOW_WWW_USER_PASSWORD" in refused.stderr

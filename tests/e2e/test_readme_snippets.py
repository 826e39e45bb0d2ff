"""Every snippet of the README runs as written, or names only commands that exist.

- ```python blocks run, as written, in a fresh interpreter (they use `make services`' servers);
- in ```bash blocks, every `make X` is a Makefile target, every `python -m M` / `.venv/bin/python -m M`
  answers `--help`, every `airflow A B` subcommand exists (`--help`), and the commands that need
  no external server run for real (`airflow dags show`, `python -m cdr_reports.pipeline.schema
  markdown`); `airflow dags test …` itself runs in tests/e2e/test_cli.py, `make demo` in test_demo.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def _bash_commands() -> list[str]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_readme_has_snippets():
    assert _blocks("python") and len(_bash_commands()) >= 8


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda c: c.strip().splitlines()[-1][:50])
def test_python_snippets_run_as_written(code, mongo_uri):
    if "127.0.0.1:27027" in code and "27027" not in mongo_uri:
        pytest.fail(f"the README's snippet names make services' default FerretDB port; servers are at {mongo_uri}")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_make_targets_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    used = {m for cmd in _bash_commands() for m in re.findall(r"(?:^|&&\s*)make ([a-z-]+)", cmd)}
    assert used and used <= targets, used - targets


def test_python_modules_answer_help():
    modules = {
        m
        for cmd in _bash_commands() + re.findall(r"`([^`]*python -m [^`]*)`", README)
        for m in re.findall(r"python -m ([\w.]+)", cmd)
    }
    assert "cdr_reports.pipeline.migrations" in modules
    for module in sorted(modules):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 or "usage" in (result.stdout + result.stderr).lower(), (
            module,
            result.stderr[-1500:],
        )


def test_airflow_subcommands_exist():
    pairs = set()
    for cmd in _bash_commands():
        words = shlex.split(cmd, posix=True) if cmd.count("'") % 2 == 0 else cmd.split()
        if words and words[0] == "airflow" and len(words) >= 3:
            pairs.add((words[1], words[2]))
    assert ("dags", "test") in pairs
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for group, command in sorted(pairs):
        result = subprocess.run(
            ["airflow", group, command, "--help"], env=env, capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, (group, command, result.stderr[-1500:])


def test_airflow_dags_show_prints_the_graph(airflow_db):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    reserialize = subprocess.run(
        ["airflow", "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=300
    )
    assert reserialize.returncode == 0, reserialize.stderr[-2000:]
    result = subprocess.run(
        ["airflow", "dags", "show", "cdr_daily_report"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "digraph" in result.stdout and "plan" in result.stdout and "extract" in result.stdout


def test_schema_markdown_command_prints_the_readme_tables():
    result = subprocess.run(
        [sys.executable, "-m", "cdr_reports.pipeline.schema", "markdown"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for table_block in re.findall(r"<!-- schema:\S+ [^>]*-->\n(.*?)\n<!-- /schema -->", README, re.S):
        assert table_block in result.stdout


def test_every_local_setting_is_in_the_readme():
    """Each variable the local servers and the demo read is documented (with its default)."""
    sources = [REPO / "scripts" / "services.sh", *sorted((REPO / "devtools" / "cdr_reports_dev" / "demo").glob("*.py"))]
    names = set()
    for source in sources:
        names |= set(re.findall(r"\b((?:CDR|DEMO)_[A-Z][A-Z0-9_]+)\b", source.read_text()))
    # CDR_TEST_*: the URIs `make services` writes for the tests; CDR_* report settings: their own table.
    from cdr_reports.pipeline.config import ENV_VARS

    names = {n for n in names if not n.startswith("CDR_TEST_") and n not in ENV_VARS}
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert not missing, f"not in the README: {missing}"

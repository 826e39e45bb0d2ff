"""`make lint` and the pre-commit hooks run the same checks with the same pinned tools.

The hooks (.pre-commit-config.yaml) are `repo: local` hooks on the venv's own binaries, so the
versions are requirements.lock's; this test pins down the rest: same commands and arguments in the
same order as the Makefile's lint recipe, every tool pinned alike in requirements-test.txt and
requirements.lock, and the venv's binaries reporting exactly those versions.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
# distribution -> the command that reports its version
TOOLS = {
    "ruff": ["ruff", "--version"],
    "mypy": ["mypy", "--version"],
    "import-linter": ["lint-imports", "--version"],
    "pre-commit": ["pre-commit", "--version"],
}


def _makefile_lint_commands() -> list[str]:
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^lint:[^\n]*\n((?:\t[^\n]*\n)+)", text, re.M)
    assert recipe, "no lint target in the Makefile"
    venv = re.search(r"^VENV := (\S+)$", text, re.M)
    assert venv
    return [line.strip().replace("$(VENV)", venv.group(1)) for line in recipe.group(1).splitlines()]


def _hooks() -> list[dict]:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"] if repo["repo"] == "local"] + [
        {"id": f"non-local repo {repo['repo']}"} for repo in config["repos"] if repo["repo"] != "local"
    ]


def _pin(path: Path, distribution: str) -> str:
    canonical = distribution.lower().replace("_", "-")
    for line in path.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip().lower().replace("_", "-") == canonical:
            return version.strip()
    raise AssertionError(f"{distribution} is not pinned in {path.name}")


def test_the_hooks_run_exactly_the_lint_recipe():
    make = _makefile_lint_commands()
    assert make == [
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy",
        ".venv/bin/lint-imports",
    ]
    hooks = _hooks()
    assert [" ".join([hook["entry"], *hook.get("args", [])]) for hook in hooks] == make
    for hook in hooks:
        # The venv's tools on the whole tree, as `make lint` runs them.
        assert hook["language"] == "system" and hook["pass_filenames"] is False, hook["id"]
        assert "additional_dependencies" not in hook and "files" not in hook and "exclude" not in hook, hook["id"]


def test_every_lint_tool_is_pinned_alike_and_installed_at_that_version():
    for distribution, command in TOOLS.items():
        pinned = _pin(REPO / "requirements-test.txt", distribution)
        assert _pin(REPO / "requirements.lock", distribution) == pinned, distribution
        out = subprocess.run([str(VENV_BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert re.search(rf"\b{re.escape(pinned)}\b", out.stdout), (distribution, pinned, out.stdout)


def test_pre_commit_accepts_the_configuration():
    result = subprocess.run(
        [str(VENV_BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert config["minimum_pre_commit_version"] == _pin(REPO / "requirements-test.txt", "pre-commit")


def _mypy_options():  # -> mypy.options.Options, as `make lint`'s mypy reads pyproject.toml
    import io

    from mypy.config_parser import parse_config_file
    from mypy.options import Options

    options = Options()
    errors = io.StringIO()
    parse_config_file(options, lambda: None, str(REPO / "pyproject.toml"), io.StringIO(), errors)
    assert errors.getvalue() == ""
    return options


def test_the_package_and_the_plugin_are_checked_with_every_strict_flag():
    from mypy.find_sources import create_source_list
    from mypy.main import define_options

    options = _mypy_options()
    _, _, strict_flags = define_options()  # what `mypy --strict` turns on, flag by flag
    assert len(strict_flags) >= 12
    assert {"include", "plugins", "tests", "bench"} <= set(options.files or [])
    # The module names mypy gives the files the override targets (explicit package bases).
    modules = {s.module for s in create_source_list(["include", "plugins"], options)}
    assert "plugins.cdr_reports_plugin" in modules and "cdr_reports.pipeline.load" in modules
    assert all(m.startswith(("cdr_reports.", "plugins.")) or m == "cdr_reports" for m in modules)
    for module in sorted(modules):
        per_module = options.clone_for_module(module)
        for flag, value in strict_flags:
            assert getattr(per_module, flag) is value, (module, flag)
    # Tests and benchmarks: mypy's defaults, not strict.
    for module in ("tests.conftest", "bench.run"):
        per_module = options.clone_for_module(module)
        assert per_module.check_untyped_defs is False and per_module.disallow_untyped_defs is False, module

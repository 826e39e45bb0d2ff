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

"""Fixtures shared by the DAG tests: Airflow's plugin manager loaded from this repo's plugins/, or none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _reset_plugin_caches(plugins_manager: ModuleType) -> None:
    # Every plugin-derived lookup in plugins_manager is a functools.cache; reset them all so
    # no other test sees the plugin set loaded here.
    for value in vars(plugins_manager).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


def _plugins_from(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    from airflow import plugins_manager, settings

    monkeypatch.setattr(settings, "PLUGINS_FOLDER", str(folder))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    _reset_plugin_caches(plugins_manager)
    yield plugins_manager
    _reset_plugin_caches(plugins_manager)


@pytest.fixture
def plugins_from_repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Plugins loaded as every Airflow component loads them: from this repo's plugins/ folder."""
    yield from _plugins_from(REPO_ROOT / "plugins", monkeypatch)


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """Airflow with an empty plugins folder: what a component without this repo's plugin sees."""
    yield from _plugins_from(tmp_path, monkeypatch)

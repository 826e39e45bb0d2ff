"""The Celery stack's kill helpers reach only their own stack's processes (never by name alone).

Two process trees carry the same worker name (`w1`), as two engineers' (or CI's and an
engineer's) stacks on one machine would; only the tree of the given AIRFLOW_HOME is found. This
needs no Airflow: the helpers read /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.celery.stack import node_processes

SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"


def _tree(home, name="w1") -> subprocess.Popen:
    env = {**os.environ, "CDR_TEST_WORKER_NAME": name, "AIRFLOW_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-c", SLEEPER], env=env, start_new_session=True)


def test_node_processes_of_one_stack_exclude_another_stacks_worker_of_the_same_name(tmp_path):
    mine, theirs = _tree(tmp_path / "mine"), _tree(tmp_path / "theirs")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            len(node_processes("w1", tmp_path / "mine")) == 2 and len(node_processes("w1", tmp_path / "theirs")) == 2
        ):
            time.sleep(0.1)
        found = node_processes("w1", tmp_path / "mine")
        assert mine.pid in found and len(found) == 2  # the worker and its child (another process group is fine)
        assert not set(found) & set(node_processes("w1", tmp_path / "theirs"))
        assert theirs.pid not in found
        assert node_processes("w2", tmp_path / "mine") == []
    finally:
        for proc in (mine, theirs):
            os.killpg(proc.pid, 9)
            proc.wait(10)

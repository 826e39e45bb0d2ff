"""pipeline/runner.py: what an extract task imports stays light."""

from __future__ import annotations

import json
import subprocess
import sys

# What the extract task's body imports (integration/tasks.py: runner.count_window, the packed XCom).
EXTRACT_PATH = ("cdr_reports.pipeline.runner", "cdr_reports.pipeline.extract", "cdr_reports.pipeline.columns")


def test_the_extract_path_imports_no_sql_library():
    """An extract task only counts CDRs: SQLAlchemy (~25 MiB of a worker's RSS) and alembic stay out.

    Measured when it regressed: `make bench` §1 client peak 61 MiB instead of 36 MiB (target 50),
    after runner.py imported load.py at its top.
    """
    code = (
        "import json, sys\n"
        + "".join(f"import {name}\n" for name in EXTRACT_PATH)
        + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'pyarrow'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []

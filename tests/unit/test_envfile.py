"""`make env` writes a .env the compose stack accepts: every secret generated, nothing else changed."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from cdr_reports_dev import envfile

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / ".env.example").read_text()


def _values(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", text, re.M))


def test_every_secret_is_generated_and_the_rest_kept(tmp_path):
    out = tmp_path / ".env"
    assert envfile.main(["--output", str(out)]) == 0
    written, example = _values(out.read_text()), _values(EXAMPLE)
    empty = {name for name, value in example.items() if value == ""}
    assert empty == set(envfile.GENERATORS)  # one generator per secret, no stale ones
    for name in empty:
        assert len(written[name]) >= 32, name
        assert re.fullmatch(r"[A-Za-z0-9_\-=]+", written[name]), name  # URL-safe
    for name in ("MSSQL_SA_PASSWORD", "MSSQL_REPORTS_PASSWORD"):
        value = written[name]
        assert re.search(r"[A-Z]", value) and re.search(r"[a-z]", value) and re.search(r"\d", value)
    assert {k: v for k, v in written.items() if k in example and k not in empty} == {
        k: v for k, v in example.items() if k not in empty
    }
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    import base64

    assert len(base64.urlsafe_b64decode(written["AIRFLOW_FERNET_KEY"])) == 32


def test_two_runs_differ_and_an_existing_file_is_kept(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    envfile.main(["--output", str(first)])
    envfile.main(["--output", str(second)])
    assert _values(first.read_text())["AIRFLOW_JWT_SECRET"] != _values(second.read_text())["AIRFLOW_JWT_SECRET"]
    before = first.read_text()
    assert envfile.main(["--output", str(first)]) == 1
    assert first.read_text() == before

"""Developer tooling for cdr-reports: the demo, synthetic CDRs, report printing.

A separate distribution (devtools/pyproject.toml): `pip install .` and the production image ship
only `cdr_reports`; `make install` installs this one too, editable.
"""

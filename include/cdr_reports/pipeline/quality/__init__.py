"""Data-quality checks of stored reports: volume drops, vanished and new operators, late data.

The costly failures of telecom reporting are quiet: a mediation feed stops for one operator and
its calls fall to a fraction, or CDRs arrive after their day was reported and the stored report
is silently short. Two checks make them loud:

- **Volume**: after each load, every operator's `total_calls` is compared with the median of its
  previous `CDR_VOLUME_CHECK_HISTORY` reports of the same type (an operator absent from a report
  had 0 calls in it). Below `CDR_VOLUME_DROP_THRESHOLD` × median is a `drop`; no calls at all is
  `vanished`; calls from an operator absent from every previous report is `new`. Operators
  expecting fewer than `CDR_VOLUME_MIN_EXPECTED_CALLS` calls are not judged (their counts are
  mostly noise), and with no previous report there is nothing to compare with.
- **Late data**: the previous `CDR_LATE_DATA_LOOKBACK_DAYS` days are re-counted with one `$match`
  + `$count` each (the report's own window and global filter, via `extract.ScopedCollection.count`);
  a count that differs from the stored `source_records` is a `late_data` finding, and with
  `CDR_LATE_DATA_ACTION=rereport` that day's report is run again (the same idempotent load).

Only findings are stored, in `cdr_quality_check` (schema.py). Running a check again for a period
replaces that check's rows of the period, so re-runs never duplicate findings.

One job per module, layered (import-linter enforces it, pyproject.toml):

- `rules`: the findings and the volume rule, pure functions of counts (no I/O).
- `store`: SQL reads of stored reports and reads/writes of findings.
- `checks`: the two checks run against the servers; the late-data check re-reports through
  `runner`, which sits below it.
"""

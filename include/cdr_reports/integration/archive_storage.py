"""The report archive's storage in Airflow: `CDR_ARCHIVE_URL` as an `ObjectStoragePath`.

`ObjectStoragePath` is Airflow's path over fsspec: `file://` needs nothing more; `s3://` uses the
Amazon provider (the `[s3]` extra) with the credentials and endpoint of the Airflow connection
`CDR_ARCHIVE_CONN_ID` (conn type `aws`; its extra `endpoint_url` points at an S3-compatible server),
`gs://` and `abfs://` the Google and Microsoft providers likewise. The archive logic itself is pure
(pipeline/archive.py) and only sees a pathlib-like object, so the restore command can use
universal_pathlib's `UPath` without Airflow.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath

from cdr_reports.pipeline.config import ConfigError, Settings


def archive_root(settings: Settings) -> Any:
    """The archive root of `settings` (an ObjectStoragePath); ConfigError when none is configured."""
    if not settings.archive_url:
        raise ConfigError("CDR_ARCHIVE_URL is not set: there is no archive")
    try:
        return ObjectStoragePath(settings.archive_url, conn_id=settings.archive_conn_id or None)
    except (ValueError, ImportError) as exc:
        # An unknown scheme, or one whose provider/fsspec package is not installed (pip install .[s3]).
        raise ConfigError(
            f"CDR_ARCHIVE_URL={settings.archive_url!r} cannot be opened: {exc}"
            + (f" (connection {settings.archive_conn_id!r}, CDR_ARCHIVE_CONN_ID)" if settings.archive_conn_id else "")
        ) from exc

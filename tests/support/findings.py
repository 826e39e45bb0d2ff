"""Helpers of the data-quality and durable-findings tests: CDRs of known volume, and the alert mails received."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from cdr_reports.pipeline.periods import ReportPeriod


def calls(period: ReportPeriod, operator, count: int, tag: str = "") -> list[dict]:
    """`count` valid CDRs of `operator` spread over the period (half of them answered)."""
    step = (period.end_utc - period.start_utc) / (count + 1)
    docs = []
    for i in range(count):
        start = period.start_utc + step * (i + 1)
        doc: dict[str, Any] = {
            "Operator": {"Id": operator},
            "DateTime": {"Start": start},
            "Duration": 30 + i % 7,
            "Tag": tag,
        }
        if i % 2 == 0:
            doc["DateTime"]["Connect"] = start + timedelta(seconds=4)
        docs.append(doc)
    return docs


def mails(smtp) -> list[tuple[str, str]]:
    """(subject, text of the body) of every mail the SMTP sink received, in order."""
    out = []
    for mail in smtp.received():
        message = mail["message"]
        body = message.get_body(preferencelist=("html", "plain")).get_content()
        out.append((str(message["Subject"]), html.unescape(re.sub(r"<[^>]+>", "", body))))
    return out

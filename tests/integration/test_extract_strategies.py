"""Strategy choice per server, and the query form of the rules checked against the Python form
on each real server (the same statement must select the same documents in both)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from cdr_reports.pipeline.errors import PermanentError
from cdr_reports.pipeline.extract import choose_strategy, extract_slice
from cdr_reports.pipeline.validity import DocumentRules, operator_key, window_query
from tests.support.reference import edge_case_documents, random_documents

START = datetime(2026, 11, 26, 21, tzinfo=UTC)
END = START + timedelta(days=1)
RULES = DocumentRules.for_settings(31 * 24 * 3600)


def test_auto_picks_stream_on_ferretdb(mongo_db):
    assert choose_strategy(mongo_db.CdrRecords) == "stream"


def test_auto_picks_pushdown_on_a_mongodb_server(mjs_db):
    assert choose_strategy(mjs_db.CdrRecords) == "pushdown"


def test_explicit_strategy_is_used_as_is(mongo_db):
    assert choose_strategy(mongo_db.CdrRecords, "pushdown") == "pushdown"
    with pytest.raises(PermanentError, match="CDR_EXTRACT_STRATEGY='fast'"):
        choose_strategy(mongo_db.CdrRecords, "fast")


def test_pushdown_on_ferretdb_fails_fast_and_says_what_to_set(mongo_db):
    mongo_db.CdrRecords.insert_one({"Operator": {"Id": 1}, "DateTime": {"Start": START}, "Duration": 1})
    with pytest.raises(PermanentError, match="CDR_EXTRACT_STRATEGY=stream or auto"):
        extract_slice(mongo_db.CdrRecords, START, END, {}, 31 * 24 * 3600, "pushdown")


@pytest.mark.parametrize("server", ["mongo_db", "mjs_db"])
def test_query_form_selects_what_the_python_form_accepts(request, server):
    db = request.getfixturevalue(server)
    docs = edge_case_documents(START, END) + random_documents(random.Random(11), 1500, START, END)
    for i, doc in enumerate(docs):
        doc["_id"] = i
    db.CdrRecords.insert_many(docs)
    window = window_query(START, END)
    by_query = {d["_id"] for d in db.CdrRecords.find({"$and": [window, RULES.validity_query()]}, {"_id": 1})}
    answered = {
        d["_id"]
        for d in db.CdrRecords.find({"$and": [window, RULES.validity_query(), RULES.answered_query()]}, {"_id": 1})
    }
    in_window = list(db.CdrRecords.find(window, RULES.projection() | {"_id": 1}))
    assert by_query == {d["_id"] for d in in_window if RULES.is_valid(d)}
    assert answered == {d["_id"] for d in in_window if RULES.is_valid(d) and RULES.is_answered(d)}
    # And the id rules that no query states apply to what the projection returns.
    assert {operator_key(d["Operator"]["Id"]) for d in in_window if RULES.is_valid(d)} - {None}

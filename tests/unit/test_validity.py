"""The validity rules, stated once, give a MongoDB query and a Python predicate that agree."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from bson.int64 import Int64

from cdr_reports.pipeline.validity import (
    ANSWERED_RULE,
    DocumentRules,
    FieldRule,
    operator_key,
    unplaceable_query,
    window_query,
)
from tests.support.reference import _storable_id, edge_case_documents, random_documents

START = datetime(2026, 11, 26, 21, tzinfo=UTC)
END = START + timedelta(days=1)
RULES = DocumentRules.for_settings(31 * 24 * 3600)


def test_query_form_states_every_rule():
    assert RULES.validity_query() == {
        "Operator": {"$not": {"$type": "array"}},
        "Operator.Id": {"$type": ["int", "long", "string"], "$not": {"$type": "array"}},
        "Duration": {"$type": ["int", "long", "double"], "$gte": 0, "$lte": 31 * 24 * 3600, "$not": {"$type": "array"}},
        "DateTime": {"$not": {"$type": "array"}},
    }
    assert RULES.answered_query() == {"DateTime.Connect": {"$type": ["date"], "$not": {"$type": "array"}}}
    assert RULES.projection() == {"_id": 0, "DateTime.Connect": 1, "Duration": 1, "Operator.Id": 1}


def test_a_dotted_rule_needs_its_prefix_guarded_against_arrays():
    with pytest.raises(ValueError, match="needs a not-array rule on 'A'"):
        DocumentRules((FieldRule("A.B", types=("int",)),))


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (0, True),
        (Int64(300), True),
        (2**40, False),
        (12.5, True),
        (-0.0, True),
        (31 * 24 * 3600, True),
        (-1, False),
        (31 * 24 * 3600 + 1, False),
        (float("nan"), False),
        (float("inf"), False),
        ("12", False),
        (True, False),
        (None, False),
        ([1], False),
        ({"s": 1}, False),
    ],
)
def test_duration_rule(value, valid):
    doc = {"Operator": {"Id": 1}, "Duration": value, "DateTime": {}}
    assert RULES.is_valid(doc) is valid


def test_missing_prefix_and_arrays():
    assert not RULES.is_valid({"Duration": 1})  # no operator
    assert not RULES.is_valid({"Operator": [{"Id": 1}], "Duration": 1})
    assert not RULES.is_valid({"Operator": {"Id": [1]}, "Duration": 1})
    assert not RULES.is_valid({"Operator": "x", "Duration": 1})
    assert RULES.is_valid({"Operator": {"Id": "x"}, "Duration": 1})  # DateTime absent: placed by the window
    assert ANSWERED_RULE.holds({"DateTime": {"Connect": START}})
    assert not ANSWERED_RULE.holds({"DateTime": {"Connect": [START]}})
    assert not ANSWERED_RULE.holds({"DateTime": {"Connect": "yes"}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (5, "5"),
        (Int64(5), "5"),
        ("5", "5"),
        (0, "0"),
        (True, None),
        (5.0, None),
        (None, None),
        ("", None),
        ("a\x00b", None),
        ("tab\tid", None),
        ("x\x85", None),
        ("trailing ", None),
        (" leading", None),
        ("inner space", "inner space"),
        ("y" * 255, "y" * 255),
        ("y" * 256, None),
        ("\U0001f4de" * 127, "\U0001f4de" * 127),
        ("\U0001f4de" * 128, None),
        ("Türk Telekom ☎", "Türk Telekom ☎"),
    ],
)
def test_operator_key(raw, key):
    assert operator_key(raw) == key


def test_operator_key_agrees_with_the_reference_on_random_strings():
    rng = random.Random(5)
    alphabet = ["a", " ", "\x00", "\t", "\x7f", "\x85", "é", "☎", "\U0001f4de", "Z"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140)))
        assert (operator_key(text) is not None) == _storable_id(text), repr(text)


def test_python_form_agrees_with_the_reference_classification():
    """Documents the reference counts as valid are exactly those the Python form accepts with a key."""
    from tests.support.reference import _duration, _operator_id

    docs = edge_case_documents(START, END) + random_documents(random.Random(3), 3000, START, END)
    placeable = [
        d for d in docs if isinstance(d.get("DateTime"), dict) and isinstance(d["DateTime"].get("Start"), datetime)
    ]
    assert len(placeable) > 2500
    for doc in placeable:
        raw = (doc.get("Operator") or {}).get("Id") if isinstance(doc.get("Operator"), dict) else None
        ours = RULES.is_valid(doc) and operator_key(raw) is not None
        reference = _operator_id(doc) is not None and _duration(doc, 31 * 24 * 3600) is not None
        assert ours == reference, doc


def test_window_and_audit_queries():
    query = window_query(START, END)
    assert query["DateTime"] == {"$not": {"$type": "array"}}
    assert query["DateTime.Start"] == {"$gte": START, "$lt": END, "$not": {"$type": "array"}}
    assert {"DateTime.Start": {"$not": {"$type": "date"}}} in unplaceable_query()["$or"]
    with pytest.raises(ValueError, match="timezone-aware"):
        window_query(START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="empty window"):
        window_query(END, START)

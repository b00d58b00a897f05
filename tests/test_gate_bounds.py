"""The privacy gate at its edges (issue 11, items 1, 4 and 6): timestamps at the
ends of the calendar, an empty ``_id``, and records built to carry thousands of
violations, whose naming is bounded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate import SchemaViolation, check_report
from collector.gate import model as gate_model
from collector.gate.catalogue import FIELDS
from tests.catalogue_helpers import load, set_path
from tests.conftest import post_ok

#: Every kept timestamp field and a concrete path to it in the real 6.8.0 record.
TIMESTAMP_FIELDS = sorted(f.path for f in FIELDS if f.type == "datetime" and not f.identifying)
EDGES = (
    "0001-01-01T00:00:00+01:00",   # before year 1 once in UTC
    "9999-12-31T23:59:59-01:00",   # after year 9999 once in UTC
    "Mon Jan 01 0001 00:00:00 GMT+0100",
    "Fri Dec 31 9999 23:59:59 GMT-0100 (Some Time)",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
)


def _with(path: str, value: str) -> dict:
    doc = load("report-6.8.0.json")
    if path.startswith("migration."):
        doc.setdefault("migration", {})
    set_path(doc, path, value)
    return doc


def test_the_timestamp_fields_are_the_expected_ones():
    assert TIMESTAMP_FIELDS == ["_updatedAt", "createdAt", "lastLogin", "lastMessageSentAt",
                                "lastSeenSubscription", "migration.buildAt"]


@pytest.mark.parametrize("path", TIMESTAMP_FIELDS)
@pytest.mark.parametrize("value", EDGES)
def test_calendar_edges_are_refused_with_the_path(path, value):
    with pytest.raises(SchemaViolation) as info:
        check_report(_with(path, value))
    assert [(v.path, v.reason) for v in info.value.violations] == [(path, "bad_timestamp")]


_OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)


@settings(max_examples=300, deadline=None)
@given(when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
       offset=_OFFSETS, js=st.booleans(), path=st.sampled_from(TIMESTAMP_FIELDS))
def test_any_representable_time_is_accepted_or_refused_never_an_error(when, offset, js, path):
    """The whole representable range, in both forms Rocket.Chat sends and any
    offset: accepted (2000-01-01 <= UTC < 2100-01-01) or refused ``bad_timestamp``."""
    sign = "+" if offset >= 0 else "-"
    hh, mm = divmod(abs(offset), 60)
    if js:
        text = when.strftime("%a %b %d ") + f"{when.year:04d}" + when.strftime(" %H:%M:%S") + f" GMT{sign}{hh:02d}{mm:02d}"
    else:
        text = f"{when.year:04d}" + when.strftime("-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}:{mm:02d}"
    try:
        utc = (when - timedelta(minutes=offset)).replace(tzinfo=timezone.utc)
    except OverflowError:
        utc = None
    inside = utc is not None and datetime(2000, 1, 1, tzinfo=timezone.utc) <= utc < datetime(2100, 1, 1, tzinfo=timezone.utc)
    try:
        check_report(_with(path, text))
    except SchemaViolation as exc:
        assert not inside, text
        assert [(v.path, v.reason) for v in exc.violations] == [(path, "bad_timestamp")]
    else:
        assert inside, text


async def test_calendar_edge_through_the_service_is_422_and_quarantined(service, db):
    ws = await service.register()
    doc = _with("lastLogin", "9999-12-31T23:59:59-01:00")
    status, _, body = await service.post_report(ws["token"], doc)
    assert status == 422, body
    answer = orjson.loads(body)
    assert answer["violations"][0]["path"] == "lastLogin" and answer["violations"][0]["reason"] == "bad_timestamp"
    assert "statsToken" not in answer
    row = await db.fetchrow("SELECT reason, violations::text AS v FROM quarantine WHERE workspace_id = $1::uuid",
                            ws["workspace_id"])
    assert row["reason"] == "schema_violation" and "lastLogin" in row["v"] and "9999" not in row["v"]


@pytest.mark.parametrize("blank", ["", " ", "\t \n"])
def test_an_empty_or_blank_record_id_is_refused(blank):
    doc = load("report-8.7.0.json")
    doc["_id"] = blank
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert [(v.path, v.reason) for v in info.value.violations] == [("_id", "empty_value")]


async def test_two_records_with_an_empty_id_are_both_refused_not_merged(service, db):
    ws = await service.register()
    first, second = load("report-8.7.0.json"), load("report-8.7.0.json")
    first["_id"] = second["_id"] = ""
    second["activeUsers"] = first["activeUsers"] + 7
    for doc in (first, second):
        status, _, body = await service.post_report(ws["token"], doc)
        assert status == 422 and orjson.loads(body)["violations"][0]["path"] == "_id"
    assert await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 0
    doc = load("report-8.7.0.json")
    assert (await post_ok(service, ws["token"], doc))["outcome"] == "accepted"


_BAD_ITEM = {"count": "x", "time": "y", "type": 1, "name": 2, "version": 3, "sessions": "z",
             "roles": [1, 2, 3], "day": "q", "month": "q", "year": "q"}
_LISTS = [k for k, v in load("report-6.8.0.json").items() if isinstance(v, dict) and isinstance(v.get("data"), list)]


def test_thousands_of_wrong_items_are_named_up_to_the_cap_from_the_first_items():
    """Every session-aggregate list full of wrong items: the answer lists exactly
    MAX_VIOLATIONS violations, all within the first NAMING_CHUNK items of a list
    (the rest of the record is not validated item by item to name more)."""
    doc = load("report-6.8.0.json")
    for key in _LISTS:
        doc[key]["data"] = [dict(_BAD_ITEM) for _ in range(1000)]
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    found = info.value.violations
    assert len(found) == gate_model.MAX_VIOLATIONS
    indexes = {int(v.path.split("[")[1].split("]")[0]) for v in found if "[" in v.path}
    assert indexes and max(indexes) < gate_model.NAMING_CHUNK


def test_a_sparse_violation_deep_in_a_long_list_is_still_named_exactly():
    doc = load("report-6.8.0.json")
    item = dict(doc["uniqueDevicesOfLastMonth"]["data"][0])
    doc["uniqueDevicesOfLastMonth"]["data"] = [dict(item) for _ in range(4000)]
    doc["uniqueDevicesOfLastMonth"]["data"][3999]["count"] = "x"
    doc["uniqueDevicesOfLastMonth"]["data"][1234]["count"] = -1
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert sorted((v.path, v.reason) for v in info.value.violations) == [
        ("uniqueDevicesOfLastMonth.data[1234].count", "negative_count"),
        ("uniqueDevicesOfLastMonth.data[3999].count", "expected_integer"),
    ]


def test_a_list_over_its_cap_is_named_too_long_without_reading_its_items():
    doc = load("report-6.8.0.json")
    doc["uniqueDevicesOfLastMonth"]["data"] = [dict(_BAD_ITEM) for _ in range(gate_model.MAX_LIST_ITEMS + 1)]
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert [(v.path, v.reason) for v in info.value.violations] == [("uniqueDevicesOfLastMonth.data", "too_long")]

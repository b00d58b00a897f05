"""String privacy rules (collector.gate.rules) and the planted-identifier property of check_report."""

import copy
import re
import string
from datetime import datetime, timezone

import orjson
import pytest
from catalogue_helpers import REAL, catalogue_walk, load, set_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.gate import rules as privacy
from collector.gate.catalogue import BY_PATH, CATALOGUE_PATH, PATTERNS
from collector.gate.model import SchemaViolation, check_report
from collector.gate.rules import RuleViolation

# --- detectors -------------------------------------------------------------------------

@pytest.mark.parametrize("value,reason", [
    ("jane.doe@acme-corp.example", "looks_like_email"),
    ("contact: ops@acme.io", "looks_like_email"),
    ("https://chat.acme.example/", "looks_like_url"),
    ("ftp://files.acme.example", "looks_like_url"),
    ("www.acme.example", "looks_like_url"),
    ("192.168.10.20", "looks_like_ip"),
    ("10.0.0.1:3000", "looks_like_ip"),
    ("fe80::1%eth0", "looks_like_ip"),
    ("2001:db8::8a2e:370:7334", "looks_like_ip"),
    ("550e8400-e29b-41d4-a716-446655440000", "looks_like_identifier"),
    ("6683e080ffe932842327bf81", "looks_like_identifier"),
    ("vmR/GJuaVBp1DVI0dGNf+mC5kN1FMIl5/LUv16hpgk0=", "looks_like_identifier"),
    ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "looks_like_identifier"),
    ("Zq0x7PLmN4vR2sT9wK", "looks_like_identifier"),
    ("+49 (151) 2345-6789", "looks_like_phone"),
    ("chat.acme-corp.example", "looks_like_hostname"),
    ("Jane Doe", "free_text"),
    ("x" * 60, "free_text"),
])
def test_detectors_fire(value, reason):
    assert privacy.detect(value) == reason


@pytest.mark.parametrize("value", [
    "linux", "x64", "helm-chart", "selfinstall", "wiredTiger", "Auto_Selection", "6.8.0", "v22.22.3",
    "1.65.1-rc.0", "10.15.7", "x86_64", "pt-BR", "livechat-enterprise", "GridFS", "every_24_hours", "",
])
def test_detectors_stay_quiet_on_rocket_chat_vocabulary(value):
    assert privacy.detect(value) is None


# --- acceptance rules ----------------------------------------------------------------------

def test_enumeration_is_type_exact():
    allowed = privacy.typed_values(["", "Single", True, False])
    assert privacy.check_enumeration(True, allowed) is True
    with pytest.raises(RuleViolation) as info:
        privacy.check_enumeration(1, allowed)  # 1 == True in Python, not here
    assert info.value.reason == "not_in_enumeration"


def test_enumeration_on_unknown_maps_clean_values_only():
    allowed = privacy.typed_values(["Chrome"])
    assert privacy.check_enumeration("Opera GX", allowed, "other") == "other"
    assert privacy.check_enumeration("Yandex.Browser", allowed, "other") == "other"
    for bad, reason in [("jane@acme.example", "looks_like_email"), ("10.1.1.1", "looks_like_ip"),
                        ("https://x.example", "looks_like_url")]:
        with pytest.raises(RuleViolation) as info:
            privacy.check_enumeration(bad, allowed, "other")
        assert info.value.reason == reason


@pytest.mark.parametrize("name,ok,bad", [
    ("rc_version", ["0.61.0", "6.8.0", "7.0.0-rc.1", "0.61.0-develop", "1.65.1-rc.0"], ["6.8", "latest", "6.8.0-acme"]),
    ("node_version", ["v22.22.3", "v8.9.3"], ["22.22.3", "v22"]),
    ("mongo_version", ["5.0.15", "8.0.0", "7.0.0-rc1"], ["5", "5.0.15-acme"]),
    ("ua_version", ["", "124.0.0", "127.0", "17"], ["1.2.3.4", "beta"]),
    ("os_version", ["", "10.15.7", "10", "x86_64", "Vista"], ["Jane", "10.1.2.3"]),
])
def test_version_patterns(name, ok, bad):
    rx = re.compile(PATTERNS[name])
    for v in ok:
        assert privacy.check_version(v, rx) == v
    for v in bad:
        with pytest.raises(RuleViolation):
            privacy.check_version(v, rx)


def test_language_keys_fold_outside_rocket_chat_codes():
    allowed = frozenset(BY_PATH["userLanguages"].key_values)
    for k in ("none", "default", "en", "pt-BR", "pt-br", "zh-TW", "de-informal"):
        assert privacy.fold_key(k, allowed) == k
    for k in ("Jane Doe", "john@x.example", "klingonese", "sr-Latn", "PT-BR", "en ", "", "other"):
        assert privacy.fold_key(k, allowed) == "other"


def test_language_codes_are_rocket_chat_list():
    """The value set is the gathered list (schemas/data/rocketchat-languages.json) plus 'default'."""
    data = orjson.loads((CATALOGUE_PATH.parent / "data" / "rocketchat-languages.json").read_bytes())
    assert set(BY_PATH["userLanguages"].key_values) == set(data["all_keys"]) | {"none", "default"}
    assert "other" not in BY_PATH["userLanguages"].key_values


@pytest.mark.parametrize("text,expected", [
    ("2024-07-02T11:12:00.221Z", datetime(2024, 7, 2, 11, 12, 0, 221000, tzinfo=timezone.utc)),
    ("2026-08-03T12:10:31.407997128Z", datetime(2026, 8, 3, 12, 10, 31, 407997, tzinfo=timezone.utc)),
    ("Sat Jun 29 2024 12:57:57 GMT+0000 (Coordinated Universal Time)",
     datetime(2024, 6, 29, 12, 57, 57, tzinfo=timezone.utc)),
    ("Wed Dec 14 2022 09:08:07 GMT-0500 (Eastern Standard Time)",
     datetime(2022, 12, 14, 14, 8, 7, tzinfo=timezone.utc)),
    ("Mon Mar 03 2025 12:00:00 GMT+0530", datetime(2025, 3, 3, 6, 30, tzinfo=timezone.utc)),
])
def test_timestamps(text, expected):
    got = privacy.parse_timestamp(text)
    assert got == expected and got.utcoffset().total_seconds() == 0


def test_timestamp_empty_and_refusals():
    assert privacy.parse_timestamp("", empty_ok=True) is None
    for bad, reason in [("", "bad_timestamp"), ("yesterday", "bad_timestamp"), ("2024-02-30T00:00:00Z", "bad_timestamp"),
                        ("1970-01-01T00:00:00Z", "bad_timestamp"), ("jane@acme.example", "looks_like_email")]:
        with pytest.raises(RuleViolation) as info:
            privacy.parse_timestamp(bad)
        assert info.value.reason == reason


# --- property: a planted identifier is refused or vanishes ----------------------------------------

_DOCS = {name: load(name) for name in REAL}
_STRING_PATHS = {
    name: sorted(real for _c, real, v in catalogue_walk(doc) if isinstance(v, str) and real != "_id")
    for name, doc in _DOCS.items()
}
_OBJECT_PATHS = {
    name: sorted({real for _c, real, v in catalogue_walk(doc) if isinstance(v, dict)})
    for name, doc in _DOCS.items()
}
_FIRST = ["Jane", "John", "Maria", "Wei", "Olusegun", "Anna", "Carlos", "Fatima"]
_LAST = ["Doe", "Smith", "Müller", "Okafor", "Silva", "Nakamura", "Kowalski"]
_word = st.text(alphabet=string.ascii_letters + "äöüéß", min_size=3, max_size=10)

identifiers = st.one_of(
    st.emails(),
    st.builds(lambda s, h, p: f"{s}://{h}/{p}", st.sampled_from(["http", "https", "ftp"]), st.from_regex(
        r"[a-z]{3,10}\.[a-z]{2,8}\.(com|org|example)", fullmatch=True), st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True)),
    st.ip_addresses().map(str),
    st.builds(lambda f, la: f"{f} {la}", st.sampled_from(_FIRST), st.sampled_from(_LAST)),
    st.uuids().map(str),
    st.lists(_word, min_size=2, max_size=6).map(" ".join),
)
where = st.tuples(st.sampled_from(REAL), st.booleans(), st.integers(min_value=0, max_value=10**6),
                  st.from_regex(r"[a-z][A-Za-z0-9]{2,15}", fullmatch=True))


def _plant_and_check(planted: str, spot) -> None:
    name, existing, pick, new_key = spot
    doc = copy.deepcopy(_DOCS[name])
    if existing:
        paths = _STRING_PATHS[name]
        set_path(doc, paths[pick % len(paths)], planted)
    else:
        paths = _OBJECT_PATHS[name]
        target = paths[pick % len(paths)]
        set_path(doc, f"{target}.{new_key}" if target else new_key, planted)
    try:
        report = check_report(doc)
    except SchemaViolation as exc:
        for v in exc.violations:
            assert planted not in v.path and planted not in v.message
        return
    blob = orjson.dumps([report.categories, report.dropped, report.version]).decode()
    assert planted not in blob and orjson.dumps(planted).decode()[1:-1] not in blob
    assert report.record_id == doc["_id"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=identifiers, spot=where)
def test_planted_identifier_is_refused_or_vanishes(planted, spot):
    _plant_and_check(planted, spot)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=identifiers, spot=where)
def test_planted_identifier_is_refused_or_vanishes_many(planted, spot):
    _plant_and_check(planted, spot)

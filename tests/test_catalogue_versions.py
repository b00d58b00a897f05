"""The catalogue against what Rocket.Chat releases send (issue 9, part 2).

- every path of every extracted ``IStats`` typing (``tests/data/istats/<version>.json``,
  made by ``tools/istats_fields.py`` from ``@rocket.chat/core-typings``) has a
  catalogue entry;
- the per-version records carry only fields whose ``since``/``until`` admit
  their version, and the since/until values the evidence fixed
  (``tests/data/istats/COMPARISON.md``) stay fixed;
- an 8.8.1 record with the ABAC fields is accepted;
- ``null`` in place of every optional key (a resent record) is accepted;
- free-text enumerations fold an unlisted clean value to ``other``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from catalogue_helpers import PER_VERSION, REAL, catalogue_walk, load, maximal_record, set_path

from collector.gate.catalogue import BY_PATH, FIELDS
from collector.gate.model import ReportModel, SchemaViolation, check_report

ISTATS = Path(__file__).parent / "data" / "istats"
TYPED_VERSIONS = sorted((p.stem for p in ISTATS.glob("*.json")), key=lambda v: tuple(map(int, v.split("."))))
_SEG = re.compile(r"\[\]|[^.\[\]]+")


def _segments(path: str) -> tuple[str, ...]:
    return tuple(_SEG.findall(path))


def _match(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Same length, each segment equal or ``{}`` (a free map key) on either side."""
    return len(a) == len(b) and all(x == y or "{}" in (x, y) for x, y in zip(a, b))


def missing_paths(typings: dict, catalogue_paths) -> set[str]:
    """Typed paths of ``typings`` (one ``tests/data/istats`` document) that no catalogue
    path matches. Paths below a typed ``Record<string, unknown>`` (``services``,
    ``importer``) are covered by the catalogue's ``{}`` there or by its concrete keys."""
    cat = [_segments(p) for p in catalogue_paths if "#" not in p]
    return {p for p in typings["paths"] if not any(_match(_segments(p), c) for c in cat)}


def _typings(version: str) -> dict:
    return json.loads((ISTATS / f"{version}.json").read_text(encoding="utf-8"))


def test_typings_of_every_published_release_line_are_here():
    # the registry has 6.5.9 ... 6.13.1 and 8.3.0 ... 8.8.1 (no 7.x): the latest patch of each minor extracted
    assert TYPED_VERSIONS == ["6.5.9", "6.9.7", "6.13.1", "8.3.8", "8.6.2", "8.7.1", "8.8.1"]


@pytest.mark.parametrize("version", TYPED_VERSIONS)
def test_catalogue_has_every_typed_field(version):
    typings = _typings(version)
    assert typings["paths"], version
    assert missing_paths(typings, BY_PATH) == set(), f"IStats {version} fields missing from schemas/catalogue.json"


@pytest.mark.parametrize("version", TYPED_VERSIONS)
def test_typed_optional_fields_are_optional_in_the_catalogue(version):
    fields = _typings(version)["fields"]
    for path, f in BY_PATH.items():
        if f.required:
            assert path in fields and not fields[path]["optional"], (version, path)


def test_the_check_fails_for_a_missing_field():
    typings = _typings("8.8.1")
    assert missing_paths(typings, set(BY_PATH) - {"abacEnabled"}) == {"abacEnabled"}
    assert missing_paths(typings, {p for p in BY_PATH if not p.startswith("enterprise.voip")}) == {
        p for p in typings["paths"] if p.startswith("enterprise.voip")}


# --- versions ------------------------------------------------------------------------------------

def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split("-")[0].split(".")[:2]
    return int(major), int(minor)


#: Hand-written before any typings (the registry has none before 6.5.9); their
#: disagreements with the catalogue's since/until are not settled by evidence here:
#: rc-1.x uniqueUsersOfYesterday.data[].time (since 3.0), rc-2.x the *OfLastWeek
#: aggregates (since 3.0), rc-4.x totalTeams & co. (until 4.1).
_UNCHECKED = {"rc-1.x.json", "rc-2.x.json", "rc-4.x.json"}
_CHECKED = [n for n in PER_VERSION if n not in _UNCHECKED] + list(REAL) + ["abac-8.8.1.json"]


@pytest.mark.parametrize("name", _CHECKED)
def test_records_carry_only_fields_of_their_version(name):
    doc = load(name)
    v = _minor(doc["version"])
    wrong = sorted({cpath for cpath, _real, _value in catalogue_walk(doc) if cpath and (
        _minor(BY_PATH[cpath].since) > v or (BY_PATH[cpath].until and _minor(BY_PATH[cpath].until) <= v))})
    assert wrong == [], f"{name} ({doc['version']}) carries fields outside their since/until"


def test_since_and_until_from_the_evidence():
    """tests/data/istats/COMPARISON.md: typings, real records, Rocket.Chat pull requests."""
    expect = {
        "fips": ("8.7", None),  # typed from 8.7.1; real 8.7.0 sends it; PR #40510
        "fileStoreType": ("7.11", None),  # PR #37062, merged 2025-09-25
        "enterprise.voip": ("7.3", None),  # PR #34948, 2025-01-15; typed from 8.3.8
        "enterprise.voip.lastDay.callsDuration": ("7.3", None),
        "totalOTR": ("3.0", "8.0"), "totalOTRRooms": ("3.0", "8.0"),  # PR #36691 "chore!: remove OTR"
        "settings.otr": ("5.0", "8.0"), "settings.otr.otrEnable": ("5.0", "8.0"),
        "enterprise.omnichannelPdfTranscriptRequested": ("6.8", "8.0"),
        "voipEnabled": ("3.0", "8.0"), "federatedUsers": ("1.0", "8.0"), "webRTCEnabled": ("3.0", "8.0"),
        "omnichannelWebRTCCalls": ("3.0", "8.0"),  # sent through 7.x, not by the real 8.7.0
        "totalRoomsWithActiveLivestream": ("3.0", "6.10"),  # typed 6.9.7, gone from 6.13.1
        "totalLivechatRoomsWithPriority": ("7.0", None),
        "totalLivechatPublicCustomFields": ("6.8", None),  # PR #32129 (6.8 cycle); not typed in 6.5.9
        "abacEnabled": ("8.3", None), "abacRoomsEnrolled": ("8.3", None),  # typed from 8.3.8
        "uniqueUsersOfLastMonth.data[].roles[].role": ("1.0", None),  # still typed in 8.8.1
    }
    assert {p: (BY_PATH[p].since, BY_PATH[p].until) for p in expect} == expect
    for path in ("voipCalls", "voipExtensions", "voipSuccessfulCalls", "voipErrorCalls", "voipOnHoldCalls",
                 "federatedServers", "webRTCEnabledForOmnichannel"):
        assert BY_PATH[path].until == "8.0", path


def test_7x_and_8x_records_send_what_those_versions_send():
    r7, r8, r87 = load("rc-7.x.json"), load("rc-8.x.json"), load("report-8.7.0.json")
    group = ("totalOTR", "totalOTRRooms", "voipEnabled", "voipCalls", "federatedServers", "federatedUsers",
             "webRTCEnabled", "webRTCEnabledForOmnichannel", "omnichannelWebRTCCalls")
    assert all(k in r7 for k in group) and "otr" in r7["settings"]
    assert r7["enterprise"]["omnichannelPdfTranscriptRequested"] == 0 and "voip" in r7["enterprise"]
    assert "fileStoreType" in r7 and "fips" not in r7  # 7.12: file store type yes, FIPS not yet
    assert not any(k in r8 for k in group) and "otr" not in r8["settings"]
    assert "fips" not in r8 and "fips" in r87  # fips only from 8.7
    for doc in (r7, r8):
        report = check_report(doc, unknown="refuse")
        assert report.unknown_fields == ()
    pa = check_report(r7).categories["product_analytics"]
    assert pa["totalOTR"] == 2 and pa["settings.otr.otrEnable"] is False and pa["voipCalls"] == 14
    assert pa["enterprise.voip.total.calls"] == 120


def test_8_8_record_with_abac_fields_is_accepted():
    doc = load("abac-8.8.1.json")
    report = check_report(doc, unknown="refuse")
    assert report.version == "8.8.1" and report.unknown_fields == ()
    pa = report.categories["product_analytics"]
    assert (pa["abacEnabled"], pa["abacTotalAttributes"], pa["abacTotalAttributeValues"], pa["abacRoomsEnrolled"]) == (
        True, 4, 17, 9)
    for path in ("abacEnabled", "abacTotalAttributes", "abacTotalAttributeValues", "abacRoomsEnrolled"):
        f = BY_PATH[path]
        assert f.category == "product_analytics" and not f.identifying and not f.required and f.meaning


# --- null in place of an omitted key -------------------------------------------------------------

def _concrete(path: str) -> str:
    """A path of the maximal record: list items as [0], map keys as the sample key."""
    out = path.replace("[]", "[0]")
    out = out.replace("userLanguages.{}", "userLanguages.pt-BR")
    return out.replace("{}", "Any Provider Name")


_OPTIONAL = [f.path for f in FIELDS if not f.derived and not f.required
             and not f.path.endswith("[]") and not f.path.endswith(".{}")]


def test_every_optional_key_accepts_null():
    """A resent record is read back from MongoDB: null where a fresh one omits the key."""
    base = maximal_record()
    for path in _OPTIONAL:
        doc = copy.deepcopy(base)
        set_path(doc, _concrete(path), None)
        report = check_report(doc, unknown="refuse")  # the fast path accepts it...
        ReportModel.model_validate(doc)  # ...and so does the model (the published schema)
        f = BY_PATH[path]
        shared = sum((g.store_as or g.path) == (f.store_as or path) for g in FIELDS) > 1  # totlalLivechat
        if f.type not in ("object", "list", "map") and not f.identifying and "[" not in path and not shared:
            assert report.categories[f.category][f.store_as or path] is None, path
    assert len(_OPTIONAL) > 500  # the whole catalogue, not a sample


def test_required_keys_refuse_null():
    for path in ("_id", "createdAt"):
        doc = load("report-8.7.0.json")
        doc[path] = None
        with pytest.raises(SchemaViolation):
            check_report(doc)


def test_a_resent_record_with_nulls_for_every_omitted_key_is_accepted():
    fresh = load("report-8.7.0.json")
    resent = copy.deepcopy(fresh)
    for f in FIELDS:  # every top-level and nested key the record omits, as MongoDB gives it back
        if f.derived or f.required or f.path.endswith("[]") or f.path.endswith(".{}") or "[" in f.path:
            continue
        parent, _, key = f.path.rpartition(".")
        holder = resent
        for part in parent.split(".") if parent else []:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and key not in holder and not f.path.startswith("services.oauth.custom."):
            holder[key] = None
    assert resent["abacEnabled"] is None and resent["totalOTR"] is None and resent["settings"]["otr"] is None
    a, b = check_report(fresh), check_report(resent, unknown="refuse")
    assert b.categories["billing"] == a.categories["billing"]
    assert b.categories["compliance"]["createdAt"] == a.categories["compliance"]["createdAt"]
    assert b.categories["product_analytics"]["abacEnabled"] is None


# --- free text behind enumerations ------------------------------------------------------------------

FOLDED = [
    ("deploy.method", "my-own-installer"),  # DEPLOY_METHOD is whatever the operator sets
    ("deploy.platform", "Acme Corp production cluster"),
    ("videoConf.settings.provider", "acme-video-app"),  # a name an app registers
    ("uniqueDevicesOfYesterday.data[0].version", "125.0.1-beta"),
    ("uniqueOSOfYesterday.data[0].version", "14.5-beta"),
]


@pytest.mark.parametrize("path,value", FOLDED)
def test_unlisted_clean_value_folds_to_other(path, value):
    doc = maximal_record()
    set_path(doc, path, value)
    report = check_report(doc)
    key = re.sub(r"\[\d+\]", "[]", path)
    kept = report.categories[BY_PATH[key].category][key]
    assert (kept[0] if isinstance(kept, list) else kept) == "other"


def test_licence_modules_fold_an_unknown_module():
    doc = load("report-8.7.0.json")
    doc["enterprise"] = {"modules": ["auditing", "acme-external-module"], "tags": []}
    assert check_report(doc).categories["compliance"]["enterprise.modules"] == ["auditing", "other"]


REFUSED = [
    ("deploy.method", "550e8400-e29b-41d4-a716-446655440000", "looks_like_identifier"),
    ("deploy.platform", "ops@acme-corp.example", "looks_like_email"),
    ("videoConf.settings.provider", "https://video.acme-corp.example/x", "looks_like_url"),
    ("enterprise.modules[0]", "10.20.30.40", "looks_like_ip"),
    ("uniqueDevicesOfYesterday.data[0].version", "10.20.30.40", "looks_like_ip"),
    ("uniqueOSOfYesterday.data[0].version", "+49 151 2345 6789", "looks_like_phone"),
]


@pytest.mark.parametrize("path,value,reason", REFUSED)
def test_identifier_like_value_is_still_refused(path, value, reason):
    doc = maximal_record()
    set_path(doc, path, value)
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert (path, reason) in {(v.path, v.reason) for v in info.value.violations}
    assert value not in str(info.value)

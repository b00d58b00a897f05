"""Unit tests of the privacy gate: catalogue, strict schema, check_report."""

import copy
import json
from pathlib import Path

import orjson
import pytest
from catalogue_helpers import (
    PER_VERSION,
    REAL,
    del_path,
    identifying_values,
    load,
    maximal_record,
    scalars,
    set_path,
)

from collector.gate import catalogue
from collector.gate import model as schema
from collector.gate.catalogue import (
    BY_PATH,
    CATEGORIES,
    CONTRACT_CATEGORIES,
    FIELDS,
    OPTIONAL_CATEGORIES,
    CatalogueError,
    format_catalogue,
    load_catalogue,
)
from collector.gate.model import (
    MESSAGES,
    CheckedReport,
    SchemaViolation,
    Violation,
    check_report,
    json_schema,
)

ROOT = Path(__file__).resolve().parent.parent
VOCABULARY = {v for f in FIELDS if f.values for v in f.values}


def violations_of(doc, unknown: str = "refuse") -> list[Violation]:
    """The violations of a refused record (strict by default: unknown keys are violations)."""
    with pytest.raises(SchemaViolation) as info:
        check_report(doc, unknown=unknown)
    return info.value.violations


def leaf_values(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaf_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaf_values(v)
    else:
        yield value


def output_scalars(report: CheckedReport) -> set:
    return {v for cat in report.categories.values() for v in scalars(list(cat.values()))}


# --- real records --------------------------------------------------------------------

@pytest.mark.parametrize("name", REAL)
def test_real_records_are_accepted(name):
    doc = load(name)
    report = check_report(doc)
    assert report.record_id == doc["_id"]
    assert report.version == doc["version"]
    assert report.created_at.tzinfo is not None and report.created_at.utcoffset().total_seconds() == 0
    assert report.created_at.isoformat().startswith(doc["createdAt"][:19])
    assert set(report.categories) == set(CATEGORIES)
    assert report.categories["billing"]["activeUsers"] == doc["activeUsers"]
    assert report.categories["compliance"]["version"] == doc["version"]
    assert {"host", "uniqueId", "_id", "installedAt", "statsToken", "os.release", "os.cpus[].model",
            "process.pid", "wizard"} <= set(report.dropped)


@pytest.mark.parametrize("name", REAL + PER_VERSION)
def test_no_identifying_value_reaches_the_categories(name):
    doc = load(name)
    report = check_report(doc)
    blob = orjson.dumps(report.categories).decode()
    kept = output_scalars(report)
    secrets = [v for v in identifying_values(doc) if v not in (None, "", True, False)]
    assert secrets, "the fixture should carry identifying values"
    for value in secrets:
        text = str(value)
        if isinstance(value, str) and len(text) >= 6 and (len(text) >= 12 or any(c in text for c in "0123456789@./:")):
            assert text not in blob, f"identifying value leaked into categories ({name})"
            if len(text) >= 19 and text[4:5] == "-" and text[10:11] == "T":  # ISO timestamp, also normalised
                assert text[:19] not in blob
        elif isinstance(value, int) and value >= 1000:
            assert text not in blob
        elif isinstance(value, str) and value not in VOCABULARY:  # generic words like "other" may legitimately be kept elsewhere
            assert value not in kept
    for key in (k for cat in report.categories.values() for k in cat if "#" not in k):  # derived counts excepted
        base = key
        for f in FIELDS:
            if f.identifying:
                assert base != f.path and not base.startswith(f.path + ".") and not base.startswith(f.path + "[")
    assert report.record_id not in blob


# --- one record per major Rocket.Chat version ------------------------------------------------

def _check_version(report, doc, major):
    assert report.version.split(".")[0] == str(major)
    assert report.categories["compliance"]["createdAt"].startswith(doc["createdAt"][:19])
    return report.categories


@pytest.mark.parametrize("major", range(9))
def test_one_record_per_major_version(major):
    doc = load(f"rc-{major}.x.json")
    cats = _check_version(check_report(doc), doc, major)
    billing, compliance = cats["billing"], cats["compliance"]
    operational, product = cats["operational"], cats["product_analytics"]
    assert billing["activeUsers"] == doc["activeUsers"]
    if major == 0:  # 0.x misspelt totlalLivechat is stored under the right name
        assert product["totalLivechat"] == 0 and "totlalLivechat" not in product
        assert product["lastLogin"] == "2018-02-24T12:44:45.045+00:00"
    if major == 1:
        assert operational["apps.enabled"] is True
        assert not any(k.startswith("wizard") for c in cats.values() for k in c)
    if major == 2:  # apps engine not initialised: false instead of counts
        assert compliance["apps.totalInstalled"] is False and compliance["apps.totalActive"] is False
    if major == 3:
        assert product["userLanguages.pt-BR"] == 40 and product["userLanguages.none"] == 300
        assert product["services.oauth.custom#providers"] == 2
        assert product["services.oauth.custom#enabled"] == 1
        assert product["services.oauth.custom#users"] == 19
        assert product["teams.teamStats[].totalMembers"] == [20, 8]
        assert compliance["enterprise.tags#count"] == 1
        assert billing["activeGuests"] == 12
    if major == 4:
        assert product["omnichannelSources#type.app"] == 1 and product["omnichannelSources#type.email"] == 1
        assert product["omnichannelSources[].type"] == ["widget", "app", "email"]
        assert product["omnichannelSources[].count"] == [80, 15, 5]
        assert product["customCSS"] == 14
    if major == 5:  # Date.toString() in a non-UTC zone is normalised to UTC
        assert product["lastLogin"] == "2022-12-14T14:08:07.000+00:00"
        assert product["totalOTR"] == 2 and product["settings.otr.otrEnable"] is True
    if major == 6:
        assert billing["omnichannelContactsBySource.contactsCount"] == 42
        assert billing["omnichannelContactsBySource.sources[].contactsCount"] == [30, 12]
        assert billing["dailyPeakConnections"] == 37 and billing["maxMonthlyPeakConnections"] == 52
        assert product["matrixFederation.biggestRoom.usersCount"] == 23
        assert product["matrixFederation.externalConnectedServers.servers#count"] == 2
        assert product["lastSeenSubscription"] is None
    if major == 7:
        assert product["offlineUsers"] == -2
        assert product["contactVerification.avgChannelsPerContact"] == 1.35
        assert compliance["apps.totalPrivateApps"] == 2
        assert compliance["apps#marketplaceEnabled"] == 4 and compliance["apps#marketplaceInstalled"] == 5
        assert operational["fileStoreType"] == "AmazonS3"
    if major == 8:
        assert compliance["apps.totalPrivateApps"] is False and "apps#marketplaceEnabled" not in compliance
        assert product["lastLogin"] is None and product["visitorAbandonment"] is None
        assert product["matrixFederation.maximumSizeOfPublicRoomsUsers"] is False
    # user-agent names outside the allow-list are kept only as "other"
    if "uniqueDevicesOfYesterday" in doc:
        assert product["uniqueDevicesOfYesterday.data[].name"][-1] == "other"


def test_lead_keys_for_billing_and_compliance():
    """The flat keys the storage/rollup code reads."""
    cats = check_report(load("report-8.7.0.json")).categories
    assert {"activeUsers", "activeGuests", "omnichannelContactsBySource.contactsCount",
            "dailyPeakConnections", "maxMonthlyPeakConnections"} <= set(cats["billing"])
    assert {"version", "createdAt", "apps.totalInstalled", "apps.totalActive", "apps.totalPrivateApps",
            "apps.totalPrivateAppsEnabled", "apps#marketplaceInstalled", "apps#marketplaceEnabled",
            "enterprise.modules"} <= set(cats["compliance"])
    assert catalogue.CONTRACT_CATEGORIES == ("billing", "compliance")
    assert catalogue.OPTIONAL_CATEGORIES == ("operational", "product_analytics")
    assert CONTRACT_CATEGORIES + OPTIONAL_CATEGORIES == CATEGORIES


def test_history_quirks_are_accepted():
    doc = load("report-8.7.0.json")
    doc["lastLogin"] = "Sat Jun 29 2024 12:57:57 GMT+0000 (Coordinated Universal Time)"
    doc["lastSeenSubscription"] = ""
    doc["offlineUsers"] = -3
    doc["apps"]["totalActive"] = False
    doc["os"]["uptime"] = 12.75
    doc["contactVerification"]["avgChannelsPerContact"] = 0.5
    doc["totlalLivechat"] = 4
    del doc["totalLivechat"]
    report = check_report(doc)
    pa = report.categories["product_analytics"]
    assert pa["lastLogin"] == "2024-06-29T12:57:57.000+00:00" and pa["lastSeenSubscription"] is None
    assert pa["offlineUsers"] == -3 and pa["totalLivechat"] == 4
    assert report.categories["compliance"]["apps.totalActive"] is False
    assert report.categories["operational"]["os.uptime"] == 12.75


def test_check_report_is_deterministic():
    doc = load("report-6.8.0.json")
    a, b = check_report(doc), check_report(copy.deepcopy(doc))
    assert orjson.dumps(a.categories) == orjson.dumps(b.categories) and a.dropped == b.dropped
    cols = a.categories["operational"]
    assert len(cols["os.cpus[].times.user"]) == len(doc["os"]["cpus"]) == len(cols["os.cpus[].speed"])


# --- reason codes at the right path ---------------------------------------------------

CASES = [
    # (path, value, expected path, expected reason)
    ("activeUsers", "12", "activeUsers", "expected_integer"),
    ("activeUsers", True, "activeUsers", "expected_integer"),
    ("activeUsers", 1.5, "activeUsers", "expected_integer"),
    ("livechatEnabled", 1, "livechatEnabled", "expected_boolean"),
    ("livechatEnabled", "true", "livechatEnabled", "expected_boolean"),
    ("os.uptime", "12.5", "os.uptime", "expected_number"),
    ("os.uptime", False, "os.uptime", "expected_number"),
    ("apps.totalActive", "3", "apps.totalActive", "expected_integer"),
    ("apps.totalActive", True, "apps.totalActive", "expected_integer"),
    ("apps.totalActive", -1, "apps.totalActive", "negative_count"),
    ("push", True, "push", "expected_integer"),
    ("push", 9, "push", "not_in_enumeration"),
    ("BusinessHours.strategy", 1, "BusinessHours.strategy", "not_in_enumeration"),
    ("os.loadavg", "0.1", "os.loadavg", "expected_list"),
    ("os.loadavg", [0.1, "0.2"], "os.loadavg[1]", "expected_number"),
    ("os", "linux", "os", "not_an_object"),
    ("matrixFederation.biggestRoom", [], "matrixFederation.biggestRoom", "not_an_object"),
    # an unknown key is shown only when it is a catalogue field name (in the wrong
    # place); any other key could be a person's or a room's name: "{}"
    ("totallyNewField", 1, "{}", "unknown_field"),
    ("jsmith", 1, "{}", "unknown_field"),
    ("os.cpus[1].vendor", "AuthenticAMD", "os.cpus[1].{}", "unknown_field"),
    ("apps.activeUsers", 3, "apps.activeUsers", "unknown_field"),
    ("activeUsers", 2**53, "activeUsers", "number_too_large"),
    ("os.uptime", 1e300, "os.uptime", "number_too_large"),
    ("offlineUsers", -(2**53), "offlineUsers", "number_too_large"),
    ("jane.doe@acme-corp.example", 1, "{}", "unknown_field"),
    ("activeUsers", -1, "activeUsers", "negative_count"),
    ("os.cpus[1].times.user", -5, "os.cpus[1].times.user", "negative_count"),
    ("os.platform", "plan9", "os.platform", "not_in_enumeration"),
    ("deploy.platform", "ops@acme-corp.example", "deploy.platform", "looks_like_email"),
    ("deploy.method", "https://deploy.acme-corp.example/x", "deploy.method", "looks_like_url"),
    ("deploy.platform", "10.20.30.40", "deploy.platform", "looks_like_ip"),
    ("deploy.platform", "2001:db8::42", "deploy.platform", "looks_like_ip"),
    ("os.platform", "k8s.acme-corp.example", "os.platform", "looks_like_hostname"),
    ("deploy.platform", "550e8400-e29b-41d4-a716-446655440000", "deploy.platform", "looks_like_identifier"),
    ("deploy.platform", "+49 151 2345 6789", "deploy.platform", "looks_like_phone"),
    ("os.platform", "Acme Corp production cluster", "os.platform", "free_text"),
    ("version", "latest", "version", "bad_version"),
    ("version", "10.1.2.3", "version", "looks_like_ip"),
    ("process.nodeVersion", "22", "process.nodeVersion", "bad_version"),
    ("mongoVersion", "mongo.acme-corp.example", "mongoVersion", "looks_like_hostname"),
    ("createdAt", "yesterday", "createdAt", "bad_timestamp"),
    ("createdAt", "", "createdAt", "bad_timestamp"),
    ("lastLogin", "Sat Jun 31 2024 12:57:57 GMT+0000 (Coordinated Universal Time)", "lastLogin", "bad_timestamp"),
    ("lastLogin", "1999-12-31T23:59:59Z", "lastLogin", "bad_timestamp"),
    ("version", "9" * 100, "version", "too_long"),
    ("uniqueId", "x" * 5000, "uniqueId", "too_long"),
    ("uniqueId", 12345, "uniqueId", "expected_string"),
    ("userLanguages", {"en": "3"}, "userLanguages.{}", "expected_integer"),
    ("services.oauth.custom", {"Jane Doe SSO": {"enabled": "yes", "users": 1}},
     "services.oauth.custom.{}.enabled", "expected_boolean"),
    ("services.oauth.custom", {"Jane Doe SSO": {"enabled": True, "users": 1, "secret": "s3cr3t-value"}},
     "services.oauth.custom.{}.{}", "unknown_field"),
    ("uniqueOSOfLastMonth.data", [{"name": "jane.doe@acme-corp.example", "version": "1", "count": 1, "time": 1}],
     "uniqueOSOfLastMonth.data[0].name", "looks_like_email"),
    ("uniqueDevicesOfLastMonth.data", [{"type": "browser", "name": "Chrome", "version": "jane@acme-corp.example",
                                        "count": 1, "time": 1}],
     "uniqueDevicesOfLastMonth.data[0].version", "looks_like_email"),
    ("process.nodeVersion", "Jane's laptop", "process.nodeVersion", "free_text"),
    ("enterprise.modules", ["auditing", "ops@acme-corp.example"], "enterprise.modules[1]", "looks_like_email"),
    ("omnichannelSources", [{"id": "x", "alias": "y", "type": "carrier-pigeon", "count": 1}],
     "omnichannelSources[0].type", "not_in_enumeration"),
]


@pytest.mark.parametrize("path,value,where,reason", CASES, ids=[f"{c[3]}@{c[2]}" for c in CASES])
def test_reason_code_at_path_without_value(path, value, where, reason):
    doc = load("report-8.7.0.json")
    if "@" in path:  # a top-level field name that is itself personal data
        doc[path] = value
    else:
        set_path(doc, path, value)
    found = violations_of(doc)
    assert (where, reason) in {(v.path, v.reason) for v in found}
    secrets = [s for s in leaf_values(value) if isinstance(s, str) and len(s) >= 5]
    if path in ("userLanguages", "services.oauth.custom") or "@" in path:  # personal map keys / field names
        secrets += list(value) if isinstance(value, dict) else [path]
    for v in found:
        assert v.message == MESSAGES[v.reason]
        for s in secrets:
            assert s not in v.path and s not in v.message
    text = str(SchemaViolation(found))
    for s in secrets:
        assert s not in text


@pytest.mark.parametrize("field", ["_id", "createdAt"])
def test_required_fields(field):
    doc = load("report-8.7.0.json")
    del_path(doc, field)
    assert [(v.path, v.reason) for v in violations_of(doc)] == [(field, "missing_field")]


@pytest.mark.parametrize("doc", [[], "report", 3, None])
def test_record_must_be_an_object(doc):
    assert [(v.path, v.reason) for v in violations_of(doc)] == [("$", "not_an_object")]


def test_all_violations_are_reported_and_capped():
    doc = load("report-8.7.0.json")
    doc["activeUsers"] = "1"
    doc["deploy"]["platform"] = "ops@acme-corp.example"
    doc["os"]["cpus"][0]["times"]["idle"] = -1
    assert {(v.path, v.reason) for v in violations_of(doc)} == {
        ("activeUsers", "expected_integer"), ("deploy.platform", "looks_like_email"),
        ("os.cpus[0].times.idle", "negative_count")}
    doc["os"]["cpus"] = [{"model": "x", "speed": "fast", "times": {}} for _ in range(150)]
    assert len(violations_of(doc)) == schema.MAX_VIOLATIONS


def test_violation_error_does_not_chain_the_pydantic_error():
    doc = load("report-8.7.0.json")
    doc["deploy"]["platform"] = "ops@acme-corp.example"
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- catalogue and model agree ------------------------------------------------------------------

def test_every_catalogue_path_is_accepted_and_kept_or_dropped():
    doc = maximal_record()
    report = check_report(doc)
    keys = {k for cat in report.categories.values() for k in cat}
    for f in FIELDS:
        if f.identifying:
            ancestors = [p for p in report.dropped if f.path == p or f.path.startswith(p + ".")
                         or f.path.startswith(p + "[")]
            assert ancestors, f"identifying {f.path} not reported as dropped"
            continue
        if f.derived:
            assert f.path in keys, f.path
        elif f.type not in ("object", "list", "map"):
            if f.path.endswith("[]"):  # list of scalars: kept under the list path
                assert f.path[:-2] in keys, f.path
            elif f.path.endswith(".{}"):
                assert f.path[:-3] + ".pt-BR" in keys, f.path
            else:
                assert (f.store_as or f.path) in keys, f.path
    for cat in CATEGORIES:  # each key sits in its catalogue category
        for key in report.categories[cat]:
            base = key[:-2] + "[]" if key + "[]" in BY_PATH else key
            base = "userLanguages.{}" if key.startswith("userLanguages.") else base
            base = "totlalLivechat" if key == "totalLivechat" and "totalLivechat" not in BY_PATH else base
            f = BY_PATH.get(base) or BY_PATH.get(key + "[]")
            assert f is not None and f.category == cat, key


def _object_paths():
    """Concrete paths of every object in the maximal record (list items as [0])."""
    out = [""]
    for f in FIELDS:
        if f.type == "object" and not f.derived:
            out.append(f.path.replace("[]", "[0]"))
    return out


def test_nothing_outside_the_catalogue_is_accepted():
    base = maximal_record()
    for path in _object_paths():
        if ".{}" in path or path.endswith("{}"):
            path = path.replace("{}", "Any Provider Name")
        doc = copy.deepcopy(base)
        target = f"{path}.notInCatalogue" if path else "notInCatalogue"
        set_path(doc, target, 1)
        expected = target.replace("Any Provider Name", "{}").replace("notInCatalogue", "{}")
        assert (expected, "unknown_field") in {(v.path, v.reason) for v in violations_of(doc)}, target


def _schema_paths(node, defs, path, out):
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in node:
        for alt in node["anyOf"]:
            if alt.get("type") != "null":
                _schema_paths(alt, defs, path, out)
        return
    if path:
        out.add(path)
    if node.get("type") == "object" and "properties" in node:
        assert node.get("additionalProperties") is False, path
        for key, sub in node["properties"].items():
            _schema_paths(sub, defs, f"{path}.{key}" if path else key, out)
    elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        _schema_paths(node["additionalProperties"], defs, path + ".{}", out)
    elif node.get("type") == "array":
        _schema_paths(node["items"], defs, path + "[]", out)


def test_json_schema_lists_exactly_the_catalogue_paths():
    s = json_schema()
    out: set[str] = set()
    _schema_paths(s, s["$defs"], "", out)
    assert out == {f.path for f in FIELDS if not f.derived}
    assert s["required"] == ["_id", "createdAt"]


def test_checked_in_json_schema_matches_the_code():
    """Fails when schemas/report.schema.json drifts: regenerate with
    `uv run python -m collector.gate.model > schemas/report.schema.json`."""
    text = (ROOT / "schemas" / "report.schema.json").read_text(encoding="utf-8")
    assert text == json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_catalogue_file_is_canonically_formatted():
    """One field per line: fix with `uv run python -m collector.gate.catalogue fmt`."""
    text = catalogue.CATALOGUE_PATH.read_text(encoding="utf-8")
    assert format_catalogue(json.loads(text)) == text
    lines = text.splitlines()
    field_lines = [ln for ln in lines if ln.lstrip().startswith('{"path":')]
    assert len(field_lines) == len(FIELDS)


def test_catalogue_contract_categories():
    billing = {f.path for f in FIELDS if f.category == "billing" and f.cls not in ("structure", "identifying")}
    assert {"activeUsers", "activeGuests", "omnichannelContactsBySource.contactsCount",
            "dailyPeakConnections", "maxMonthlyPeakConnections"} <= billing
    compliance = {f.path for f in FIELDS if f.category == "compliance"}
    assert {"version", "createdAt", "apps.totalPrivateApps", "enterprise.modules"} <= compliance
    assert all(f.category == "operational" for f in FIELDS if f.identifying)
    assert {f.path for f in FIELDS if f.signed} == {"offlineUsers", "userLanguages.{}"}
    assert catalogue.CATALOGUE_VERSION == load_catalogue().version


@pytest.mark.parametrize("breakage,needle", [
    (lambda d: d["fields"][1].update(category="marketing"), "category"),
    (lambda d: d["fields"][1].update(type="bigint"), "type"),
    (lambda d: d["fields"].append({**d["fields"][-1]}), "duplicate"),
    (lambda d: d["fields"].insert(1, {**d["fields"][1], "path": "nope.child"}), "parent"),
    (lambda d: d["fields"][1].update(values="no_such_set", **{"class": "enumeration"}), "value set"),
    (lambda d: d["fields"][1].update(colour="red"), "unknown keys"),
])
def test_broken_catalogue_is_refused(tmp_path, breakage, needle):
    doc = json.loads(catalogue.CATALOGUE_PATH.read_text(encoding="utf-8"))
    breakage(doc)
    broken = tmp_path / "catalogue.json"
    broken.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CatalogueError, match=needle):
        load_catalogue(broken)

"""Issue 10: no name or identifier through map keys, version-shaped values or client-derived names.

* every real version (tests/data/versions/*.txt, gathered from Rocket.Chat, Node.js,
  MongoDB, Rocket.Chat's desktop and mobile app tags, ua-parser-js on real user
  agents; see tools/GATEDATA.md) passes its catalogue pattern *and* the detectors,
  except the exact lists below; every generated IPv4 (any notation) and phone
  shape is refused by every version pattern;
* both sides of each line the detectors draw;
* the catalogue says ``why`` for every kept string position and every map with keys;
* every allow-listed constant passes the detectors;
* userLanguages keys fold into ``other``, fast path and pydantic model alike.
"""

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.gate import fastpath
from collector.gate import rules as privacy
from collector.gate.catalogue import BY_PATH, FIELDS, PATTERNS
from collector.gate.model import ReportModel, check_report
from tests.conftest import load_fixture

VERSIONS = Path(__file__).parent / "data" / "versions"
#: Rocket.Chat's cut of a device version (SAUMonitor.ts): desktop and mobile app tags are stored so
RC_DEVICE_CUT = re.compile(r"(\d+\.){0,2}\d+")
CORPORA = {
    "rocketchat.txt": "rc_version", "apps-engine.txt": "rc_version", "nodejs.txt": "node_version",
    "mongodb.txt": "mongo_version", "desktop.txt": "ua_version", "mobile.txt": "ua_version",
    "browsers.txt": "ua_version", "os.txt": "os_version",
}
#: Real values refused, exactly (a record carrying one is refused, as before issue 10 for most):
#: more than 9 digits, 4 parts, spaces, dashes, or a two-digit middle before a 6-digit last part.
REFUSED = {
    "rocketchat.txt": {"0.7.1862"},
    "browsers.txt": {"5.04.110603", "30.1.161623614", "295.0.590048842", "2409760", "20171113"},
    "os.txt": {" M", " X", "NT x", "Series X", "x.y", "1.0.9-4.el4", "1.5.0.4", "1.9.2.13-1pclos2010",
               "1.9.2.22-0.1mdv2010.2", "1.22.79313", "1.42.183786", "3.0-0.49", "3.0.1-1", "3.0.2PATCH",
               "3.0.4-1.fc10", "3.0.6-3", "3.6.17-0.2.1", "4.3.4-11.el6_1.4", "5.0.0.912", "6.1 Standard",
               "v10.6.4 CoreMedia v1.0.0.10F2108", "16-dev"},
}
VERSION_RULES = {name: re.compile(PATTERNS[name]) for name in set(CORPORA.values())}


def _corpus(name: str) -> list[str]:
    values = [line.rstrip("\n") for line in (VERSIONS / name).read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    if name in ("desktop.txt", "mobile.txt"):
        values = [m.group(0) if (m := RC_DEVICE_CUT.search(v)) else "" for v in values]
    return values


def _accepts(pattern: str, value: str) -> bool:
    try:
        privacy.check_version(value, VERSION_RULES[pattern])
    except privacy.RuleViolation:
        return False
    return True


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_every_real_version_passes_pattern_and_detectors(corpus):
    values = _corpus(corpus)
    assert len(values) > 50
    refused = {v for v in values if not _accepts(CORPORA[corpus], v)}
    assert refused == REFUSED.get(corpus, set())


def test_values_of_the_real_records_pass():
    for value, pattern in [("124.0.0", "ua_version"), ("17.1.2", "ua_version"), ("", "ua_version"),
                           ("124.0.6367", "ua_version"), ("10.15.7", "os_version"), ("x86_64", "os_version"),
                           ("", "os_version"), ("22.04", "os_version"), ("6.8.0", "rc_version"),
                           ("8.7.0", "rc_version"), ("v22.16.0", "node_version"), ("7.0.14", "mongo_version")]:
        assert privacy.check_version(value, VERSION_RULES[pattern]) == value


# --- generated IPv4 / IPv6 / phone shapes ---------------------------------------------------

def _notations(ip: int, port: int, style: int) -> list[str]:
    """IPv4 ``ip`` (>= 1.0.0.0) in the notations inet_aton, browsers and ping accept."""
    o = [(ip >> s) & 255 for s in (24, 16, 8, 0)]
    out = [
        ".".join(map(str, o)),                                   # 192.168.1.20
        ".".join(f"{x:03d}" for x in o),                         # 192.168.001.020
        ".".join(f"0{x:o}" for x in o),                          # 0300.0250.01.024
        ".".join(f"0x{x:x}" for x in o),                         # 0xc0.0xa8.0x1.0x14
        ".".join(f"0x{x:02X}" if i % 2 else str(x) for i, x in enumerate(o)),  # mixed
        "_".join(map(str, o)),                                   # 192_168_1_20 (ua-parser-js style)
        "v" + ".".join(map(str, o)),
        f"0x{o[0]:x}.{o[1]}.{(o[2] << 8) | o[3]}",               # a.b.16bit with a hex part
        f"0{o[0]:o}.{(o[1] << 16) | (o[2] << 8) | o[3]}",        # a.24bit with an octal part
        f"0x{o[0]:x}.{(o[1] << 16) | (o[2] << 8) | o[3]}",
        str(ip),                                                  # 32-bit integer
        f"0x{ip:x}", f"0{ip:o}",
        ".".join(map(str, o)) + f":{port}",
        f"::ffff:{'.'.join(map(str, o))}",
        f"[::ffff:{o[0]}.{o[1]}.{o[2]}.{o[3]}]:{port}",
    ]
    return out if style == 0 else [out[style % len(out)]]


ipv4 = st.integers(min_value=2**24, max_value=2**32 - 1)
ipv6 = st.ip_addresses(v=6).map(str)


def _phone(cc: str, groups: list[str], sep: str, form: int) -> str:
    national = sep.join(groups)
    return [f"+{cc}{sep or ' '}{national}", f"00{cc}{sep}{national}", f"0{national}",
            f"({groups[0]}){sep or ' '}{sep.join(groups[1:])}" if len(groups) > 1 else f"0{national}",
            national][form]


#: E.164 (+cc, 00cc) and national forms, 8 to 12 national digits, groups of 2 to 5 digits (7 digits: 3-4 grouping).
phones = st.one_of(
    st.builds(_phone, st.from_regex(r"[1-9]\d{0,2}", fullmatch=True),
              st.lists(st.from_regex(r"\d{2,5}", fullmatch=True), min_size=2, max_size=5)
              .filter(lambda g: 8 <= sum(map(len, g)) <= 12),
              st.sampled_from([" ", "-", ".", ""]), st.integers(0, 4)),
    st.builds(lambda a, b, sep: f"{a}{sep}{b}", st.from_regex(r"[2-9]\d{2}", fullmatch=True),
              st.from_regex(r"\d{4}", fullmatch=True), st.sampled_from([" ", "-", ".", ""])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ip=ipv4, port=st.integers(1, 65535), v6=ipv6)
def test_every_ip_notation_is_refused_by_every_version_rule_and_detected(ip, port, v6):
    for value in _notations(ip, port, 0) + [v6, f"[{v6}]:{port}", f"{v6}%eth0"]:
        assert privacy.looks_like_ip(value), value
        for name, rx in VERSION_RULES.items():
            with pytest.raises(privacy.RuleViolation):
                privacy.check_version(value, rx)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phone=phones)
def test_every_phone_shape_is_refused_by_every_version_rule_and_detected(phone):
    assert privacy.detect(phone) in ("looks_like_phone", "looks_like_ip"), phone
    for rx in VERSION_RULES.values():
        with pytest.raises(privacy.RuleViolation):
            privacy.check_version(phone, rx)


# --- both sides of the detector lines -----------------------------------------------------------

@pytest.mark.parametrize("value", [
    "010.001.002.003", "0x7f.1", "2130706433", "0x7f000001", "017700000001", "0177.1", "010.1.2",
    "0300.0250.01.024", "192_168_1_20", "v10.0.0.1", "0.0.0.0", "127.0.0.1:8080", "[::1]:443",
    "fe80::1%eth0", "::ffff:10.0.0.1", "host at 010.001.002.003",
])
def test_ip_detector_catches_every_notation(value):
    assert privacy.looks_like_ip(value)


@pytest.mark.parametrize("value", [
    "124.0.0", "17.1.2", "10.15.7", "124.0.6367", "8.1", "22.04", "5.04", "05", "0.020", "x86_64", "",
    "2409760", "0000", "007", "13310.93.0", "7.6.40234", "18.17763", "2020.16.2", "1_2.3",
])
def test_ip_detector_leaves_real_versions(value):
    assert not privacy.looks_like_ip(value)


@pytest.mark.parametrize("value,phone", [
    ("555.123.4567", True), ("12.34.5678", True), ("912.34.5678", True), ("555.1234", True),
    ("06.12.34.56.78", True), ("0049.30.1234567", True), ("030.1234.5678", True), ("+49 151 2345 6789", True),
    ("5551234567", True), ("124.0.6367", False), ("7.6.40234", False), ("10.0.19045", False),
    ("2020.16.2", False), ("18.17763", False), ("23.36.215", False), ("536.26.9", False),
])
def test_phone_detector_line(value, phone):
    assert privacy.looks_like_phone(value) is phone


#: the version patterns before issue 10: they let these through, the detectors (second net) do not
_OLD = {
    "ua_version": r"^(?:\d{1,6}(?:\.\d{1,6}){0,3})?$",
    "os_version": r"^(?:\d{1,6}(?:[._]\d{1,6}){0,3}|x86_64)?$",
}


@pytest.mark.parametrize("value,reason", [
    ("010.001.002.003", "looks_like_ip"), ("192.168.001.020", "looks_like_ip"), ("192_168_1_20", "looks_like_ip"),
    ("555.123.4567", "looks_like_phone"), ("030.1234.5678", "looks_like_phone"), ("12.34.56.78", "looks_like_ip"),
])
def test_second_net_names_the_detector(value, reason):
    for pattern in _OLD.values():
        if re.match(pattern, value):
            with pytest.raises(privacy.RuleViolation) as info:
                privacy.check_version(value, re.compile(pattern))
            assert info.value.reason == reason


# --- the catalogue -------------------------------------------------------------------------------

def _kept_strings():
    return [f for f in FIELDS if not f.identifying and not f.derived
            and (f.type in ("string", "scalar", "datetime") or f.type == "map")]


def test_catalogue_says_why_for_every_kept_string_and_map_key():
    missing = [f.path for f in _kept_strings() if not f.why]
    assert not missing
    for f in FIELDS:
        if f.type == "map" and f.key_values is None:
            assert f.identifying, f"{f.path}: free keys must be dropped"
    for f in FIELDS:
        if f.cls == "version":
            assert "tests/data/versions/" in f.why, f.path


def test_every_allow_listed_constant_passes_the_detectors():
    strong = ("free_text", "looks_like_hostname")  # "Rocket.Chat", "Every 24 hours": constants, not data
    for f in _kept_strings():
        for v in (f.values or ()) + (f.key_values or ()):
            if isinstance(v, str):
                assert privacy.detect(v, skip=strong) is None, (f.path, v)
    for k in BY_PATH["userLanguages"].key_values:
        assert privacy.detect(k) is None, k


def test_session_names_come_from_the_gathered_lists():
    import json
    data = json.loads((Path(__file__).parents[1] / "schemas" / "data" / "user-agent-names.json").read_text())
    for path, key in [("uniqueDevicesOfYesterday.data[].name", "device_names"),
                      ("uniqueOSOfYesterday.data[].name", "os_names"),
                      ("uniqueDevicesOfYesterday.data[].type", "device_types")]:
        assert set(data[key]) <= set(BY_PATH[path].values), path
        assert BY_PATH[path].on_unknown == "other"
    assert {"ios", "android", "RC Mobile", "Rocket.Chat"} <= set(BY_PATH["uniqueOSOfYesterday.data[].name"].values) | \
        set(BY_PATH["uniqueDevicesOfYesterday.data[].name"].values)


# --- userLanguages keys fold -----------------------------------------------------------------------

def test_language_keys_outside_the_list_fold_into_other():
    doc = load_fixture("report-8.7.0.json")
    doc["userLanguages"] = {"en": 3, "Jane Doe": 2, "jane@acme.example": 5, "pt-BR": 4, "other": 1,
                            "0x7f.1": 1, "none": -2}
    got = {k: v for k, v in check_report(doc).categories["product_analytics"].items()
           if k.startswith("userLanguages.")}
    assert got == {"userLanguages.en": 3, "userLanguages.other": 9, "userLanguages.pt-BR": 4,
                   "userLanguages.none": -2}
    ReportModel.model_validate(doc)  # the pydantic model accepts it too


def test_folded_sum_is_clamped():
    doc = load_fixture("report-8.7.0.json")
    doc["userLanguages"] = {"a1": 2**53 - 1, "b2": 2**53 - 1}
    assert check_report(doc).categories["product_analytics"]["userLanguages.other"] == 2**53 - 1
    doc["userLanguages"] = {"a1": -(2**53 - 1), "b2": -5}
    assert fastpath.flatten(doc)[0]["product_analytics"]["userLanguages.other"] == -(2**53 - 1)

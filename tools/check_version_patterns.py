#!/usr/bin/env python3
"""Check the real version corpora (tests/data/versions/*.txt) and the real records' values
against the catalogue's `patterns` and against the tighter patterns proposed below, and show
which IPv4 / phone-number shapes each pattern lets through.

    python3 tools/check_version_patterns.py [--catalogue schemas/catalogue.json] [--root .]

Exit status 0 always: this is a report, not a test.
"""
from __future__ import annotations

import argparse
import glob
import json
import re
from pathlib import Path

# Rocket.Chat's own cut of a device (browser / app) version: SAUMonitor.ts
#   info.version = info.longVersion.match(/(\d+\.){0,2}\d+/)?.[0] || '';
RC_DEVICE_CUT = re.compile(r"(\d+\.){0,2}\d+")


def rc_device_version(long_version: str) -> str:
    m = RC_DEVICE_CUT.search(long_version)
    return m.group(0) if m else ""


# Shared rules: at most 3 numeric components (a dotted quad has 4; Rocket.Chat cuts device
# versions to 3), at most 9 digits in all (national phone numbers with area code have 9+),
# no "00"/"0x.." first component (international call prefix, zero-padded IPv4 octets), and a
# long last component only after a one-digit middle (Chrome 124.0.6367, Opera Mini 7.6.40234)
# so that 555.123.4567, 030.1234.5678, 12.34.5678 and 912.34.5678 do not fit.
DIGITS_LE9 = r"(?=(?:\D*\d){0,9}\D*$)"
UA_MAJOR = r"(?:0\d?|[1-9]\d{0,3})"  # 0..9999 (05 occurs; 2020.16.2 occurs)
OS_MAJOR = r"(?:0\d?|[1-9]\d{0,4})"  # Chromium OS build numbers: 14541.0.0
PROPOSED = {
    # server: 3 components of <= 2 digits, no leading zeros; pre-release number <= 4 digits
    # (apps-engine 1.13.0-beta.2857)
    "rc_version": r"^v?(?:0|[1-9]\d?)\.(?:0|[1-9]\d?)\.(?:0|[1-9]\d?)"
    r"(?:-(?:rc|beta|alpha|develop|canary|dev|next)(?:\.(?:0|[1-9]\d{0,3}))?)?$",
    "node_version": r"^v(?:0|[1-9]\d?)\.(?:0|[1-9]\d?)\.(?:0|[1-9]\d{0,2})$",
    "mongo_version": r"^(?:0|[1-9]\d?)\.(?:0|[1-9]\d?)\.(?:0|[1-9]\d?)(?:-rc(?:0|[1-9]\d?))?$",
    # device (browser / app) version after Rocket.Chat's cut
    "ua_version": r"^(?:" + DIGITS_LE9 + r"(?:"
    + UA_MAJOR + r"(?:\.\d{1,3})?"  # 125.0, 0.862, 24.101
    + r"|[1-9]\d?\.\d{5}"  # EdgeHTML 18.17763
    + r"|" + UA_MAJOR + r"\.\d{1,2}\.\d{1,3}"  # 17.1.2, 536.26.9, 2020.16.2
    + r"|" + UA_MAJOR + r"\.\d\.\d{4,6}"  # 124.0.6367, 7.6.40234
    + r"))?$",
    "os_version": r"^(?:" + DIGITS_LE9 + r"(?:"
    + OS_MAJOR + r"(?:[._]\d{1,2})?"  # 10, 8.1, 22.04
    + r"|" + OS_MAJOR + r"[._]\d{1,2}[._]\d{1,3}"  # 10.15.7, 17.4.1, 13310.93.0
    + r"|" + OS_MAJOR + r"[._]\d[._]\d{4,6}"
    + r")|XP|Vista|RT|NT|ME|CE|x86_64|x86|i386|i686|aarch64|arm64|amd64|armv6l|armv7l|armv8l)?$",
}

CORPORA = {  # file -> (pattern name, transform)
    "rocketchat.txt": ("rc_version", None),
    "apps-engine.txt": ("rc_version", None),
    "nodejs.txt": ("node_version", None),
    "mongodb.txt": ("mongo_version", None),
    "desktop.txt": ("ua_version", rc_device_version),
    "mobile.txt": ("ua_version", rc_device_version),
    "browsers.txt": ("ua_version", None),
    "os.txt": ("os_version", None),
}

RECORD_FIELDS = {  # dotted path in a record -> pattern name
    "version": "rc_version",
    "process.nodeVersion": "node_version",
    "mongoVersion": "mongo_version",
    "apps.engineVersion": "rc_version",
}
AGGREGATES = ("uniqueDevicesOfYesterday", "uniqueDevicesOfLastWeek", "uniqueDevicesOfLastMonth")
OS_AGGREGATES = ("uniqueOSOfYesterday", "uniqueOSOfLastWeek", "uniqueOSOfLastMonth")


def adversarial() -> dict[str, list[str]]:
    ip = (192, 168, 1, 20)
    n32 = (ip[0] << 24) | (ip[1] << 16) | (ip[2] << 8) | ip[3]
    return {
        "IPv4 dotted quad": ["192.168.1.20", "10.0.0.1", "8.8.8.8", "255.255.255.255", "0.0.0.0"],
        "IPv4 dotted quad, leading zeros": ["010.001.002.003", "192.168.001.020", "001.002.003.004"],
        "IPv4 dotted quad, octal": ["0300.0250.01.024"],
        "IPv4 inet_aton 3 parts (a.b.16bit)": [f"{ip[0]}.{ip[1]}.{(ip[2] << 8) | ip[3]}"],
        "IPv4 inet_aton 2 parts (a.24bit)": [f"{ip[0]}.{(ip[1] << 16) | (ip[2] << 8) | ip[3]}"],
        "IPv4 inet_aton 1 part (32bit)": [str(n32)],
        "IPv4 with v prefix": ["v192.168.1.20", "v10.0.0.1"],
        "IPv4 with separators _": ["192_168_1_20"],
        "phone US 3.3.4": ["555.123.4567", "212.555.0147"],
        "phone DE 00-prefix 4.2.7": ["0049.30.1234567"],
        "phone DE 4.2.3.4": ["0049.30.123.4567"],
        "phone DE national 3.4.4": ["030.1234.5678"],
        "phone NL/BE 4.3.3": ["0612.345.678"],
        "phone UK 5.3.3": ["07700.900.123"],
        "phone FR 2.2.2.2.2": ["06.12.34.56.78"],
        "phone DK/NO 2.2.2.2": ["12.34.56.78"],
        "phone 2.2.7 (no prefix)": ["49.30.1234567"],
        "phone 8 digits 2.2.4": ["12.34.5678"],
        "phone 9 digits 3.2.4": ["912.34.5678"],
    }


def load(path: Path) -> list[str]:
    return [l.rstrip("\n") for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def get(rec, dotted):
    for k in dotted.split("."):
        if not isinstance(rec, dict):
            return None
        rec = rec.get(k)
    return rec


def record_values(root: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {k: set() for k in PROPOSED}
    files = glob.glob(str(root / "tests/fixtures/*.json")) + glob.glob("/work/shared/fixtures/rocketchat/*.json")
    for f in files:
        if "istats-fields" in f:  # a field/type list, not a record
            continue
        try:
            rec = json.loads(Path(f).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(rec, dict):
            continue
        for path, pat in RECORD_FIELDS.items():
            v = get(rec, path)
            if isinstance(v, str):
                out[pat].add(v)
        for agg in AGGREGATES:
            for item in (get(rec, agg) or {}).get("data", []) if isinstance(get(rec, agg), dict) else []:
                if isinstance(item, dict) and isinstance(item.get("version"), str):
                    out["ua_version"].add(item["version"])
        for agg in OS_AGGREGATES:
            for item in (get(rec, agg) or {}).get("data", []) if isinstance(get(rec, agg), dict) else []:
                if isinstance(item, dict) and isinstance(item.get("version"), str):
                    out["os_version"].add(item["version"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalogue", default="schemas/catalogue.json")
    ap.add_argument("--root", default=".")
    a = ap.parse_args()
    root = Path(a.root)
    current = json.loads(Path(a.catalogue).read_text())["patterns"]
    sets = {"current": current, "proposed": PROPOSED}
    vdir = root / "tests" / "data" / "versions"

    print("== real versions refused")
    real_by_pattern: dict[str, set[str]] = {k: set() for k in PROPOSED}
    for fname, (pat, transform) in CORPORA.items():
        p = vdir / fname
        if not p.exists():
            continue
        vals = load(p)
        if transform:
            vals = sorted({transform(v) for v in vals})
        real_by_pattern[pat].update(vals)
        for label, pats in sets.items():
            bad = [v for v in vals if not re.fullmatch(pats[pat], v)]
            print(f"{label:8} {pat:13} {fname:15} {len(vals):4} values, {len(bad):3} refused: {bad}")
    for pat, vals in record_values(root).items():
        for label, pats in sets.items():
            bad = sorted(v for v in vals if not re.fullmatch(pats[pat], v))
            print(f"{label:8} {pat:13} {'fixtures':15} {len(vals):4} values, {len(bad):3} refused: {bad}")

    print("\n== identifier shapes accepted (should be empty for a safe pattern)")
    for label, pats in sets.items():
        for pat in ("ua_version", "os_version", "rc_version", "node_version", "mongo_version"):
            leaks = {k: [s for s in v if re.fullmatch(pats[pat], s)] for k, v in adversarial().items()}
            leaks = {k: v for k, v in leaks.items() if v}
            print(f"{label:8} {pat:13} {json.dumps(leaks)}")

    print("\n== real versions that are themselves IPv4- or phone-shaped")
    quad = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
    for pat, vals in real_by_pattern.items():
        q = [v for v in vals if (m := quad.match(v)) and all(int(x) <= 255 for x in m.groups())]
        ph = [v for v in vals if re.fullmatch(r"\d{3}\.\d{3}\.\d{4}", v)]
        long_ = [v for v in vals if len(re.findall(r"\d", v)) >= 10]
        print(f"{pat:13} dotted-quad<=255: {q}  3.3.4: {ph}  >=10 digits: {long_}")

    print("\n== proposed patterns")
    for k, v in PROPOSED.items():
        print(f'"{k}": {json.dumps(v)}')


if __name__ == "__main__":
    main()

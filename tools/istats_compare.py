"""Compare the extracted ``IStats`` typings with ``schemas/catalogue.json``.

Reads every ``tests/data/istats/<version>.json`` written by
``tools/istats_fields.py`` and prints, as Markdown:

- typed paths with no catalogue entry (first and last extracted version that
  types them),
- catalogue ``since``/``until`` values that the typings contradict,
- catalogue fields (not derived, ``until`` unset) that no extracted version types,

each with whether the real records ``tests/fixtures/report-6.8.0.json`` and
``report-8.7.0.json`` carry the path (``yes``/``no``; ``empty`` where a value
above it is ``[]`` or ``null`` in that record, so it says nothing).

Matching: paths are split into segments (``a.b[].{}`` -> ``a``, ``b``, ``[]``,
``{}``); a ``{}`` segment on either side matches any one segment, and a typed
``{}`` whose value type is ``unknown`` (``Record<string, unknown>``, e.g.
``services``, ``importer``) covers everything below it. Derived catalogue
paths (with ``#``) are skipped.

The typings only bound a change between two extracted versions (the registry
here has no 7.x at all), so a catalogue value inside that interval is not
reported. ``since`` is read as "first version that sends it"; ``until`` as
"first version that no longer sends it" (the catalogue does not define it;
see COMPARISON.md).

    uv run python tools/istats_compare.py > /tmp/comparison.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "istats"
CATALOGUE = REPO / "schemas" / "catalogue.json"
FIXTURES = REPO / "tests" / "fixtures"  # report-6.8.0.json, report-8.7.0.json: real records
_SEG = re.compile(r"\[\]|[^.\[\]]+")


def segments(path: str) -> tuple[str, ...]:
    return tuple(_SEG.findall(path))


def vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def minor(v: str) -> tuple[int, int]:
    k = vkey(v)
    return (k[0], k[1] if len(k) > 1 else 0)


def load_typings(data: Path = DATA) -> dict[str, dict]:
    docs = {p.stem: json.loads(p.read_text()) for p in data.glob("*.json")}
    return dict(sorted(docs.items(), key=lambda kv: vkey(kv[0])))


def _match(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == "{}" or y == "{}" for x, y in zip(a, b))


class Typed:
    """The paths of one version, for matching against catalogue paths."""

    def __init__(self, doc: dict):
        self.fields = doc["fields"]
        self.segs = [segments(p) for p in doc["paths"]]
        self.open = [
            segments(p)
            for p, f in self.fields.items()
            if p.endswith("{}") and f["type"] in ("unknown", "any")
        ]

    def covers(self, cat_path: str) -> str | None:
        """"typed", "open" (below a typed ``Record<string, unknown>``) or None."""
        s = segments(cat_path)
        if any(_match(s, t) for t in self.segs):
            return "typed"
        if any(len(s) > len(o) and _match(s[: len(o)], o) for o in self.open):
            return "open"
        return None


class Record:
    """A real record (``tests/fixtures/report-<version>.json``) as catalogue-style paths."""

    def __init__(self, doc: dict):
        self.segs: list[tuple[str, ...]] = []
        self.empty: list[tuple[str, ...]] = []  # [] or null in this record: no children to see
        self._walk(doc, ())

    def _walk(self, v, s):
        if s:
            self.segs.append(s)
        if v is None:
            self.empty.append(s)
        elif isinstance(v, dict):
            for k, x in v.items():
                self._walk(x, s + (k,))
        elif isinstance(v, list):
            if not v:
                self.empty.append(s)
            for x in v:
                self._walk(x, s + ("[]",))

    def has(self, cat_path: str) -> str:
        s = segments(cat_path)
        if any(_match(s, r) for r in self.segs):
            return "yes"
        if any(len(s) > len(e) and _match(s[: len(e)], e) for e in self.empty):
            return "empty"
        return "no"


def load_records(fixtures: Path = FIXTURES) -> dict[str, Record]:
    out = {}
    for p in sorted(fixtures.glob("report-*.json"), key=lambda p: vkey(p.stem.split("-", 1)[1])):
        out[p.stem.split("-", 1)[1]] = Record(json.loads(p.read_text()))
    return out


def compare(catalogue: dict, typings: dict[str, dict]) -> dict:
    fields = [f for f in catalogue["fields"] if "#" not in f["path"]]
    cat_segs = [segments(f["path"]) for f in fields]
    versions = list(typings)
    typed = {v: Typed(d) for v, d in typings.items()}

    missing = {}  # typed path -> {first, last, versions, type}
    for v, doc in typings.items():
        for p in doc["paths"]:
            s = segments(p)
            if any(_match(s, c) for c in cat_segs):
                continue
            m = missing.setdefault(p, {"first": v, "versions": [], "type": doc["fields"][p]["type"]})
            m["versions"].append(v)
            m["last"] = v

    disagreements, untyped = [], []
    for f in fields:
        cover = {v: typed[v].covers(f["path"]) for v in versions}
        if any(c == "open" for c in cover.values()):
            continue  # below services.{} / importer.{}: the typings say nothing
        present = [v for v in versions if cover[v]]
        if not present:
            if f["until"] is None:
                untyped.append(f)
            elif minor(f["until"]) > minor(versions[0]):
                disagreements.append((f, "until", f"never typed in {versions[0]}+; until {f['until']} implies it is"))
            continue
        first, last = present[0], present[-1]
        gap = [v for v in versions if vkey(first) < vkey(v) < vkey(last) and v not in present]
        since, until = f["since"], f["until"]
        # since: typed in `first`, not in the extracted version before it.
        before = versions[versions.index(first) - 1] if first != versions[0] else None
        if minor(since) > minor(first):
            disagreements.append((f, "since", f"typed already in {first}, catalogue since {since}"))
        elif before and minor(since) <= minor(before):
            disagreements.append((f, "since", f"not typed in {before}, first typed in {first}; catalogue since {since}"))
        # until (first version without): typed through `last`, absent afterwards.
        after = versions[versions.index(last) + 1] if last != versions[-1] else None
        if until is None:
            if after:
                disagreements.append((f, "until", f"typed through {last}, gone from {after}; catalogue until null"))
        elif minor(until) <= minor(last):
            disagreements.append((f, "until", f"still typed in {last}, catalogue until {until}"
                                  + (f" (gone from {after})" if after else "")))
        elif after and minor(until) > minor(after):
            disagreements.append((f, "until", f"gone from {after}, catalogue until {until}"))
        if gap:
            disagreements.append((f, "gap", f"typed in {first}..{last} but not in {', '.join(gap)}"))
    return {"versions": versions, "missing": missing, "disagreements": disagreements, "untyped": untyped}


def render(res: dict, typings: dict[str, dict], records: dict[str, Record] | None = None) -> str:
    records = records or {}
    rec_head = "".join(f" real {v} |" for v in records)
    rec_sep = " --- |" * len(records)

    def rec(path: str) -> str:
        return "".join(f" {r.has(path)} |" for r in records.values())

    out = ["## Extracted versions", "", "| version | paths |", "| --- | --- |"]
    out += [f"| {v} | {len(d['paths'])} |" for v, d in typings.items()]
    out += ["", "## Typed paths missing from the catalogue", "",
            "| path | first typed | last typed | type |" + rec_head, "| --- | --- | --- | --- |" + rec_sep]
    for p, m in sorted(res["missing"].items(), key=lambda kv: (vkey(kv[1]["first"]), kv[0])):
        out.append(f"| `{p}` | {m['first']} | {m['last']} | `{m['type'].replace('|', '&#124;')}` |" + rec(p))
    out += ["", "## Catalogue since/until the typings contradict", "",
            "| path | key | catalogue since/until | typings |" + rec_head, "| --- | --- | --- | --- |" + rec_sep]
    for f, key, why in res["disagreements"]:
        out.append(f"| `{f['path']}` | {key} | {f['since']} / {f['until']} | {why} |" + rec(f["path"]))
    out += ["", "## Current catalogue fields (until null) typed in no extracted version", "",
            "| path | since |" + rec_head, "| --- | --- |" + rec_sep]
    out += [f"| `{f['path']}` | {f['since']} |" + rec(f["path"]) for f in res["untyped"]]
    for rv, r in records.items():
        # the extracted version nearest to the record's, same minor preferred
        tv = min(typings, key=lambda v: (minor(v) != minor(rv), abs(vkey(v)[0] * 100 + vkey(v)[1] - minor(rv)[0] * 100 - minor(rv)[1])))
        gone = [p for p in typings[tv]["paths"] if r.has(p) == "no"]
        out += ["", f"## Typed in {tv} but absent from the real {rv} record ({len(gone)})", "",
                ", ".join(f"`{p}`" for p in gone) or "none"]
    return "\n".join(out) + "\n"


def main() -> int:
    typings = load_typings()
    if not typings:
        raise SystemExit(f"no typings in {DATA}: run tools/istats_fields.py first")
    res = compare(json.loads(CATALOGUE.read_text()), typings)
    sys.stdout.write(render(res, typings, load_records()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

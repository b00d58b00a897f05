"""Test helpers of the privacy-gate tests: fixtures, paths, walking records along the catalogue.

(Kept out of conftest.py so this module group merges without touching shared test files.)
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

from collector.gate.catalogue import BY_PATH, FIELDS

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    return [int(i) if i else k for k, i in _TOKEN.findall(path)]


def set_path(doc: Any, path: str, value: Any) -> None:
    """Set ``doc`` at ``a.b[1].c`` (creating the last key)."""
    toks = _tokens(path)
    cur = doc
    for t in toks[:-1]:
        cur = cur[t]
    cur[toks[-1]] = value


def del_path(doc: Any, path: str) -> None:
    toks = _tokens(path)
    cur = doc
    for t in toks[:-1]:
        cur = cur[t]
    del cur[toks[-1]]


def catalogue_walk(value: Any, path: str = ""):
    """Yield (catalogue path, concrete path, value) for every node of a record."""
    yield path, path, value
    yield from _walk(value, path, path)


def _walk(value: Any, cpath: str, real: str):
    f = BY_PATH.get(cpath) if cpath else None
    if isinstance(value, dict):
        if f is not None and f.type == "map":
            for k, v in value.items():
                cp, rp = cpath + ".{}", f"{real}.{k}"
                yield cp, rp, v
                yield from _walk(v, cp, rp)
        else:
            for k, v in value.items():
                cp = f"{cpath}.{k}" if cpath else k
                rp = f"{real}.{k}" if real else k
                yield cp, rp, v
                yield from _walk(v, cp, rp)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            cp, rp = cpath + "[]", f"{real}[{i}]"
            yield cp, rp, v
            yield from _walk(v, cp, rp)


def scalars(value: Any):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from scalars(v)
    elif isinstance(value, list):
        for v in value:
            yield from scalars(v)
    else:
        yield value


def identifying_values(doc: dict) -> list[Any]:
    """All scalars (and map keys) found under identifying catalogue paths of ``doc``."""
    out = []
    for cpath, _real, value in catalogue_walk(doc):
        f = BY_PATH.get(cpath)
        if f is not None and f.identifying:
            out.extend(scalars(value))
    return out


SAMPLES = {
    "rc_version": "6.8.0", "node_version": "v22.22.3", "mongo_version": "5.0.15",
    "ua_version": "124.0.0", "os_version": "10.15.7",
}


def sample(path: str) -> Any:
    """A valid value for a catalogue path (containers filled recursively)."""
    f = BY_PATH[path]
    children = [g for g in FIELDS if g.parent == path and not g.derived]
    if f.type == "object":
        return {g.path.rsplit(".", 1)[-1]: sample(g.path) for g in children}
    if f.type == "list":
        return [sample(path + "[]")]
    if f.type == "map":
        return {("pt-BR" if f.key_values is not None else "Any Provider Name"): sample(path + ".{}")}
    if f.identifying:
        return {"integer": 7, "number": 7.5, "boolean": True}.get(f.type, "identifying-sample")
    if f.values:
        return next((v for v in f.values if v not in ("", None)), f.values[0])
    if f.pattern_name:
        return SAMPLES[f.pattern_name]
    return {"integer": 3, "number": 2.5, "boolean": True, "datetime": "2024-07-02T11:12:00.221Z"}[f.type]


def maximal_record() -> dict:
    """A record holding every catalogue path once."""
    return {f.path: sample(f.path) for f in FIELDS if not f.derived and "." not in f.path
            and "[" not in f.path and "#" not in f.path}


FIXTURES = Path(__file__).parent / "fixtures"
REAL = ("report-6.8.0.json", "report-8.7.0.json")
PER_VERSION = tuple(f"rc-{major}.x.json" for major in range(9))
_CACHE: dict[str, dict] = {}


def load(name: str) -> dict:
    """A fresh copy of a record from tests/fixtures (real ones copied from /work/shared, per-version ones hand-made)."""
    if name not in _CACHE:
        with open(FIXTURES / name, encoding="utf-8") as fh:
            _CACHE[name] = json.load(fh)
    return copy.deepcopy(_CACHE[name])

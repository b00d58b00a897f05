"""The field catalogue: the single source of truth of the privacy gate.

``schemas/catalogue.json`` lists every field a Rocket.Chat statistics record
(``IStats``, ``packages/core-typings/src/IStats.ts``; generator
``apps/meteor/app/statistics/server/lib/statistics.ts``) may carry, from 0.x to
8.x, one field object per line. This module loads it once, checks that it is
consistent, and exposes it as immutable :class:`Field` objects.

Adding a field Rocket.Chat introduces is a one-line change in the JSON file;
then run ``uv run python -m collector.gate.catalogue fmt`` (re-formats the file
canonically) and ``uv run python -m collector.gate.model > schemas/report.schema.json``.

Every kept string field (and every map whose keys are kept) carries a ``why``:
why its rule cannot match a name, e-mail, host name, IP address, phone number,
UUID or database id. A map's ``keys`` is ``any`` (identifying maps only: their
keys are dropped) or the name of a value set (keys outside it fold into
``other``).

Path syntax: dotted names; ``[]`` marks the items of a list
(``os.cpus[].times.user``), ``{}`` the values of a map with free keys
(``userLanguages.{}``), ``#`` a count the collector derives itself
(``services.oauth.custom#providers``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "schemas" / "catalogue.json"

CATEGORIES = ("billing", "compliance", "operational", "product_analytics")
CONTRACT_CATEGORIES = ("billing", "compliance")
OPTIONAL_CATEGORIES = ("operational", "product_analytics")

TYPES = ("integer", "number", "boolean", "string", "datetime", "scalar", "object", "list", "map")
CONTAINER_TYPES = ("object", "list", "map")
CLASSES = (
    "count", "gauge", "flag", "enumeration", "version", "timestamp", "date_part",
    "setting", "identifying", "derived", "structure",
)
DERIVED_OPS = ("len", "sum", "count_true", "count_eq", "sub")
KEY_RULES = ("any",)  # or the name of a value set: keys outside it fold into "other"

_TOP_KEYS = ("catalogue_version", "categories", "classes", "patterns", "value_sets", "fields")
_FIELD_KEYS = (
    "path", "type", "nullable", "class", "category", "required", "or_false", "signed", "empty_ok",
    "values", "on_unknown", "pattern", "keys", "max_length", "store_as",
    "from", "op", "field", "fields", "equals", "since", "until", "meaning", "why",
)
_REQUIRED_FIELD_KEYS = ("path", "type", "nullable", "class", "category", "since", "until", "meaning")
_VERSION_RE = re.compile(r"^\d+\.\d+$")


class CatalogueError(ValueError):
    """The catalogue file is inconsistent (message names the offending path)."""


@dataclass(frozen=True)
class Field:
    """One catalogue entry (see the module docstring for the path syntax).

    ``nullable``: the value may be ``null``. True for every optional key (a
    resent record carries ``null`` where a fresh one omits the key), and for
    list items and map values the catalogue marks ``nullable``.
    """

    path: str
    type: str
    nullable: bool
    cls: str
    category: str
    since: str
    until: str | None
    meaning: str
    why: str | None = None  # why the kept strings of this field (values or keys) cannot carry a name
    required: bool = False
    or_false: bool = False
    signed: bool = False
    empty_ok: bool = False
    values: tuple[Any, ...] | None = None
    on_unknown: str | None = None
    pattern: str | None = None  # regular expression (resolved from the catalogue's named patterns)
    pattern_name: str | None = None
    keys: str | None = None
    key_values: tuple[str, ...] | None = None  # allow-listed keys (keys names a value set)
    max_length: int | None = None
    store_as: str | None = None
    source: str | None = None  # "from" of a derived field
    op: str | None = None
    field: str | None = None
    fields: tuple[str, ...] | None = None
    equals: Any = None

    @property
    def identifying(self) -> bool:
        return self.cls == "identifying"

    @property
    def derived(self) -> bool:
        return self.cls == "derived"

    @property
    def parent(self) -> str:
        return parent_path(self.path)


@dataclass(frozen=True)
class Catalogue:
    version: str
    categories: dict[str, str]
    patterns: dict[str, str]
    fields: tuple[Field, ...]
    by_path: dict[str, Field]


def parent_path(path: str) -> str:
    """``os.cpus[].model`` -> ``os.cpus[]`` -> ``os.cpus`` -> ``os`` -> ``""``."""
    if path.endswith("[]"):
        return path[:-2]
    if path.endswith(".{}"):
        return path[:-3]
    i = path.rfind(".")
    return path[:i] if i >= 0 else ""


def _fail(path: str, why: str) -> None:
    raise CatalogueError(f"catalogue field {path!r}: {why}")


def _parse(doc: dict[str, Any]) -> Catalogue:
    if not isinstance(doc, dict) or set(doc) != set(_TOP_KEYS):
        raise CatalogueError(f"catalogue must have exactly the keys {_TOP_KEYS}")
    if set(doc["categories"]) != set(CATEGORIES):
        raise CatalogueError(f"categories must be exactly {CATEGORIES}")
    if set(doc["classes"]) != set(CLASSES):
        raise CatalogueError(f"classes must be exactly {CLASSES}")
    patterns = {name: re.compile(rx) for name, rx in doc["patterns"].items()}
    value_sets: dict[str, list[Any]] = doc["value_sets"]
    fields: list[Field] = []
    by_path: dict[str, Field] = {}
    for raw in doc["fields"]:
        path = raw.get("path", "?")
        unknown = set(raw) - set(_FIELD_KEYS)
        if unknown:
            _fail(path, f"unknown keys {sorted(unknown)}")
        missing = [k for k in _REQUIRED_FIELD_KEYS if k not in raw]
        if missing:
            _fail(path, f"missing keys {missing}")
        if path in by_path:
            _fail(path, "duplicate path")
        typ, cls, cat = raw["type"], raw["class"], raw["category"]
        if typ not in TYPES:
            _fail(path, f"type {typ!r} not in {TYPES}")
        if cls not in CLASSES:
            _fail(path, f"class {cls!r} not in {CLASSES}")
        if cat not in CATEGORIES:
            _fail(path, f"category {cat!r} not in {CATEGORIES}")
        for key in ("since", "until"):
            if raw[key] is not None and not _VERSION_RE.match(raw[key]):
                _fail(path, f"{key} must look like '6.5'")
        values = raw.get("values")
        if isinstance(values, str):
            if values not in value_sets:
                _fail(path, f"unknown value set {values!r}")
            values = value_sets[values]
        if cls == "enumeration" and not values:
            _fail(path, "an enumeration needs values")
        pattern_name = raw.get("pattern")
        if pattern_name is not None and pattern_name not in patterns:
            _fail(path, f"unknown pattern {pattern_name!r}")
        if cls == "version" and pattern_name is None:
            _fail(path, "a version needs a pattern")
        if typ == "map" and raw.get("keys") not in KEY_RULES and raw.get("keys") not in value_sets:
            _fail(path, f"a map needs keys {KEY_RULES} or the name of a value set")
        if raw.get("keys") not in (None, *KEY_RULES) and raw["keys"] not in value_sets:
            _fail(path, f"map keys rule {raw['keys']!r} must name a value set")
        if typ == "map" and raw.get("keys") == "any" and cls != "identifying":
            _fail(path, "a map with free keys must be identifying (its keys are never kept)")
        if "why" in raw and (not isinstance(raw["why"], str) or not raw["why"].strip()):
            _fail(path, "why must be a sentence")
        if cls == "structure" and typ not in CONTAINER_TYPES:
            _fail(path, "class structure is for objects, lists and maps")
        if cls == "derived":
            if raw.get("op") not in DERIVED_OPS:
                _fail(path, f"derived op must be one of {DERIVED_OPS}")
            if raw.get("from") not in by_path:
                _fail(path, "derived 'from' must name an earlier catalogue path")
            if "#" not in path:
                _fail(path, "derived paths carry a '#'")
        elif "#" in path:
            _fail(path, "only derived paths carry a '#'")
        else:
            parent = parent_path(path)
            if parent and parent not in by_path:
                _fail(path, f"parent {parent!r} must come first")
            if parent:
                ptype = by_path[parent].type
                if path.endswith("[]") != (ptype == "list") or path.endswith(".{}") != (ptype == "map"):
                    _fail(path, f"does not fit its parent of type {ptype}")
                if ptype not in CONTAINER_TYPES:
                    _fail(path, "parent is not an object, list or map")
        # A resent record is read back from MongoDB and carries null where a fresh one
        # omits the key (shared/ROCKETCHAT.md): every optional key accepts null. List
        # items and map values are not keys: they keep the catalogue's nullable.
        item = path.endswith("[]") or path.endswith(".{}")
        nullable = bool(raw["nullable"]) or not (raw.get("required") or item)
        f = Field(
            path=path, type=typ, nullable=nullable, cls=cls, category=cat,
            since=raw["since"], until=raw["until"], meaning=raw["meaning"],
            required=bool(raw.get("required", False)), or_false=bool(raw.get("or_false", False)),
            signed=bool(raw.get("signed", False)), empty_ok=bool(raw.get("empty_ok", False)),
            values=tuple(values) if values is not None else None, on_unknown=raw.get("on_unknown"),
            pattern=patterns[pattern_name].pattern if pattern_name else None, pattern_name=pattern_name,
            keys=raw.get("keys"), why=raw.get("why"),
            key_values=tuple(value_sets[raw["keys"]]) if raw.get("keys") in value_sets else None,
            max_length=raw.get("max_length"), store_as=raw.get("store_as"),
            source=raw.get("from"), op=raw.get("op"), field=raw.get("field"),
            fields=tuple(raw["fields"]) if raw.get("fields") else None, equals=raw.get("equals"),
        )
        fields.append(f)
        by_path[path] = f
    for f in fields:  # a container needs at least one child, a list or map exactly its item entry
        if f.type in ("list", "map"):
            item = f.path + ("[]" if f.type == "list" else ".{}")
            if item not in by_path:
                _fail(f.path, f"needs an item entry {item!r}")
    return Catalogue(version=str(doc["catalogue_version"]), categories=dict(doc["categories"]),
                     patterns={k: v.pattern for k, v in patterns.items()}, fields=tuple(fields), by_path=by_path)


@lru_cache(maxsize=4)
def load_catalogue(path: Path | str = CATALOGUE_PATH) -> Catalogue:
    """Load and check ``schemas/catalogue.json`` (cached).

    Raises :class:`CatalogueError` when the file is inconsistent (unknown type,
    class or category, missing parent, unknown value set or pattern, ...).
    """
    with open(path, encoding="utf-8") as fh:
        return _parse(json.load(fh))


def format_catalogue(doc: dict[str, Any]) -> str:
    """Canonical text of a catalogue document: one field object per line."""
    def one(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False)

    out = ["{", f'  "catalogue_version": {one(doc["catalogue_version"])},']
    for section in ("categories", "classes", "patterns", "value_sets"):
        items = list(doc[section].items())
        out.append(f'  "{section}": {{')
        for i, (k, v) in enumerate(items):
            out.append(f"    {one(k)}: {one(v)}{',' if i < len(items) - 1 else ''}")
        out.append("  },")
    out.append('  "fields": [')
    rows = doc["fields"]
    for i, raw in enumerate(rows):
        ordered = {k: raw[k] for k in _FIELD_KEYS if k in raw}
        ordered.update({k: v for k, v in raw.items() if k not in ordered})
        out.append(f"    {one(ordered)}{',' if i < len(rows) - 1 else ''}")
    out.append("  ]")
    out.append("}")
    return "\n".join(out) + "\n"


_CAT = load_catalogue()
CATALOGUE_VERSION: str = _CAT.version
FIELDS: tuple[Field, ...] = _CAT.fields
BY_PATH: dict[str, Field] = _CAT.by_path
#: Every catalogue path (derived ones included), in the syntax of the module docstring.
CATALOGUE_PATHS: frozenset[str] = frozenset(BY_PATH)
PATTERNS: dict[str, str] = _CAT.patterns


def main(argv: list[str]) -> int:
    """``python -m collector.gate.catalogue fmt|check``: rewrite / verify the canonical layout."""
    text = CATALOGUE_PATH.read_text(encoding="utf-8")
    canonical = format_catalogue(json.loads(text))
    if argv[:1] == ["fmt"]:
        CATALOGUE_PATH.write_text(canonical, encoding="utf-8")
        return 0
    if argv[:1] == ["check"]:
        if text != canonical:
            print("schemas/catalogue.json is not canonically formatted: run `python -m collector.gate.catalogue fmt`")
            return 1
        print(f"catalogue {CATALOGUE_VERSION}: {len(FIELDS)} fields, OK")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

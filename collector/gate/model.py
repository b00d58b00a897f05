"""Strict pydantic v2 model of a Rocket.Chat statistics record, built from the catalogue.

``check_report(doc)`` is the privacy gate: it validates a decoded JSON record
(``IStats``, ``packages/core-typings/src/IStats.ts``, as POSTed by
``apps/meteor/app/statistics/server/functions/sendUsageReport.ts``) against
``schemas/catalogue.json``, drops identifying fields, adds derived counts and
returns the kept values flat, per category.

Strictness: a key outside the catalogue is dropped unseen (its path and JSON type
listed on the result) or, with ``unknown="refuse"``, refused; no string-to-number coercion; booleans
are not numbers and numbers are not booleans; kept strings must pass the rules
of :mod:`collector.gate.rules`. Violations name a path and a reason code, never a
value (map keys appear as ``{}``).

Two implementations of one rule set, both built from the same catalogue tree
(:mod:`collector.gate.fastpath`): the fast path checks and flattens an accepted
record in one pass; the pydantic model here is the source of the published JSON
Schema and of the violations of a refused record (``tests/test_fastpath.py``
checks that they accept the same records).

Regenerate the checked-in JSON Schema after changing the catalogue::

    uv run python -m collector.gate.model > schemas/report.schema.json
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic import (
    Field as PydField,
)
from pydantic_core import PydanticCustomError

from . import fastpath
from . import rules as privacy
from .catalogue import CATALOGUE_VERSION, FIELDS, Field
from .fastpath import (
    ANY_KEY_MAX,
    IDENTIFYING_STRING_MAX,
    KEPT_STRING_MAX,
    MAX_LIST_ITEMS,
    MAX_MAP_KEYS,
    MAX_SAFE_INTEGER,
    TIMESTAMP_MAX,
)
from .fastpath import (
    Node as _Node,
)

__all__ = [
    "CheckedReport",
    "SchemaViolation",
    "Violation",
    "check_report",
    "json_schema",
    "MAX_VIOLATIONS",
]

MAX_VIOLATIONS = 100
#: Every field name of the catalogue (path segments): the only unknown keys a
#: violation path may show.
_CATALOGUE_NAMES = frozenset(
    seg.split("#")[0].removesuffix("[]") for f in FIELDS for seg in f.path.split(".")
) - {"{}", ""}

MESSAGES = {
    "expected_integer": "The value must be a JSON integer.",
    "expected_number": "The value must be a JSON number.",
    "expected_boolean": "The value must be true or false.",
    "expected_string": "The value must be a JSON string.",
    "expected_list": "The value must be a JSON array.",
    "not_an_object": "The value must be a JSON object.",
    "unknown_field": "This field is not in the statistics catalogue.",
    "missing_field": "This required field is missing.",
    "empty_value": "This required field is empty or blank.",
    "negative_count": "This count must not be negative.",
    "not_in_enumeration": "The value is not one of the values allowed for this field.",
    "looks_like_email": "The value looks like an e-mail address, which this field must not carry.",
    "looks_like_url": "The value looks like a URL, which this field must not carry.",
    "looks_like_ip": "The value looks like an IP address, which this field must not carry.",
    "looks_like_hostname": "The value looks like a host name, which this field must not carry.",
    "looks_like_identifier": "The value looks like an identifier or token, which this field must not carry.",
    "looks_like_phone": "The value looks like a phone number, which this field must not carry.",
    "free_text": "The value looks like free text, which this field must not carry.",
    "bad_version": "The value is not a version number in the expected form.",
    "bad_timestamp": "The value is not a timestamp in a form Rocket.Chat sends.",
    "too_long": "The value is longer than this field allows.",
    "number_too_large": "The number is beyond 2^53 - 1, more than a Rocket.Chat server can count exactly.",
    "invalid_value": "The value is not valid for this field.",
}

_PYDANTIC_REASONS = {
    "int_type": "expected_integer", "int_parsing": "expected_integer", "int_from_float": "expected_integer",
    "float_type": "expected_number", "float_parsing": "expected_number", "finite_number": "expected_number",
    "bool_type": "expected_boolean", "bool_parsing": "expected_boolean",
    "string_type": "expected_string",
    "list_type": "expected_list",
    "model_type": "not_an_object", "model_attributes_type": "not_an_object", "dict_type": "not_an_object",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "greater_than_equal": "negative_count",
    "less_than_equal": "number_too_large",
    "string_too_long": "too_long", "too_long": "too_long",
}


@dataclass(frozen=True)
class Violation:
    """One refused part of a record: where and why, never the value."""

    path: str      # dotted path with list indexes, e.g. "os.cpus[1].model"; "$" is the record itself
    reason: str    # machine-readable code (keys of MESSAGES)
    message: str   # one human sentence without the offending value


class SchemaViolation(Exception):
    """The record was refused; ``violations`` lists them all (capped at MAX_VIOLATIONS)."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        shown = ", ".join(f"{v.path}: {v.reason}" for v in violations[:5])
        more = f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"{len(violations)} schema violation(s): {shown}{more}")


@dataclass(frozen=True)
class CheckedReport:
    """A record that passed the gate, reduced to non-identifying values.

    ``categories`` maps each of ``billing``, ``compliance``, ``operational`` and
    ``product_analytics`` to a flat ``{key: value}`` dict:

    * scalar fields under their dotted catalogue path (``activeUsers``,
      ``omnichannelContactsBySource.contactsCount``, ``apps.totalPrivateApps``);
      timestamps as ISO 8601 UTC strings (``""`` becomes ``None``);
    * lists of scalars as lists under the list's path (``os.loadavg``);
    * lists of objects column-wise: one list per kept item field under the
      item path (``os.cpus[].times.user`` -> ``[404110, 416850]``), nested lists
      giving lists of lists; identifying item fields have no column;
    * ``userLanguages`` per Rocket.Chat language code (``userLanguages.pt-BR``), keys
      outside that list summed under ``userLanguages.other``;
    * derived counts under their ``#`` path (``services.oauth.custom#providers``);
    * ``totlalLivechat`` (0.x spelling) under ``totalLivechat``.

    Every category key is present (possibly with an empty dict). ``dropped``: the
    identifying catalogue paths found (dropped). ``unknown_fields``: the keys outside
    the catalogue, dropped unread, as ``((path, (JSON type, ...)), ...)`` sorted by
    path; a path ends at the outermost unknown key (``os.cpus[].vendor``; a key that
    does not look like a code identifier as ``{}``); types are JSON Schema names
    (``object``, ``array``, ``string``, ``integer``, ``number``, ``boolean``, ``null``).
    """

    record_id: str
    created_at: datetime
    version: str | None
    categories: dict[str, dict[str, object]]
    dropped: tuple[str, ...]
    unknown_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()


# ---------------------------------------------------------------------------------
# Model construction
# ---------------------------------------------------------------------------------

_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)


def _custom_error(reason: str) -> PydanticCustomError:
    return PydanticCustomError(reason, MESSAGES.get(reason, MESSAGES["invalid_value"]))


def _rule(fn):
    """Wrap a privacy rule so its RuleViolation becomes a pydantic error carrying the reason code."""
    def run(value):
        try:
            return fn(value)
        except privacy.RuleViolation as exc:
            raise _custom_error(exc.reason) from None
    return run


def _model_name(path: str) -> str:
    name = re.sub(r"[^0-9A-Za-z]+", "_", path.replace("[]", "_item").replace("{}", "_value")).strip("_")
    return "Report" + ("_" + name if name else "")


def _scalar_annotation(f: Field) -> Any:
    extra: dict[str, Any] = {"description": f.meaning}
    if f.identifying:
        base = {"integer": int, "number": float, "boolean": bool}.get(f.type)
        if base is None:  # string, datetime: a loose check only, the value is dropped
            return Annotated[str, PydField(max_length=IDENTIFYING_STRING_MAX, json_schema_extra=extra)]
        return Annotated[base, PydField(json_schema_extra=extra)]
    if f.type == "integer":
        if f.or_false:
            def int_or_false(v: Any, _signed=f.signed) -> Any:
                if v is False:
                    return v
                if type(v) is not int:
                    raise _custom_error("expected_integer")
                if v < 0 and not _signed:
                    raise _custom_error("negative_count")
                if abs(v) > MAX_SAFE_INTEGER:
                    raise _custom_error("number_too_large")
                return v
            schema = {"anyOf": [{"type": "integer", "minimum": 0}, {"const": False}], **extra}
            return Annotated[Any, PlainValidator(int_or_false), WithJsonSchema(schema)]
        if f.values is not None:
            allowed = privacy.typed_values(f.values)
            return Annotated[int, AfterValidator(_rule(lambda v: privacy.check_enumeration(v, allowed))),
                             PydField(json_schema_extra={"enum": list(f.values), **extra})]
        return Annotated[int, PydField(ge=-MAX_SAFE_INTEGER if f.signed else 0, le=MAX_SAFE_INTEGER,
                                       json_schema_extra=extra)]
    if f.type == "number":
        return Annotated[float, PydField(ge=-MAX_SAFE_INTEGER if f.signed else 0, le=MAX_SAFE_INTEGER,
                                         json_schema_extra=extra)]
    if f.type == "boolean":
        return Annotated[bool, PydField(json_schema_extra=extra)]
    if f.type == "datetime":
        def ts(v: str, _empty=f.empty_ok) -> str | None:
            dt = privacy.parse_timestamp(v, empty_ok=_empty)
            return None if dt is None else dt.isoformat(timespec="milliseconds")
        extra["x-formats"] = ["date-time (ISO 8601)", "JavaScript Date.toString()"] + (["empty"] if f.empty_ok else [])
        return Annotated[str, PydField(max_length=TIMESTAMP_MAX, json_schema_extra=extra), AfterValidator(_rule(ts))]
    if f.type in ("string", "scalar") and f.values is not None:
        allowed = privacy.typed_values(f.values)
        on_unknown = f.on_unknown

        def enum(v: Any, _allowed=allowed, _other=on_unknown) -> Any:
            return privacy.check_enumeration(v, _allowed, _other)
        extra["enum"] = list(f.values)
        if on_unknown:
            extra["x-on-unknown"] = on_unknown
        if f.type == "scalar":
            def scalar_enum(v: Any, _enum=_rule(enum)) -> Any:
                if isinstance(v, str) and len(v) > KEPT_STRING_MAX:
                    raise _custom_error("too_long")
                if not isinstance(v, (str, bool)):
                    raise _custom_error("not_in_enumeration")
                return _enum(v)
            return Annotated[Any, PlainValidator(scalar_enum), WithJsonSchema({"enum": list(f.values), **extra})]
        return Annotated[str, PydField(max_length=f.max_length or KEPT_STRING_MAX, json_schema_extra=extra),
                         AfterValidator(_rule(enum))]
    if f.type == "string" and f.pattern is not None:
        rx = re.compile(f.pattern)
        extra["pattern"] = f.pattern
        if f.on_unknown:
            extra["x-on-unknown"] = f.on_unknown
        return Annotated[str, PydField(max_length=f.max_length or KEPT_STRING_MAX, json_schema_extra=extra),
                         AfterValidator(_rule(lambda v, _rx=rx, _o=f.on_unknown: privacy.check_version(v, _rx, _o)))]
    raise ValueError(f"catalogue: no rule to keep string field {f.path!r} (give it values or a pattern)")


def _annotation(node: _Node) -> Any:
    f = node.field
    if node.kind == "object":
        fields: dict[str, Any] = {}
        for i, (key, child) in enumerate(node.children.items()):
            ann = _annotation(child)
            required = child.field.required
            fields[f"f{i}"] = (ann, PydField(... if required else None, alias=key, title=key))
        ann = create_model(_model_name(f.path), __config__=_CONFIG, **fields)
    elif node.kind in ("list", "map"):
        ann = _container(node, bounded=True)
    else:
        ann = _scalar_annotation(f)
    return Optional[ann] if f.nullable else ann


def _container(node: _Node, *, bounded: bool) -> Any:
    """The annotation of a list or map node (``bounded``: with its item/key cap)."""
    assert node.item is not None
    if node.kind == "list":
        ann: Any = list[_annotation(node.item)]
        return Annotated[ann, PydField(max_length=MAX_LIST_ITEMS)] if bounded else ann
    if node.field.key_values is not None:  # any key: those outside the value set fold into "other"
        key_ann = Annotated[str, WithJsonSchema({"type": "string", "x-keys": node.field.keys,
                                                 "x-on-unknown": privacy.FOLDED_KEY})]
    else:
        key_ann = Annotated[str, PydField(max_length=ANY_KEY_MAX)]
    ann = dict[key_ann, _annotation(node.item)]
    return Annotated[ann, PydField(max_length=MAX_MAP_KEYS)] if bounded else ann


ReportModel: type[BaseModel] = _annotation(fastpath.ROOT)
_ROOT_ADAPTER = TypeAdapter(ReportModel)


# ---------------------------------------------------------------------------------
# Violations
# ---------------------------------------------------------------------------------

def _safe_key(key: Any) -> str:
    """Show an unknown field's name only when that name is a field name somewhere in
    the catalogue (a Rocket.Chat name in the wrong place); any other key could be
    a value (a person's or a room's name), so it appears as ``{}``."""
    if isinstance(key, str) and key in _CATALOGUE_NAMES:
        return key
    return "{}"


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    node: _Node | None = fastpath.ROOT
    out = ""
    i = 0
    while i < len(loc):
        el = loc[i]
        if node is not None and node.kind == "list" and isinstance(el, int):
            out += f"[{el}]"
            node = node.item
        elif node is not None and node.kind == "map":
            out += ".{}" if out else "{}"
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                i += 1
            node = node.item
        elif isinstance(el, int):
            out += f"[{el}]"
            node = None
        else:
            child = node.children.get(el) if node is not None and node.kind == "object" else None
            name = el if child is not None else _safe_key(el)
            out += f".{name}" if out else name
            node = child
        i += 1
    return out or "$"


#: When naming violations, lists and maps are validated this many items at a time.
NAMING_CHUNK = 32
_CHUNK_ADAPTERS: dict[int, TypeAdapter] = {}


def _chunk_adapter(node: _Node) -> TypeAdapter:
    """A validator of a slice of ``node``'s items (a list or map node), made once."""
    adapter = _CHUNK_ADAPTERS.get(id(node))
    if adapter is None:
        adapter = _CHUNK_ADAPTERS[id(node)] = TypeAdapter(_container(node, bounded=False))
    return adapter


def _cut(value: Any, node: _Node | None, loc: tuple, cuts: list, errors: list) -> Any:
    """A copy of ``value`` whose lists and maps (at any depth, where the catalogue
    has them) keep only their first NAMING_CHUNK items; each cut container is
    appended to ``cuts`` as ``(loc, node, full value)``, and one over its cap
    gets its ``too_long`` error in ``errors`` at once and is emptied (its items are not read)."""
    if node is None:
        return value
    if node.kind == "object" and isinstance(value, dict):
        out = None
        for key, child in value.items():
            sub = node.children.get(key)
            if sub is not None and sub.kind != "scalar":
                new = _cut(child, sub, loc + (key,), cuts, errors)
                if new is not child:
                    if out is None:
                        out = dict(value)
                    out[key] = new
        return value if out is None else out
    if node.kind == "list" and isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            errors.append({"type": "too_long", "loc": loc})
            return []
        if len(value) > NAMING_CHUNK:
            cuts.append((loc, node, value))
        head = value[:NAMING_CHUNK]
        return [_cut(v, node.item, loc + (i,), cuts, errors) for i, v in enumerate(head)]
    if node.kind == "map" and isinstance(value, dict):
        if len(value) > MAX_MAP_KEYS:
            errors.append({"type": "too_long", "loc": loc})
            return {}
        if len(value) > NAMING_CHUNK:
            cuts.append((loc, node, value))
        head = dict(list(value.items())[:NAMING_CHUNK])
        return {k: _cut(v, node.item, loc + (k,), cuts, errors) for k, v in head.items()}
    return value


def _passes_fast(node: _Node, value: Any) -> bool:
    """Whether the fast path accepts ``value`` as ``node``'s container (no error to name;
    a key outside the catalogue is one: in drop mode the record was pruned first)."""
    dropped: set = set()
    try:
        node.validate(value, dropped)
    except (fastpath.Refused, privacy.RuleViolation):
        return False
    return not fastpath.unknown_fields(dropped)


def prune(value: Any, node: _Node = fastpath.ROOT) -> Any:
    """A copy of ``value`` (of catalogue ``node``) without its keys outside the catalogue,
    at any depth: what the fast path checks in drop mode. Containers of the wrong type
    or over their cap are left as they are (they are refused either way)."""
    if node.kind == "object" and type(value) is dict:
        return {k: (v if c.kind == "scalar" else prune(v, c))
                for k, v in value.items() if (c := node.children.get(k)) is not None}
    item = node.item
    if item is None or item.kind == "scalar":
        return value
    if node.kind == "list" and type(value) is list and len(value) <= MAX_LIST_ITEMS:
        return [prune(v, item) for v in value]
    if node.kind == "map" and type(value) is dict and len(value) <= MAX_MAP_KEYS:
        return {k: prune(v, item) for k, v in value.items()}
    return value


def _errors(value: Any, node: _Node, adapter: TypeAdapter, loc: tuple, limit: int) -> list[dict]:
    """Up to about ``limit`` pydantic errors (``loc`` from the record's root) of ``value``
    (of catalogue ``node``, validated by ``adapter``), with bounded work: first the
    head of every list and map (NAMING_CHUNK items each, at every depth); only while
    fewer than ``limit`` are found, the tails, a chunk at a time.
    So a record carrying thousands of wrong items costs about what its first
    items cost, not thousands of errors (issue 11: a refusal must not stall the
    event loop longer than an acceptance of the same size)."""
    cuts: list = []
    found: list[dict] = []
    skeleton = _cut(value, node, (), cuts, found)
    try:
        adapter.validate_python(skeleton)
    except ValidationError as exc:
        found += exc.errors(include_url=False, include_context=True, include_input=False)
    found = [{**e, "loc": loc + tuple(e["loc"])} for e in found]
    for cut_loc, cnode, full in cuts:
        if len(found) >= limit:
            break
        items = list(full.items()) if isinstance(full, dict) else full
        for start in range(NAMING_CHUNK, len(items), NAMING_CHUNK):
            part = items[start:start + NAMING_CHUNK]
            if _passes_fast(cnode, dict(part) if isinstance(full, dict) else part):
                continue  # the fast path accepts this chunk: nothing to name in it
            if isinstance(full, dict):
                chunk_errors = _errors(dict(part), cnode, _chunk_adapter(cnode), loc + cut_loc, limit)
            else:
                chunk_errors = [
                    {**e, "loc": e["loc"][:len(loc + cut_loc)] + (e["loc"][len(loc + cut_loc)] + start,)
                     + e["loc"][len(loc + cut_loc) + 1:]}
                    for e in _errors(part, cnode, _chunk_adapter(cnode), loc + cut_loc, limit)
                ]
            found += chunk_errors
            if len(found) >= limit:
                break
    return found[: limit * 4]


def _violations(errors: list[dict]) -> list[Violation]:
    out: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        kind = err["type"]
        reason = kind if kind in MESSAGES else _PYDANTIC_REASONS.get(kind, "invalid_value")
        if kind == "greater_than_equal" and (err.get("ctx") or {}).get("ge") != 0:
            reason = "number_too_large"  # a signed field's lower bound: -(2^53 - 1)
        path = _loc_to_path(tuple(err["loc"]))
        if (path, reason) in seen:
            continue
        seen.add((path, reason))
        out.append(Violation(path=path, reason=reason, message=MESSAGES[reason]))
        if len(out) >= MAX_VIOLATIONS:
            break
    return out


# ---------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------

#: Required top-level string fields (``_id``): refused when empty or blank.
_REQUIRED_STRINGS = tuple(f.path for f in FIELDS if f.required and f.type == "string" and "." not in f.path)


UNKNOWN_FIELD_MODES = ("drop", "refuse")


def check_report(doc: object, *, unknown: str = "drop") -> CheckedReport:
    """Validate a decoded statistics record and reduce it to non-identifying values.

    ``doc`` is the JSON body as decoded by orjson/json (a dict). Returns a
    :class:`CheckedReport`; raises :class:`SchemaViolation` listing every
    violation found (at most :data:`MAX_VIOLATIONS`), never echoing a value.
    ``_id`` and ``createdAt`` are required; every other catalogue field is
    optional because Rocket.Chat versions differ (0.x to 8.x), and accepts
    ``null`` (a resent record).

    ``unknown`` (``COLLECTOR_UNKNOWN_FIELDS``): ``"drop"``, a key outside the
    catalogue is left out unread and listed in ``unknown_fields``, the rest is
    checked as usual (a Rocket.Chat release newer than the catalogue must not
    lose a workspace its receipt: issue 9); ``"refuse"``, it is a violation
    (``unknown_field``).

    The check and the flattening are one pass of :func:`collector.gate.fastpath.flatten`;
    only a record it refuses is validated by the pydantic model, for the violations
    (in drop mode, when it has unknown keys, of the record without them: :func:`prune`).
    """
    if unknown not in UNKNOWN_FIELD_MODES:
        raise ValueError(f"unknown must be one of {UNKNOWN_FIELD_MODES}")
    if not isinstance(doc, dict):
        raise SchemaViolation([Violation("$", "not_an_object", MESSAGES["not_an_object"])])
    blank = [p for p in _REQUIRED_STRINGS if isinstance(doc.get(p), str) and not doc[p].strip()]
    if blank:  # "" would make every such record one record: the second would be a "duplicate"
        raise SchemaViolation([Violation(p, "empty_value", MESSAGES["empty_value"]) for p in blank])
    try:
        categories, dropped, created_at, version, unknown_fields = fastpath.flatten(doc)
        if unknown_fields and unknown == "refuse":
            raise fastpath.Refused
    except (fastpath.Refused, privacy.RuleViolation):
        errors = _errors(doc, fastpath.ROOT, _ROOT_ADAPTER, (), MAX_VIOLATIONS)
        if unknown == "drop" and any(e["type"] == "extra_forbidden" for e in errors):
            # unknown keys are no violation here: name those of the record without them
            errors = _errors(prune(doc), fastpath.ROOT, _ROOT_ADAPTER, (), MAX_VIOLATIONS)
        if errors:
            raise SchemaViolation(_violations(errors)) from None
        # Both are built from the same catalogue fields: reaching this line is a bug.
        raise RuntimeError("privacy gate: the fast path refused a record the pydantic model accepts") from None
    return CheckedReport(
        record_id=doc["_id"],
        created_at=datetime.fromisoformat(created_at),
        version=version,
        categories=categories,
        dropped=dropped,
        unknown_fields=unknown_fields,
    )


def json_schema() -> dict:
    """JSON Schema (draft 2020-12, as pydantic emits it) of what ``check_report`` accepts.

    Privacy rules that JSON Schema cannot express (detectors, timestamp forms)
    appear as ``x-`` annotations; the catalogue version is in ``x-catalogue-version``.
    """
    schema = ReportModel.model_json_schema(by_alias=True)
    schema["title"] = "Rocket.Chat workspace statistics record"
    schema["x-catalogue-version"] = CATALOGUE_VERSION
    return schema


def _main() -> int:
    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

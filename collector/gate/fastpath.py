"""The catalogue as a tree, and the one-pass check and flattening of a record.

:func:`collector.gate.model.check_report` runs :func:`flatten` first. It walks a
decoded record (plain ``dict``/``list``/``str``/``int``/``float``/``bool``/
``None``, as orjson or json give it) once, along plans compiled from
``schemas/catalogue.json`` at import, checking every value with the same rules
as the pydantic model of :mod:`collector.gate.model` (strict types, bounds,
lengths, the string rules of :mod:`collector.gate.rules`) while writing the kept
values straight into the flat per-category dicts of ``CheckedReport``.

On the first thing it does not accept it raises :class:`Refused` (or lets a
:class:`collector.gate.rules.RuleViolation` through) and stops: it never says
*why*. A key outside the catalogue is not a refusal here: its path and JSON
type are noted (:func:`unknown_fields`) and its value is never read; ``check_report``
decides (drop or refuse). ``check_report`` then validates the record with pydantic, which names
every violation, so error reporting has one source. The rules here and the
pydantic annotations in ``schema.py`` are built from the same ``Field``
objects and must accept exactly the same records (``tests/test_fastpath.py``).

Output shapes are documented on :class:`collector.gate.model.CheckedReport`; keys
come out in catalogue order (map keys and list items in document order).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from itertools import groupby
from typing import Any, Callable

from . import rules as privacy
from .catalogue import CATEGORIES, FIELDS, Field

MAX_LIST_ITEMS = 4096        # os.cpus, session aggregates, omnichannel sources...
MAX_MAP_KEYS = 512           # userLanguages, custom OAuth providers
KEPT_STRING_MAX = 64         # enumerations and versions
TIMESTAMP_MAX = 100          # Date.toString() with a long time-zone name
IDENTIFYING_STRING_MAX = 4096  # statsToken is a ~1 KB JWT
ANY_KEY_MAX = 256            # keys of a map with free keys (custom OAuth provider names)
#: JavaScript's Number.MAX_SAFE_INTEGER: a Rocket.Chat server (Node.js) cannot
#: send a larger integer exactly, so a larger one is refused (and the rollups'
#: bigint columns can always hold what is accepted).
MAX_SAFE_INTEGER = 2**53 - 1
#: Accepted string values cached per rule (versions, enumerations, language codes):
#: refused values raise and are never cached.
RULE_CACHE_SIZE = 1024


class Refused(Exception):
    """The record is not accepted as it is; pydantic will say why."""


from .unknown import _UNKNOWN_SEEN, MAX_NAMED_UNKNOWN, _skip_unknown, unknown_fields  # noqa: E402,F401

_REFUSED = Refused()
_ABSENT = object()
_CI = {c: i for i, c in enumerate(CATEGORIES)}
assert len(CATEGORIES) == 4  # the generated code names the category dicts o0..o3


# ---------------------------------------------------------------------------------
# The catalogue tree
# ---------------------------------------------------------------------------------

class Node:
    """One non-derived catalogue field with its place in the tree.

    ``kind`` is ``object``, ``list``, ``map`` or ``scalar``; ``children`` (objects)
    maps a key to its node, in catalogue order; ``item`` is the node of a list's
    items or a map's values; ``key`` is ``(category, flat key)``; ``columns``
    (object items of a list) the ``(category, flat key)`` pairs one item can
    produce. ``check`` (scalars), ``walk`` and ``validate`` (containers) are the
    compiled plan (see :func:`_compile`).
    """

    __slots__ = ("field", "kind", "children", "item", "key", "columns", "ident",
                 "check", "walk", "validate")

    def __init__(self, field: Field) -> None:
        self.field = field
        self.ident = field.identifying
        self.kind = field.type if field.type in ("object", "list", "map") else "scalar"
        self.children: dict[str, Node] = {}
        self.item: Node | None = None
        self.key = (field.category, field.store_as or field.path)
        self.columns: tuple[tuple[str, str], ...] = ()


def _build_tree() -> tuple[Node, tuple[Field, ...]]:
    root = Node(Field(path="", type="object", nullable=False, cls="structure", category="operational",
                      since="0.51", until=None, meaning="A Rocket.Chat statistics record"))
    nodes = {"": root}
    derived: list[Field] = []
    for f in FIELDS:
        if f.derived:
            derived.append(f)
            continue
        node = Node(f)
        nodes[f.path] = node
        parent = nodes[f.parent]
        if f.path.endswith("[]") or f.path.endswith(".{}"):
            parent.item = node
        else:
            parent.children[f.path.rsplit(".", 1)[-1]] = node
    return root, tuple(derived)


def _columns(node: Node) -> tuple[tuple[str, str], ...]:
    """Flat keys a list item of ``node`` (an object) can produce, in catalogue order."""
    return tuple(col for child in node.children.values() for col in _child_columns(child))


def _child_columns(child: Node) -> tuple[tuple[str, str], ...]:
    """The ``(category, flat key)`` columns one child of a list item produces."""
    f = child.field
    if f.identifying:
        return ()
    if child.kind == "scalar":
        return (child.key,)
    if child.kind == "object":
        return _columns(child)
    if child.kind == "list":
        assert child.item is not None
        if child.item.field.identifying:
            return ()
        if child.item.kind == "scalar":
            return ((child.item.field.category, f.path),)
        return _columns(child.item)
    # maps inside list items would make keys data-dependent
    raise ValueError(f"catalogue: map {f.path!r} inside a list item is not supported")


# ---------------------------------------------------------------------------------
# Scalar rules (mirror _scalar_annotation in schema.py)
# ---------------------------------------------------------------------------------

def _cached(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Memoise a rule of strings (and of ``true``/``false`` for ``scalar`` fields: never
    ``1``, which the type tests refuse first). A refusal raises
    :class:`privacy.RuleViolation`, which lru_cache does not keep."""
    return lru_cache(maxsize=RULE_CACHE_SIZE)(rule)


def _timestamp(empty_ok: bool) -> Callable[[str], str | None]:
    """Accepted timestamp text -> ISO 8601 UTC with milliseconds (``None`` for an accepted ``""``)."""
    def timestamp(v: str) -> str | None:
        dt = privacy.parse_timestamp(v, empty_ok=empty_ok)
        if dt is None:
            return None
        if len(v) == 24 and v[10] == "T" and v[19] == "." and v[23] == "Z":
            return v[:23] + "+00:00"  # Date.toISOString() text, accepted: the same as isoformat(), 4x faster
        return dt.isoformat(timespec="milliseconds")
    return timestamp


def _rule(f: Field) -> tuple[str, str, dict[str, Any]]:
    """How a value of scalar field ``f`` is accepted, as Python source over ``v``:
    ``(test, kept value, helpers)``; the source names ``helpers`` ``h`` (a rule) and
    ``s`` (a set of strings the rule keeps as they are).

    ``test`` is True exactly when the pydantic annotation accepts a non-null ``v``
    (strict types, bounds, lengths); ``h`` may still raise
    :class:`privacy.RuleViolation` (string rules, timestamps).
    """
    lo, hi = ("-9007199254740991" if f.signed else "0"), "9007199254740991"
    assert int(hi) == MAX_SAFE_INTEGER
    typ = f.type
    if f.identifying:  # a loose check only, the value is dropped
        return {
            "integer": ("type(v) is int", "v", {}),
            "number": ("type(v) is int or (type(v) is float and h(v))", "v", {"h": math.isfinite}),
            "boolean": ("v is True or v is False", "v", {}),
        }.get(typ, (f"type(v) is str and len(v) <= {IDENTIFYING_STRING_MAX}", "v", {}))
    if typ == "integer" and f.or_false:
        return f"v is False or (type(v) is int and {lo} <= v <= {hi})", "v", {}
    if typ == "integer" and f.values is not None:
        return "type(v) is int and (int, v) in s", "v", {"s": privacy.typed_values(f.values)}
    if typ == "integer":
        return f"type(v) is int and {lo} <= v <= {hi}", "v", {}
    if typ == "number":  # strict float takes ints; NaN and infinities fail the bounds
        return f"(type(v) is float or type(v) is int) and {lo} <= v <= {hi}", "float(v)", {}
    if typ == "boolean":
        return "v is True or v is False", "v", {}
    if typ == "datetime":
        return f"type(v) is str and len(v) <= {TIMESTAMP_MAX}", "h(v)", {"h": _timestamp(f.empty_ok)}
    if f.values is not None and typ in ("string", "scalar"):
        allowed = privacy.typed_values(f.values)
        rule = _cached(lambda v: privacy.check_enumeration(v, allowed, f.on_unknown))
        # allow-listed strings are kept as they are: no call for them
        helpers = {"h": rule, "s": frozenset(v for v in f.values if type(v) is str)}
        if typ == "scalar":
            return (f"(type(v) is str and len(v) <= {KEPT_STRING_MAX}) or v is True or v is False",
                    "v if v in s else h(v)", helpers)
        return f"type(v) is str and len(v) <= {f.max_length or KEPT_STRING_MAX}", "v if v in s else h(v)", helpers
    if typ == "string" and f.pattern is not None:
        rx = re.compile(f.pattern)
        rule = _cached(lambda v: privacy.check_version(v, rx, f.on_unknown))
        return f"type(v) is str and len(v) <= {f.max_length or KEPT_STRING_MAX}", "h(v)", {"h": rule}
    raise ValueError(f"catalogue: no rule to keep string field {f.path!r} (give it values or a pattern)")


def _bind(texts: tuple[str, ...], v: str, helpers: dict[str, Any], suffix: str,
          ns: dict[str, Any]) -> tuple[str, ...]:
    """``_rule`` source with the value named ``v`` and each helper ``name`` as ``name + suffix`` in ``ns``."""
    for name, helper in helpers.items():
        ns[name + suffix] = helper
        texts = tuple(re.sub(rf"\b{name}\b", name + suffix, t) for t in texts)
    return tuple(re.sub(r"\bv\b", v, t) for t in texts)


def _scalar_check(f: Field) -> Callable[[Any], Any]:
    """``check(value) -> value to keep`` for scalar field ``f`` (list items, map values).

    Raises :class:`Refused` or :class:`privacy.RuleViolation`.
    """
    test, value, helpers = _rule(f)
    null = "    if v is None:\n        return None\n" if f.nullable else ""
    source = f"def check(v):\n    if {test}:\n        return {value}\n{null}    raise REFUSED\n"
    return _define(source, f.path, helpers, "check")


def _define(source: str, path: str, ns: dict[str, Any], name: str) -> Callable[..., Any]:
    ns.update(REFUSED=_REFUSED, ABSENT=_ABSENT, SKIP=_skip_unknown)
    _SOURCES[path] = source
    exec(compile(source, f"<fastpath {path or 'record'}>", "exec"), ns)
    return ns[name]


_SOURCES: dict[str, str] = {}


def source(path: str = "") -> str:
    """The generated check of catalogue ``path`` (an object or a scalar; ``""``: the record)."""
    return _SOURCES[path]


# ---------------------------------------------------------------------------------
# Compiling the plans
# ---------------------------------------------------------------------------------

def _compile(node: Node) -> None:
    """Give every node of the tree its ``check`` (scalars) or ``walk``/``validate`` (containers)."""
    f = node.field
    for child in node.children.values():
        _compile(child)
    if node.item is not None:
        _compile(node.item)
    if node.kind == "scalar":
        node.check = _scalar_check(f)
        return
    if node.kind == "object":
        node.walk = _object_walker(node)
    elif node.kind == "list":
        assert node.item is not None
        if node.item.kind in ("list", "map"):
            raise ValueError(f"catalogue: list {f.path!r} of lists or maps is not supported")
        if node.item.kind == "object":
            node.item.columns = _columns(node.item)
        node.walk = _list_walker(node)
    else:
        node.walk = _map_walker(node)
    node.validate = _validator(node)


def _validator(node: Node) -> Callable[..., None]:
    """``validate(v, dropped=None)``: check a container value without keeping anything
    (identifying subtrees); unknown keys are noted in ``dropped`` (a walk's set)."""
    walk = node.walk
    nullable = node.field.nullable

    def validate(v: Any, dropped: set | None = None) -> None:
        if v is None:
            if nullable:
                return
            raise _REFUSED
        scratch: dict = {}
        walk(v, (scratch, scratch, scratch, scratch), set() if dropped is None else dropped)
    return validate


def _object_walker(node: Node) -> Callable[[Any, tuple[dict, ...], set[str]], None]:
    """Generate ``walk(d, out, dropped)`` for an object node (see :func:`_object_block`);
    ``source(path)`` shows the text."""
    ns: dict[str, Any] = {}
    body: list[str] = []
    _object_block(node, 0, False, ns, body)
    lines = ["def walk(d0, out, dropped):", "    o0, o1, o2, o3 = out"] + ["    " + b for b in body]
    return _define("\n".join(lines) + "\n", node.field.path, ns, "walk")


def _object_block(node: Node, depth: int, check_only: bool, ns: dict[str, Any], lines: list[str],
                  cols: dict[str, str] | None = None) -> None:
    """Source checking the object ``d{depth}``: one block per catalogue child, in catalogue
    order; scalars inline (see :func:`_rule`), nested objects as nested blocks, lists and
    maps by their ``walk``. Kept values go to ``o{category index}[flat key]``, identifying
    paths to ``dropped``; ``check_only`` (inside an identifying object) keeps nothing.

    In a list item, ``cols`` maps each column's flat key to the name of the ``append`` of
    its list: every item then appends exactly one value to every column (``None`` for an
    absent or null value, the ``walk`` result of a nested list)."""
    d, v = f"d{depth}", f"d{depth + 1}"
    names = f"N{len(ns)}"
    ns[names] = frozenset(node.children)
    lines += [f"if type({d}) is not dict:", "    raise REFUSED",
              f"if not {names}.issuperset({d}):  # keys outside the catalogue: skipped, noted in dropped",
              f"    SKIP({d}, {names}, {node.field.path!r}, dropped)"]
    for name, child in node.children.items():
        cf = child.field
        keep = not (check_only or child.ident)
        # appends of None for the columns of this child when it is absent or null (list items only)
        nones = [f"{cols[key]}(None)" for _cat, key in _child_columns(child)] if keep and cols is not None else []
        null = ["    else:", "        raise REFUSED"] if not cf.nullable else ["    else:"] + ["        " + n for n in nones] if nones else []
        lines += [f"{v} = {d}.get({name!r}, ABSENT)", f"if {v} is not ABSENT:"]
        if child.kind == "object":
            body: list[str] = []
            _object_block(child, depth + 1, not keep, ns, body, cols)
            lines += [f"    if {v} is not None:"] + ["        " + b for b in body] + null
        elif child.kind != "scalar":
            fn = f"w{len(ns)}"
            ns[fn] = child.walk if keep else child.validate
            if not keep:
                call = [f"{fn}({v}, dropped)"]
            elif cols is None:
                call = [f"{fn}({v}, out, dropped)"]
            else:  # the nested list's walk stores its columns in a scratch dict
                call = ["t = {}", f"{fn}({v}, (t, t, t, t), dropped)"]
                call += [f"{cols[key]}(t[{key!r}])" for _cat, key in _child_columns(child)]
            lines += [f"    if {v} is not None:"] + ["        " + c for c in call] + null
        else:
            test, value, helpers = _rule(cf)
            test, value = _bind((test, value), v, helpers, str(len(ns)), ns)
            if not keep:
                lines += [f"    if not ({test}{f' or {v} is None' if cf.nullable else ''}):", "        raise REFUSED"]
            else:
                if cols is None:
                    target = f"o{_CI[child.key[0]]}[{child.key[1]!r}]"
                    store, store_none = f"{target} = {value}", f"{target} = None"
                else:
                    store, store_none = f"{cols[child.key[1]]}({value})", f"{cols[child.key[1]]}(None)"
                lines += [f"    if {test}:", f"        {store}"]
                lines += [f"    elif {v} is None:", f"        {store_none}"] if cf.nullable else []
                lines += ["    else:", "        raise REFUSED"]
        if child.ident and not check_only:
            lines.append(f"    dropped.add({cf.path!r})")
        if nones:
            lines += ["else:"] + ["    " + n for n in nones]
    for name, child in node.children.items():
        if child.field.required:
            lines += [f"if {name!r} not in {d}:", "    raise REFUSED"]


# ---------------------------------------------------------------------------------
# Walking a record
# ---------------------------------------------------------------------------------

def _list_walker(node: Node) -> Callable[[Any, tuple[dict, ...], set[str]], None]:
    """Generate ``walk(v, out, dropped)`` for a list node. Object items: :func:`_rows_walker`.
    Scalar items are checked inline (:func:`_rule`) and kept as one list under the list's
    path; identifying items are checked and the item path recorded as dropped."""
    item = node.item
    assert item is not None
    if item.kind == "object" and not item.ident:
        return _rows_walker(node)
    ns: dict[str, Any] = {}
    lines = [
        "def walk(v, out, dropped):",
        f"    if type(v) is not list or len(v) > {MAX_LIST_ITEMS}:",
        "        raise REFUSED",
    ]
    if item.kind == "object":  # identifying
        ns["check"] = item.validate
        lines += ["    for x in v:", "        check(x, dropped)"]
    else:
        test, value, helpers = _rule(item.field)
        test, value = _bind((test, value), "x", helpers, "", ns)
        null = " or x is None" if item.field.nullable else ""
        if item.ident:
            lines += ["    for x in v:", f"        if not ({test}{null}):", "            raise REFUSED"]
        else:
            lines += [
                "    kept = []",
                "    for x in v:",
                f"        if {test}:",
                f"            kept.append({value})",
                *(["        elif x is None:", "            kept.append(None)"] if null else []),
                "        else:",
                "            raise REFUSED",
                f"    out[{_CI[item.field.category]}][{node.field.path!r}] = kept",
            ]
    if item.ident:
        lines.append(f"    dropped.add({item.field.path!r})")
    return _define("\n".join(lines) + "\n", node.field.path, ns, "walk")


def _rows_walker(node: Node) -> Callable[[Any, tuple[dict, ...], set[str]], None]:
    """Generate ``walk(v, out, dropped)`` for a list of objects: one list per column of
    ``node.item.columns``, each item checked by its object block (:func:`_object_block`)
    appending one value to every column (``None`` where the item has none)."""
    item = node.item
    assert item is not None
    ns: dict[str, Any] = {}
    cols = {key: f"a{j}" for j, (_cat, key) in enumerate(item.columns)}
    body: list[str] = []
    _object_block(item, 1, False, ns, body, cols)
    lines = [
        "def walk(v, out, dropped):",
        f"    if type(v) is not list or len(v) > {MAX_LIST_ITEMS}:",
        "        raise REFUSED",
        *[f"    l{j} = []; a{j} = l{j}.append" for j in range(len(cols))],
        "    for d1 in v:",
        "        if d1 is not None:",
        *["            " + b for b in body],
        *(["        else:"] + [f"            a{j}(None)" for j in range(len(cols))] if item.field.nullable else
          ["        else:", "            raise REFUSED"]),
    ]
    for j, (cat, key) in enumerate(item.columns):
        lines.append(f"    out[{_CI[cat]}][{key!r}] = l{j}")
    return _define("\n".join(lines) + "\n", node.field.path, ns, "walk")


def _map_walker(node: Node) -> Callable[[Any, tuple[dict, ...], set[str]], None]:
    """``walk(v, out, dropped)`` for a map node. Free keys (``keys: any``, identifying maps
    only: the catalogue refuses others) are checked and dropped with the values; a map
    whose keys name a value set (``userLanguages``: ``language_codes``) keeps allow-listed
    keys under ``path.key`` and adds the integer values of every other key under
    ``path.other`` (:func:`collector.gate.rules.fold_key`; the sum is clamped to
    +-(2**53 - 1)), so no key is ever kept as sent."""
    f, item = node.field, node.item
    assert item is not None
    if item.kind != "scalar" and not node.ident:
        raise ValueError(f"catalogue: map {f.path!r} of containers must be identifying")
    scalar = item.kind == "scalar"
    check = item.check if scalar else item.validate
    ci, prefix = _CI[item.field.category], f.path + "."
    if f.key_values is None:  # keys: any (identifying)
        def walk_any(v: Any, out: tuple[dict, ...], dropped: set) -> None:
            if type(v) is not dict or len(v) > MAX_MAP_KEYS:
                raise _REFUSED
            for k, x in v.items():
                if type(k) is not str or len(k) > ANY_KEY_MAX:
                    raise _REFUSED
                out[ci][prefix + k] = check(x) if scalar else check(x, dropped)
        return walk_any
    if item.field.type != "integer" or item.field.nullable or privacy.FOLDED_KEY in f.key_values:
        raise ValueError(f"catalogue: map {f.path!r} folds keys: its values must be non-null integers")
    allowed = frozenset(f.key_values)
    other = prefix + privacy.FOLDED_KEY

    def walk(v: Any, out: tuple[dict, ...], dropped: set) -> None:
        if type(v) is not dict or len(v) > MAX_MAP_KEYS:
            raise _REFUSED
        o = out[ci]
        for k, x in v.items():
            if type(k) is not str:
                raise _REFUSED
            n = check(x)
            if k in allowed:
                o[prefix + k] = n
            else:
                o[other] = max(-MAX_SAFE_INTEGER, min(MAX_SAFE_INTEGER, o.get(other, 0) + n))
    return walk


# ---------------------------------------------------------------------------------
# Derived counts (computed on the record: they read only values the checks keep as they are)
# ---------------------------------------------------------------------------------

def _deriver(f: Field) -> Callable[[Any], int | None]:
    """``derive(src)``: the value of derived field ``f`` (``op`` ``len``/``sum``/``count_true``/
    ``count_eq``/``sub``) from its accepted source ``src`` (the record at ``f.source``, not
    ``None``: a list, or a map whose values are the items, or an object for ``sub``)."""
    name, equals = f.field, f.equals

    def items(src: Any) -> Any:
        return src.values() if isinstance(src, dict) else src

    if f.op == "len":
        return len
    if f.op == "sum":
        return lambda src: sum(i[name] for i in items(src) if isinstance(i, dict) and type(i.get(name)) is int)
    if f.op == "count_true":
        return lambda src: sum(1 for i in items(src) if isinstance(i, dict) and i.get(name) is True)
    if f.op == "count_eq":
        return lambda src: sum(1 for i in items(src) if isinstance(i, dict) and i.get(name) == equals)
    if f.op == "sub":
        first, second = f.fields or ()

        def sub(src: Any) -> int | None:
            a, b = src.get(first), src.get(second)
            return max(a - b, 0) if type(a) is int and type(b) is int else None
        return sub
    raise ValueError(f"catalogue: derived op {f.op!r}")


def _source(data: dict[str, Any], parts: tuple[str, ...]) -> Any:
    cur: Any = data
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_derived_sources(root: Node, derived: tuple[Field, ...]) -> None:
    """Derived counts read the record itself, so a value they read must be kept unchanged
    by its check: integers and booleans, enumerations without ``on_unknown``."""
    for f in derived:
        node = root
        for part in (f.source or "").split("."):
            node = node.children[part]
        item = node.item if node.kind in ("list", "map") else node
        for name in ([f.field] if f.field else []) + list(f.fields or ()):
            leaf = item.children[name].field
            if leaf.type not in ("integer", "boolean", "string") or leaf.on_unknown:
                raise ValueError(f"catalogue: derived {f.path!r} reads {leaf.path!r}, which its check rewrites")


# ---------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------

ROOT, DERIVED = _build_tree()
_compile(ROOT)
_check_derived_sources(ROOT, DERIVED)
#: (source path parts, ((derive, category index, key), ...)) per run of derived fields with one source
_DERIVED_PLAN = tuple(
    (tuple(source.split(".")), tuple((_deriver(f), _CI[f.category], f.path) for f in run))
    for source, run in groupby(DERIVED, key=lambda f: f.source or "")
)
_RANK = {f.path: i for i, f in enumerate(FIELDS)}
_CREATED_AT = (_CI[ROOT.children["createdAt"].field.category], ROOT.children["createdAt"].key[1])
_VERSION = (_CI[ROOT.children["version"].field.category], ROOT.children["version"].key[1])


def flatten(doc: Any) -> tuple[dict[str, dict[str, object]], tuple[str, ...], str, str | None,
                               tuple[tuple[str, tuple[str, ...]], ...]]:
    """Check ``doc`` and return ``(categories, dropped, createdAt ISO string, version, unknown)``.

    ``categories``, ``dropped`` and ``unknown`` (the keys outside the catalogue, skipped:
    ``((path, (JSON type, ...)), ...)``, sorted) are as on :class:`collector.gate.model.CheckedReport`;
    whether a record with unknown keys is accepted is the caller's choice.
    Raises :class:`Refused` or :class:`privacy.RuleViolation` at the first value
    not accepted (without saying which: pydantic does that).
    """
    out: tuple[dict, ...] = ({}, {}, {}, {})  # one per CATEGORIES entry, o0..o3 in the generated code
    dropped: set = set()
    ROOT.walk(doc, out, dropped)
    unknown = unknown_fields(dropped) if _UNKNOWN_SEEN in dropped else ()
    for parts, derivations in _DERIVED_PLAN:
        src = _source(doc, parts)
        if src is not None:
            for derive, ci, key in derivations:
                value = derive(src)
                if value is not None:
                    out[ci][key] = value
    categories = dict(zip(CATEGORIES, out))
    return (categories, tuple(sorted(dropped, key=_RANK.__getitem__)),
            out[_CREATED_AT[0]][_CREATED_AT[1]], out[_VERSION[0]].get(_VERSION[1]), unknown)

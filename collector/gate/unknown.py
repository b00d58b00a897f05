"""Keys outside the catalogue (issue 9): noted while the fast path walks a record,
never read, then listed by path and JSON type (``unknown_fields``)."""

from __future__ import annotations

from . import rules as privacy

#: Unknown keys listed by name per record: past this many distinct named paths (in
#: path order), further ones are listed as ``{}`` under their object, so a record
#: lists at most this many plus one per catalogue object.
MAX_NAMED_UNKNOWN = 64
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}
#: In a walk's ``dropped`` set (otherwise catalogue path strings): there are unknown keys.
_UNKNOWN_SEEN = "\x00unknown"


def _skip_unknown(d: dict, names: frozenset[str], path: str, dropped: set) -> None:
    """Note the keys of ``d`` (the object at catalogue ``path``) outside ``names`` in
    ``dropped`` as ``(object path, key or "{}", JSON type of the value)`` tuples, and
    :data:`_UNKNOWN_SEEN` (:func:`unknown_fields` reads them). The key is kept when it
    looks like a code identifier (:func:`collector.gate.rules.looks_like_code_identifier`),
    else ``{}``. Values are never read: a path ends at the outermost unknown key.
    Whether the record is accepted is the caller's choice (issue 9). Called only for
    an object with such keys: a record without any pays nothing for this."""
    dropped.add(_UNKNOWN_SEEN)
    for key, value in d.items():
        if key not in names:
            dropped.add((path, key if privacy.looks_like_code_identifier(key) else "{}",
                         _JSON_TYPES.get(type(value), "unknown")))


def unknown_fields(dropped: set) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Take the notes of :func:`_skip_unknown` out of ``dropped`` (a walk's set) and return
    them as ``((path, (JSON type, ...)), ...)`` sorted by path (``()`` when none), with at
    most :data:`MAX_NAMED_UNKNOWN` named paths."""
    if _UNKNOWN_SEEN not in dropped:
        return ()
    notes = [e for e in dropped if type(e) is tuple]
    dropped.difference_update(notes)
    dropped.discard(_UNKNOWN_SEEN)
    join = lambda parent, name: f"{parent}.{name}" if parent else name  # noqa: E731
    named = sorted({join(p, k) for p, k, _t in notes if k != "{}"})[:MAX_NAMED_UNKNOWN]
    keep = frozenset(named)
    types: dict[str, set[str]] = {}
    for parent, key, t in notes:
        path = join(parent, key)
        types.setdefault(path if path in keep else join(parent, "{}"), set()).add(t)
    return tuple(sorted((p, tuple(sorted(t))) for p, t in types.items()))

"""Catalogue drift: the fields outside the catalogue that accepted reports carried.

The gate drops a key it does not know before anything is stored (issue 9) and
lists it on ``CheckedReport.unknown_fields`` as ``(path, (JSON type, ...))``; a
path ends at the outermost unknown key, and a key that does not look like a code
identifier is ``{}``, so nothing here can hold a value. The writer records them
per (path, Rocket.Chat version) in ``catalogue_drift`` (``sql/0005_catalogue_drift.sql``)
in the same transaction as the reports: ``with_drift`` wraps the writer's one
statement so that ``record_drift`` runs after ``write_batch`` in the same
statement, still one round trip, and only for a batch that has drift (a batch
without sends the unchanged ``write_batch`` statement). Operators read it with
``listing`` (``GET /api/v1/catalogue/drift``, ``collector catalogue drift``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from collector.gate import CATALOGUE_PATHS

#: Paths of one record: ``((path, (JSON type, ...)), ...)`` as the gate gives them.
Unknown = Sequence[tuple[str, Sequence[str]]]


def with_drift(write_batch_sql: str) -> str:
    """The writer's statement for a batch with drift: ``write_batch_sql`` (a ``SELECT
    ... FROM write_batch($1..$n)``, answering one row per record in order), then
    ``record_drift`` with five more parameters ($n+1 received_at, $n+2 the records'
    versions, $n+3..$n+5 ``drift_arrays``) fed with write_batch's ``accepted``
    column, in the same statement; it answers write_batch's columns and rows, in order.

    The CTEs are MATERIALIZED and the drift one reads write_batch's rows, so
    write_batch has run (and stored the batch) before record_drift starts.
    """
    n = max(int(m) for m in re.findall(r"\$(\d+)", write_batch_sql))
    cols = re.match(r"\s*SELECT\s+(.*?)\s+FROM\s", write_batch_sql, re.S | re.I)
    assert cols is not None, "write_batch_sql must be a SELECT of columns FROM write_batch(...)"
    columns = ", ".join(f"w.{c.strip()}" for c in cols.group(1).split(","))
    return (
        f"WITH w AS MATERIALIZED (SELECT b.*, row_number() OVER () AS ord FROM ({write_batch_sql}) b),"
        f" d AS MATERIALIZED (SELECT record_drift(${n + 1}::timestamptz, ${n + 2}::text[],"
        f" ARRAY(SELECT w.accepted FROM w ORDER BY w.ord), ${n + 3}::integer[], ${n + 4}::text[], ${n + 5}::text[]) AS n)"
        f" SELECT {columns} FROM w CROSS JOIN d ORDER BY w.ord"
    )


def drift_arrays(unknown_per_record: Sequence[Unknown]) -> tuple[list[int], list[str], list[str]]:
    """``record_drift``'s ``d_ord, d_path, d_type``: one element per (record, path,
    type), ``d_ord`` the record's 1-based position in ``unknown_per_record``."""
    ords: list[int] = []
    paths: list[str] = []
    types: list[str] = []
    for i, unknown in enumerate(unknown_per_record, start=1):
        for path, json_types in unknown:
            for t in json_types:
                ords.append(i)
                paths.append(path)
                types.append(t)
    return ords, paths, types


def _version_key(version: str | None) -> tuple:
    """``None`` first, then by the numbers of ``8.10.1`` (``v`` and suffixes aside), then the text."""
    if version is None:
        return ((), "")
    return (tuple(int(x) for x in re.findall(r"\d+", version.split("-")[0])), version)


async def listing(conn) -> list[dict]:
    """The drift, one entry per path, most reports first (then by path):
    ``{"path", "json_types": [...], "rc_versions": [...] (null: a record without
    ``version``), "reports" (accepted reports that carried it), "first_seen",
    "last_seen" (ISO 8601), "in_catalogue" (the catalogue has the path by now)}``.
    """
    rows = await conn.fetch(
        "SELECT path,"
        " ARRAY(SELECT DISTINCT t FROM catalogue_drift c2, unnest(c2.json_types) t"
        "       WHERE c2.path = c.path ORDER BY t) AS json_types,"
        " array_agg(NULLIF(rc_version, '')) AS rc_versions,"
        " sum(reports)::bigint AS reports, min(first_seen) AS first_seen, max(last_seen) AS last_seen"
        " FROM catalogue_drift c GROUP BY path ORDER BY sum(reports) DESC, path"
    )
    return [
        {
            "path": r["path"],
            "json_types": list(r["json_types"]),
            "rc_versions": sorted(r["rc_versions"], key=_version_key),
            "reports": r["reports"],
            "first_seen": r["first_seen"].isoformat(),
            "last_seen": r["last_seen"].isoformat(),
            "in_catalogue": r["path"] in CATALOGUE_PATHS,
        }
        for r in rows
    ]

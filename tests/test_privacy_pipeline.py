"""Privacy through the whole pipeline (issues 3 and 10, property-based).

Take a real record, plant an identifier (e-mail, URL, IP, person's name,
UUID, free text) at a random existing or new path, post it to the real
server: either the report is refused, or nothing of the planted value reaches
any table, log line, metric or response.

Issue 10: the same for every kept string position and every map-key position of
both real records (userLanguages, services.oauth.custom), with names, e-mails,
host names, IPv4 in every notation (zero-padded, octal, hex, integer, with a
port), IPv6, phone numbers (E.164 and national, any separators), UUIDs and
database ids; a refused planted key shows as ``{}`` in the answer and the quarantine.
"""

from __future__ import annotations

import copy
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ops import logs
from collector.gate.catalogue import BY_PATH
from tests.catalogue_helpers import _tokens, catalogue_walk, sample
from tests.conftest import load_fixture

PLANTS = st.one_of(
    st.emails().map(lambda e: "x" + e),
    st.sampled_from(["https://", "http://", "ftp://"]).flatmap(
        lambda s: st.from_regex(r"[a-z]{4,12}\.(com|org|net|io)/[a-z]{2,8}", fullmatch=True).map(lambda r: s + r)
    ),
    st.ip_addresses().map(str).filter(lambda ip: len(ip) >= 7),
    st.sampled_from(["Jane Doe", "Jürgen Müller", "María José García", "Li Wei Zhang", "Sales Team Berlin"]),
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z]{4,10}( [A-Za-z]{3,10}){2,5}", fullmatch=True),
    st.from_regex(r"[a-z]{5,10}\.(internal|corp|example)\.(com|net)", fullmatch=True),
)


def leaf_paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from leaf_paths(v, prefix + (k,))
        yield prefix + ("plantedField",)
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from leaf_paths(v, prefix + (i,))
    else:
        yield prefix


BASES = {name: load_fixture(name) for name in ("report-8.7.0.json", "report-6.8.0.json")}
PATHS = {name: sorted(set(leaf_paths(doc)), key=repr) for name, doc in BASES.items()}


def plant(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.fixture(scope="module")
def log_stream():
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    yield stream
    logs.configure("WARNING", json=True)


async def table_counts(db, needle: str) -> dict[str, int]:
    """Rows per table (public schema) whose text holds ``needle``, case-insensitively."""
    tables = [r["table_name"] for r in await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    return {t: await db.fetchval(f'SELECT count(*) FROM "{t}" t WHERE strpos(lower(t::text), lower($1)) > 0', needle)
            for t in tables}


async def table_hits(db, needle: str) -> list[str]:
    tables = [r["table_name"] for r in await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    hits = []
    for t in tables:
        n = await db.fetchval(f'SELECT count(*) FROM "{t}" t WHERE strpos(lower(t::text), lower($1)) > 0', needle)
        if n:
            hits.append(t)
    return hits


async def post_watched(service, log_stream, token: str, doc: dict):
    """Post ``doc``; returns (status, headers, body, the metrics text after it,
    the log lines it wrote)."""
    before = log_stream.tell()
    status, headers, body = await service.post_report(token, doc)
    async with service.http.get(service.url + "/metrics") as r:
        metrics_text = await r.text()
    log_stream.seek(before)
    return status, headers, body, metrics_text, log_stream.read()


async def check_planted(service, db, log_stream, base: str, path_index: int, value: str, counter: list):
    doc = copy.deepcopy(BASES[base])
    path = PATHS[base][path_index % len(PATHS[base])]
    plant(doc, path, value)
    counter[0] += 1
    doc["_id"] = f"planted-{counter[0]}"
    ws = await service.register()
    status, headers, body, metrics_text, log_text = await post_watched(service, log_stream, ws["token"], doc)
    needle = value.lower()
    assert status in (200, 422), (status, body)
    where = [
        name
        for name, text in (("response", body.decode() + repr(headers)), ("logs", log_text), ("metrics", metrics_text))
        if needle in text.lower()
    ]
    where += await table_hits(db, value)
    assert not where, f"planted value at {path!r} reached {where} (status {status})"
    return status


# --- issue 10: every kept string position and every map-key position --------------------------

def _ipv4_notation(ip: int, style: int, port: int) -> str:
    o = [(ip >> s) & 255 for s in (24, 16, 8, 0)]
    return [
        ".".join(f"{x:03d}" for x in o), ".".join(f"0{x:o}" for x in o), ".".join(f"0x{x:x}" for x in o),
        "_".join(map(str, o)), "v" + ".".join(map(str, o)), f"0x{o[0]:x}.{(o[1] << 16) | (o[2] << 8) | o[3]}",
        f"0{o[0]:o}.{o[1]}.{(o[2] << 8) | o[3]}", str(ip), f"0x{ip:08x}", ".".join(map(str, o)) + f":{port}",
    ][style]


def _phone(cc: str, groups: list[str], sep: str, form: int) -> str:
    national = sep.join(groups)
    return [f"+{cc} {national}", f"00{cc}{sep}{national}", f"0{national}", f"({groups[0]}) {'-'.join(groups[1:])}",
            national][form]


IDENTIFIERS = st.one_of(
    st.emails(),
    st.builds(lambda f, la: f"{f} {la}", st.sampled_from(["Jane", "Jürgen", "María José", "Wei", "Olusegun"]),
              st.sampled_from(["Doe", "Müller", "García", "Zhang", "Okafor"])),
    st.from_regex(r"[a-z]{8,12}", fullmatch=True),  # a bare user name (8+: no chance hit in keys or hashes)
    st.from_regex(r"[a-z][a-z0-9-]{2,12}\.(acme|corp|example)\.(com|net|io)", fullmatch=True),
    st.builds(_ipv4_notation, st.integers(2**24, 2**32 - 1), st.integers(0, 9), st.integers(1, 65535)),
    st.ip_addresses(v=6).map(str).filter(lambda a: len(a) >= 7),
    st.builds(_phone, st.from_regex(r"[1-9]\d{0,2}", fullmatch=True),
              st.lists(st.from_regex(r"\d{2,4}", fullmatch=True), min_size=2, max_size=4)
              .filter(lambda g: sum(map(len, g)) >= 8), st.sampled_from([" ", "-", ".", ""]), st.integers(0, 4)),
    st.uuids().map(str),
    st.from_regex(r"[0-9a-f]{24}", fullmatch=True),  # Mongo ObjectId
    st.from_regex(r"[23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}", fullmatch=True),  # Meteor id
)


def kept_positions(doc) -> list[tuple[str, str, str]]:
    """``(kind, catalogue path, concrete path)``: ``value`` for every kept string position
    (non-identifying string, scalar-enumeration or timestamp field present in ``doc``,
    list items included), ``key`` for every map (a key is planted into it)."""
    out = []
    for cpath, real, value in catalogue_walk(doc):
        f = BY_PATH.get(cpath)
        if f is None or f.derived:
            continue
        if f.type == "map":
            out.append(("key", cpath, real))
        elif not f.identifying and f.type in ("string", "scalar", "datetime") and (value is None or isinstance(value, str)):
            out.append(("value", cpath, real))
    return sorted(set(out))


POSITIONS = {name: kept_positions(doc) for name, doc in BASES.items()}


def _get(doc, real: str):
    node = doc
    for t in _tokens(real):
        node = node[t]
    return node


async def check_position(service, db, log_stream, base: str, pick: int, value: str, bad_value: bool):
    positions = POSITIONS[base]
    kind, cpath, real = positions[pick % len(positions)]
    doc = copy.deepcopy(BASES[base])
    if kind == "value":
        plant(doc, tuple(_tokens(real)), value)
    else:
        item = sample(cpath + ".{}")
        _get(doc, real)[value] = "not-a-count" if bad_value and isinstance(item, int) else item
    _COUNTER[0] += 1
    doc["_id"] = f"planted-{_COUNTER[0]}"
    ws = await service.register()
    earlier = await table_counts(db, value)  # rows holding the text before (say a count equal to 16777216)
    status, headers, body, metrics_text, log_text = await post_watched(service, log_stream, ws["token"], doc)
    rows = await db.fetch("SELECT violations::text AS v FROM quarantine WHERE workspace_id = $1::uuid",
                          ws["workspace_id"])
    assert status in (200, 422), (status, body)
    needle = value.lower()
    where = [name for name, text in (("response", body.decode() + repr(headers)), ("logs", log_text),
                                     ("metrics", metrics_text),
                                     ("quarantine", " ".join(r["v"] for r in rows))) if needle in text.lower()]
    where += [t for t, n in (await table_counts(db, value)).items() if n > earlier.get(t, 0)]
    assert not where, f"planted {kind} at {real!r} reached {where} (status {status})"
    if kind == "key" and bad_value and status == 422:  # the refused key is shown as {}
        assert f'"{cpath}.{{}}"' in body.decode(), body
        assert rows and f'"{cpath}.{{}}"' in rows[0]["v"]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(sorted(BASES)), pick=st.integers(0, 10_000), value=IDENTIFIERS, bad=st.booleans())
async def test_identifier_in_kept_string_or_map_key_reaches_nothing(service, db, log_stream, base, pick, value, bad):
    await check_position(service, db, log_stream, base, pick, value, bad)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(sorted(BASES)), pick=st.integers(0, 10_000), value=IDENTIFIERS, bad=st.booleans())
async def test_identifier_in_kept_string_or_map_key_many_examples(service, db, log_stream, base, pick, value, bad):
    await check_position(service, db, log_stream, base, pick, value, bad)


@pytest.mark.parametrize("base", sorted(BASES))
async def test_every_position_once(service, db, log_stream, base):
    """Each kept string position and map of the record once, with an IPv4 in zero-padded
    notation, a dotted phone number and a name: covers every position without sampling."""
    for pick in range(len(POSITIONS[base])):
        for value in ("010.001.002.003", "030.1234.5678", "Jane Doe"):
            await check_position(service, db, log_stream, base, pick, value, False)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(sorted(BASES)), path_index=st.integers(0, 10_000), value=PLANTS)
async def test_planted_identifier_is_refused_or_reaches_nothing(service, db, log_stream, base, path_index, value):
    await check_planted(service, db, log_stream, base, path_index, value, _COUNTER)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(base=st.sampled_from(sorted(BASES)), path_index=st.integers(0, 10_000), value=PLANTS)
async def test_planted_identifier_many_examples(service, db, log_stream, base, path_index, value):
    await check_planted(service, db, log_stream, base, path_index, value, _COUNTER)


_COUNTER = [0]

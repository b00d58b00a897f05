"""Privacy through the whole pipeline (issue 3, property-based).

Take a real record, plant an identifier (e-mail, URL, IP, person's name,
UUID, free text) at a random existing or new path, post it to the real
server: either the report is refused, or nothing of the planted value reaches
any table, log line, metric or response.
"""

from __future__ import annotations

import copy
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.ops import logs
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


async def table_hits(db, needle: str) -> list[str]:
    tables = [r["table_name"] for r in await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    hits = []
    for t in tables:
        n = await db.fetchval(f'SELECT count(*) FROM "{t}" t WHERE strpos(lower(t::text), lower($1)) > 0', needle)
        if n:
            hits.append(t)
    return hits


async def check_planted(service, db, log_stream, base: str, path_index: int, value: str, counter: list):
    doc = copy.deepcopy(BASES[base])
    path = PATHS[base][path_index % len(PATHS[base])]
    plant(doc, path, value)
    counter[0] += 1
    doc["_id"] = f"planted-{counter[0]}"
    ws = await service.register()
    before = log_stream.tell()
    status, headers, body = await service.post_report(ws["token"], doc)
    async with service.http.get(service.url + "/metrics") as r:
        metrics_text = await r.text()
    log_stream.seek(before)
    log_text = log_stream.read()
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

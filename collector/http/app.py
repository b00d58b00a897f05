"""Assembly of the aiohttp application: startup/shutdown, middlewares, routes.

Routes:
  POST /, POST /api/v1/statistics   ingest (workspace token)      collector.http.ingest
  /api/v1/workspaces/self..., .../{id}/opt-out, /api/v1/audit    collector.http.optout
  /api/v1/workspaces..., /api/v1/operator-tokens,
  /api/v1/quarantine, /api/v1/catalogue/drift (operator)          collector.http.admin
  GET /api/v1/schema, /api/v1/schema/fields (anyone)              collector.http.published
  /api/v1/plans..., /api/v1/workspaces/{id}/contract (operator)   collector.http.plans
  /api/v1/compliance... (operator 'compliance')                   collector.http.compliance
  /api/v1/billing/consumption (operator 'billing')                collector.http.billing
  GET .../workspaces/self/export, .../{id}/export, DELETE .../{id} collector.http.lifecycle
  GET /.well-known/jwks.json         public key of the receipts
  GET /healthz                       the process is up
  GET /readyz                        the database answers (503 otherwise)
  GET /metrics                       Prometheus text format
  /console/...                       the operator console (HTML)   collector.console
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from aiohttp import web
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from collector.accounts import (
    Forbidden,
    datakeys,
    PrincipalCache,
    RevocationListener,
    Unauthorized,
    UnknownWorkspace,
)
from collector import console
from collector.config import Settings
from collector.gate import CATALOGUE_VERSION
from collector.http import admin, billing, compliance, ingest, optout, plans, published
from collector.http import lifecycle as data_lifecycle
from collector.http.common import (
    STATE,
    BadRequest,
    State,
    error_response,
    json_response,
)
from collector.ingest import Ingest, ReceiptSigner, ReportWriter, load_secret
from collector.lifecycle import Maintenance, retention
from collector.ops import database as db
from collector.ops import listening, log, metrics, serving


@web.middleware
async def errors_and_timing(request: web.Request, handler) -> web.StreamResponse:
    """Map known exceptions to clear JSON answers and time every request.

    Database faults become 503 + Retry-After (retryable), never 500.
    """
    started = time.perf_counter()
    listening.headers_received(request)  # the connection's header deadline stops
    stopping = request.app.get(serving.STOPPING)
    if stopping is not None:
        stopping.request_began()
    try:
        return await _answer(request, handler, stopping, started)
    finally:
        if stopping is not None:
            stopping.request_ended()


async def _answer(request: web.Request, handler, stopping, started: float) -> web.StreamResponse:
    retry_after = request.app[STATE].settings.retry_after_s
    try:
        response = await handler(request)
    except Unauthorized:
        response = error_response(401, "unauthorized", "a valid bearer token is required")
    except Forbidden as exc:
        response = error_response(403, "forbidden", exc.detail)
    except BadRequest as exc:
        response = error_response(exc.status, exc.error, exc.detail, exc.violations)
    except UnknownWorkspace:
        response = error_response(404, "unknown_workspace", "no active workspace with that id")
    except db.UNAVAILABLE_ERRORS:
        response = error_response(503, "database_unavailable", "the database is unavailable; retry later", retry_after=retry_after)
    except web.HTTPException as exc:  # aiohttp's own: 404 unmatched, 405 (with Allow), 413
        response = _http_error(exc)
    except Exception as exc:  # a bug: say so in JSON, log it, count it (never for a retryable fault)
        log.exception("request_failed", route=_route(request), error=type(exc).__name__)
        response = error_response(500, "internal_error", "the collector failed on this request; it is logged")
    if stopping is not None and stopping.is_set:
        response.force_close()  # the worker is stopping: no further request on this connection
    elif request.body_exists and not request.content.at_eof():
        # The body was not (all) read: answered before reading it (a shed, a 401,
        # a route that reads none) or refused while reading it (413, corrupt
        # compressed data). The connection is not reused: aiohttp reads and
        # drops the rest after the answer, then closes it.
        response.force_close()
    metrics.REQUEST_SECONDS.labels(_route(request), f"{response.status // 100}xx").observe(
        time.perf_counter() - started
    )
    return response


#: Error codes of aiohttp's own HTTP errors where ours differ from its reason phrase.
_HTTP_ERROR_CODES = {413: "too_large"}


def _http_error(exc: web.HTTPException) -> web.Response:
    """An aiohttp HTTPException as our JSON error answer; a 405 keeps its ``Allow``
    header (RFC 9110 15.5.6), a 413 is coded ``too_large`` as everywhere else."""
    code = _HTTP_ERROR_CODES.get(exc.status, exc.reason.lower().replace(" ", "_"))
    response = error_response(exc.status, code, exc.reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _route(request: web.Request) -> str:
    """The route's pattern (never the concrete path: it may hold an id)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource else "unmatched"


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    stopping = request.app.get(serving.STOPPING)
    if stopping is not None and stopping.is_set:
        return error_response(503, "stopping", "this worker is stopping", retry_after=request.app[STATE].settings.retry_after_s)
    try:
        await asyncio.wait_for(request.app[STATE].pool.fetchval("SELECT 1"), timeout=2)
    except (asyncio.TimeoutError, *db.UNAVAILABLE_ERRORS):
        return error_response(503, "database_unavailable", "the database does not answer", retry_after=request.app[STATE].settings.retry_after_s)
    return json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.Response:
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def jwks(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].signer.jwks())


def make_app(settings: Settings, database_url: str) -> web.Application:
    """Build the application. On startup it connects to ``database_url`` (retrying
    for up to 30 s), applies migrations, makes the report partitions ahead,
    and starts the group-commit writer and the maintenance task (retention)."""
    app = web.Application(middlewares=[errors_and_timing],
                          client_max_size=max(settings.max_body_bytes, settings.api_max_body_bytes))
    console_app, console_deps = console.make_app(settings)

    async def lifecycle(app: web.Application):
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(db.UNAVAILABLE_ERRORS),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(30),
            reraise=True,
        ):
            with attempt:
                pool = await db.create_pool(database_url, settings.db_pool_min, settings.db_pool_max)
        try:
            async with pool.acquire() as conn:
                await db.migrate(conn)
                await retention.ensure_partitions(conn, settings.retention_days, datetime.now(timezone.utc))
                secret = await load_secret(conn, "record_key")
            signer = ReceiptSigner.from_file(settings.resolved_signing_key_file, settings.receipt_issuer)
            keyring = datakeys.Keyring()
            writer = ReportWriter(
                pool, signer, CATALOGUE_VERSION, batch_max=settings.batch_max,
                writers=settings.writers, keyring=keyring,
            )
            writer.start()
            principals = PrincipalCache(settings.auth_cache_ttl_s)
            listener = RevocationListener(principals, also=(keyring,))
            await listener.start(database_url)
            await console_deps.start(pool)
            maintenance = Maintenance(settings, database_url)
            maintenance.start()
            app[STATE] = State(settings, pool, signer, writer, principals, Ingest(
                settings=settings, pool=pool, writer=writer, principals=principals, record_secret=secret,
                catalogue_version=CATALOGUE_VERSION), keyring)
            yield
            await maintenance.stop()
            await writer.stop(settings.shutdown_grace_s)
            await listener.close()
        finally:
            await pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/", ingest.post_statistics)
    app.router.add_post("/api/v1/statistics", ingest.post_statistics)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_routes(data_lifecycle.routes)  # before admin and optout: .../self/export before .../{id}/export
    app.router.add_routes(optout.routes)  # before admin: /workspaces/self must win over /workspaces/{id}
    app.router.add_routes(admin.routes)
    app.router.add_routes(published.routes)
    app.router.add_routes(plans.routes)
    app.router.add_routes(compliance.routes)
    app.router.add_routes(billing.routes)
    app.router.add_get("/console", console_root)
    app.add_subapp("/console/", console_app)
    return app


async def console_root(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/console/"})

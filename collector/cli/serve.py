"""``collector serve`` and ``collector migrate``."""

from __future__ import annotations

import sys

import asyncpg
import click

from collector.cli.common import database_url, main, run_with_conn, settings
from collector.config import Settings
from collector.ingest import ReceiptSigner
from collector.ops import database as db
from collector.ops import logs, serving


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, COLLECTOR_HOST).")
@click.option("--port", default=None, type=int, help="Port (default 8080, COLLECTOR_PORT).")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port (SO_REUSEPORT; default 1, COLLECTOR_WORKERS).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the collector's HTTP service until SIGTERM or Ctrl-C."""
    cfg = settings()
    host, port = host or cfg.host, port or cfg.port
    logs.configure(cfg.log_level, cfg.log_json)
    try:
        serving.check_port_free(host, port)
    except serving.PortInUse as exc:
        click.echo(f"error: {exc.strerror}", err=True)
        sys.exit(1)
    url = database_url(cfg)
    logs.log.info("database", embedded=not cfg.database_url)
    log_operator_access(cfg, host, port)
    serving.serve(cfg, url, host, port, workers or cfg.resolved_workers, make_app=make_app, prepare=prepare)


def log_operator_access(cfg: Settings, host: str, port: int) -> None:
    """Say at start whether COLLECTOR_ADMIN_TOKEN is set and, when not, how to get an operator token."""
    console = f"http://{host}:{port}/console/"
    if cfg.admin_token:
        logs.log.info("operator_access", admin_token="set", console=console,
                      hint="COLLECTOR_ADMIN_TOKEN is an operator token with every role (API and console)")
    else:
        logs.log.warning("operator_access", admin_token="not set", console=console,
                         hint="no operator token yet: run `uv run collector operator-token add --role admin`"
                              " (or billing, compliance) in another shell, or restart with COLLECTOR_ADMIN_TOKEN set")


@main.command()
def migrate() -> None:
    """Apply pending SQL migrations and exit."""
    run_with_conn(lambda conn: _migrated(conn))


async def _migrated(conn):
    return {"migrations": [name for _, name, _ in db.migration_files()]}


async def prepare(settings: Settings, url: str) -> None:
    """What the parent of several workers does once: migrate, make the signing key."""
    conn = await asyncpg.connect(url)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    ReceiptSigner.from_file(settings.resolved_signing_key_file, settings.receipt_issuer)


def make_app(settings: Settings, url: str):
    """The HTTP application of one worker (``collector.http.make_app``)."""
    from collector.http.app import make_app as build

    return build(settings, url)

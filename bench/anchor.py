"""The naive anchor the performance targets are ratios against.

    uv run python -m bench.anchor --port 8090 --database-url postgresql://postgres@127.0.0.1:5432/anchor

"A naive collector": aiohttp + asyncpg, one process, each report's body stored
as JSONB in its own committed transaction, no validation, no auth check. Its
table (``anchor_reports``) is created in the database it is given. Deliberately
all defaults: asyncio's own event loop, asyncpg's default pool (10
connections), aiohttp's default server and JSON. ``bench/loadgen.py --anchor``
starts it in a fresh database and runs the same load against it.
"""

from __future__ import annotations

import argparse

import asyncpg
from aiohttp import web

TABLE = """CREATE TABLE IF NOT EXISTS anchor_reports (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    body jsonb NOT NULL
)"""


async def post_report(request: web.Request) -> web.Response:
    body = await request.text()
    # Outside an explicit transaction: the INSERT is its own transaction, committed before it answers.
    report_id = await request.app["pool"].fetchval("INSERT INTO anchor_reports (body) VALUES ($1) RETURNING id", body)
    return web.json_response({"id": report_id})


async def readyz(request: web.Request) -> web.Response:
    await request.app["pool"].fetchval("SELECT 1")
    return web.json_response({"status": "ready"})


def make_app(database_url: str) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)

    async def lifecycle(app: web.Application):
        app["pool"] = await asyncpg.create_pool(database_url)
        await app["pool"].execute(TABLE)
        yield
        await app["pool"].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/", post_report)
    app.router.add_post("/api/v1/statistics", post_report)
    app.router.add_get("/readyz", readyz)
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--database-url", required=True)
    args = ap.parse_args(argv)
    web.run_app(make_app(args.database_url), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

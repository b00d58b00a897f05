"""What ``serve`` does in the background: retention daily, partitions ahead,
pending rewrites.

Every worker of every instance runs a ``Maintenance`` task. Every
``maintenance_check_s`` (default 3600) and once at start it opens its own
connection and takes the session advisory lock ``MAINTENANCE_LOCK`` with
``pg_try_advisory_lock``: only one process of all those sharing the
database holds it, the others skip that check. The holder then

- makes the partitions ahead (``retention.ensure_partitions``);
- runs retention (``retention.run``) when the last finished run recorded in
  ``maintenance_runs`` is ``retention_every_s`` (default 86400) old or more,
  so it runs once a day however many workers and instances there are (and
  again after a run that did not finish);
- otherwise finishes what an earlier step left: months below the floor not
  dropped yet (a lock not granted), tables in ``pending_rewrites``
  (``datakeys.shred``: a rewrite deferred by an open older snapshot).

A failed check is logged and retried at the next one; the worker goes on
serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

import asyncpg

from collector.accounts import datakeys
from collector.config import Settings
from collector.lifecycle import retention
from collector.ops import log

MAINTENANCE_LOCK = 7_314_003  # pg_try_advisory_lock key (session level, on the task's own connection)


async def check(conn: asyncpg.Connection, settings: Settings, now: datetime | None = None) -> dict | None:
    """One maintenance check on ``conn`` (outside a transaction). Returns None
    when another process holds ``MAINTENANCE_LOCK``; else ``{"retention":
    <retention.run's answer> | None, "partitions_created", "partitions_dropped",
    "rewritten"}``."""
    now = now or datetime.now(timezone.utc)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MAINTENANCE_LOCK):
        return None
    try:
        last = await conn.fetchval("SELECT finished_at FROM maintenance_runs WHERE task = 'retention'")
        if last is None or now - last >= timedelta(seconds=settings.retention_every_s):
            done = await retention.run(conn, settings, now)
            return {"retention": done, "partitions_created": done["partitions_created"],
                    "partitions_dropped": done["raw"]["partitions_dropped"], "rewritten": done["rewritten"]}
        created = await retention.ensure_partitions(conn, settings.retention_days, now)
        dropped = await retention.drop_expired(conn)
        rewritten = await datakeys.shred(conn)
        return {"retention": None, "partitions_created": created, "partitions_dropped": dropped,
                "rewritten": rewritten}
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK)


class Maintenance:
    """The background task of one worker: ``start()``, ``stop()``."""

    def __init__(self, settings: Settings, database_url: str):
        self._settings = settings
        self._url = database_url
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self._url)
                try:
                    await check(conn, self._settings)
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged; the next check retries
                log.warning("maintenance_failed", error=type(exc).__name__)
            await asyncio.sleep(self._settings.maintenance_check_s)

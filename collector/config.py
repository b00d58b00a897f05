"""Settings of the collector, read from the environment (pydantic-settings).

Every setting is an environment variable; the names are the field names in
upper case with the ``COLLECTOR_`` prefix, except ``DATABASE_URL``.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Collector settings.

    Sizes are bytes, durations seconds. ``database_url`` empty means: start an
    embedded PostgreSQL under ``data_dir / "pg"``.
    """

    model_config = SettingsConfigDict(env_prefix="COLLECTOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    #: processes sharing the port (``collector serve --workers``); 0: one per CPU
    #: (``os.cpu_count()``). Measured (bench/loadgen.py --anchor, 2-core machine):
    #: 1 worker 0.95x the naive anchor, 2 workers 1.23x; one process leaves a core idle.
    workers: int = 0
    data_dir: Path = Path(".collector")
    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "COLLECTOR_DATABASE_URL")
    )
    admin_token: str = ""
    signing_key_file: Path | None = None
    receipt_issuer: str = "workspace-statistics-collector"
    max_body_bytes: int = 1024 * 1024  # a report, after decompression; a real record is ~12-16 KiB
    api_max_body_bytes: int = 64 * 1024  # an operator/workspace API JSON body, after decompression
    #: Bytes of reports a worker carries at once: each request reserves its Content-Length
    #: (max_body_bytes when compressed or chunked) while it waits, is read and parsed, then
    #: its kept data as JSON until answered; beyond: 503 overloaded before the body is read
    #: (issue 11: memory bounded by the bytes in flight, not by the queue).
    in_flight_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Deadline for reading a body (reports, the JSON API, console forms), seconds (Rocket.Chat's sender gives up after 20 s);
    #: beyond: 408 read_timeout and the connection closed.
    body_read_timeout_s: float = Field(default=20.0, gt=0)
    #: Reports a worker carries at once from admission to answer (token lookup, body read,
    #: gate, group commit); more wait for a slot (issue 15: under a storm, waiting costs no
    #: CPU, where answering 503 to a client that resends at once costs as much as serving).
    concurrent_reports: int = Field(default=256, ge=1)
    #: How long a report may wait for a slot, seconds; beyond: 503 overloaded + Retry-After.
    #: Within Rocket.Chat's 20 s send timeout, with time left to be served.
    admission_wait_s: float = Field(default=10.0, ge=0)
    #: Deadline for a request's line and headers, seconds: from a connection's start, or on a
    #: kept-alive connection from the first byte of its next request, until its headers are in;
    #: beyond: 408 read_timeout (nothing at all came: no answer) and the connection closed.
    #: 10 s: a real client sends its few hundred bytes of headers in one packet, well within
    #: it on any network, while a slowloris client (headers a byte at a time, or a connection
    #: opened and left silent) holds a connection 10 s instead of aiohttp's hour.
    header_read_timeout_s: float = Field(default=10.0, gt=0)
    #: An idle keep-alive connection is closed this long after its last answer, seconds
    #: (aiohttp's own default is 3630). 75 s, nginx's keepalive_timeout: longer than the 60 s
    #: after which nginx (and most proxies) drop their idle upstream connections, so that a
    #: proxy in front never sends a request on a connection the collector is just closing.
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    #: Kernel receive buffer of each connection (SO_RCVBUF, bytes; Linux doubles it for its
    #: bookkeeping): how much of a request arrives before the worker reads it, so how much
    #: it reads of a body before a handler can shed it (aiohttp reads on until 2 x 64 KiB are
    #: buffered, in reads of what the kernel holds), and the connection's TCP window. 64 KiB:
    #: a real report (~12-16 KiB) is within one window; 700 connections posting 1 MiB at once
    #: made one worker read ~190 KB of each ahead, against ~480 KB with the kernel's
    #: autotuning, and answer /healthz in 0.3 s against up to 1.1 s (tests/test_memory_bound.py).
    #: 0: the kernel's autotuning (up to net.ipv4.tcp_rmem's maximum).
    recv_buffer_bytes: int = Field(default=64 * 1024, ge=0)
    db_pool_min: int = 2
    db_pool_max: int = 8
    batch_max: int = 256  # reports written in one transaction (group commit)
    writers: int = 1  # group-commit writer tasks per worker process (more: smaller batches, more CPU per report)
    retry_after_s: int = 5
    # On SIGTERM/SIGINT/SIGHUP: how long requests in flight may take to finish (then the
    # writer drains for at most as long again).
    shutdown_grace_s: float = 30.0
    # Workspace token cache, evicted at once by revocation NOTIFYs; the TTL bounds only a
    # listener connection lost without asyncpg noticing. 0: no cache.
    auth_cache_ttl_s: float = 60.0
    future_tolerance_s: int = 3600  # a record dated further in the future is refused
    # A field outside the catalogue: "drop" (left out unread, listed in the answer and the
    # catalogue drift report; the rest is stored) or "refuse" (422 unknown_field).
    unknown_fields: Literal["drop", "refuse"] = "drop"
    stale_after_s: int = 48 * 3600
    console_session_ttl_s: int = 8 * 3600  # a console session ends this long after sign-in
    # Retention (collector.lifecycle.retention): raw report data, rollups, quarantine, in days.
    retention_days: int = Field(default=400, ge=1)  # a year plus a month to re-run billing
    rollup_retention_days: int = Field(default=3650, ge=1)  # billing records
    quarantine_retention_days: int = Field(default=90, ge=1)
    retention_every_s: int = Field(default=86400, ge=60)  # serve runs retention when the last run is this old
    maintenance_check_s: int = Field(default=3600, ge=10)  # how often each serve worker checks (one at a time)
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _bounds_fit(self) -> "Settings":
        """A report reserves up to ``max_body_bytes`` of ``in_flight_max_bytes``
        (``Ingest.reserve``): a smaller in-flight bound would shed every compressed
        or large report with a 503 that no retry can pass. Raises ValueError."""
        if self.in_flight_max_bytes < self.max_body_bytes:
            raise ValueError("COLLECTOR_IN_FLIGHT_MAX_BYTES must be at least COLLECTOR_MAX_BODY_BYTES")
        return self

    @property
    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or (self.data_dir / "receipt-signing-key.pem")

    @property
    def resolved_workers(self) -> int:
        """The number of worker processes ``serve`` starts: ``workers``, or one per CPU when 0."""
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)

"""Prometheus metrics (prometheus-client). No label ever holds a workspace id,
a token or any value from a report: labels are outcome/reason codes, route
names and catalogue violation reasons only.

Several worker processes (``collector serve --workers N``): prometheus-client's
multiprocess mode, switched on by ``PROMETHEUS_MULTIPROC_DIR`` (set by the
parent process); ``/metrics`` of any worker then reports the sum over all
workers (the queue gauge: the sum over live workers).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REPORTS = Counter(
    "collector_reports",
    "Reports by outcome (accepted, duplicate, refused, shed) and reason.",
    ["outcome", "reason"],
)
VIOLATIONS = Counter(
    "collector_schema_violations",
    "Schema violations found in refused reports, by violation reason code.",
    ["reason"],
)
REQUEST_SECONDS = Histogram(
    "collector_http_request_duration_seconds",
    "HTTP request latency by route and status class.",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITE_QUEUE = Gauge(
    "collector_write_queue_depth", "Reports waiting for the group-commit writer.", multiprocess_mode="livesum"
)
BATCH_SIZE = Histogram(
    "collector_write_batch_size",
    "Reports written per database transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

TOKEN_LOOKUPS = Counter(
    "collector_token_lookups", "Bearer tokens looked up in the database (not served from the token cache)."
)
TOKEN_CACHE_ON = Gauge(
    "collector_token_cache_on",
    "1 while the workspace token cache is on; 0 while suspended (its revocation listener is not listening).",
    multiprocess_mode="livemin",
)
UNREADABLE_REQUESTS = Counter(
    "collector_unreadable_requests",
    "Requests whose request line or headers could not be parsed (too long, too many, not HTTP), by status.",
    ["status"],
)
HEADER_TIMEOUTS = Counter(
    "collector_header_read_timeouts",
    "Connections closed because a request's headers were not in within COLLECTOR_HEADER_READ_TIMEOUT_S: "
    "'partial' (some bytes came: answered 408) or 'idle' (none came).",
    ["kind"],
)
LISTENER_RECONNECTS = Counter(
    "collector_revocation_listener_reconnects", "Attempts to listen again for token revocations after a loss."
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of all metrics and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

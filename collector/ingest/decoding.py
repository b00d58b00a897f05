"""Body limits and decoding of a posted report.

Rocket.Chat posts ``Content-Type: application/json``, uncompressed
(``sendUsageReport.ts``); we also take ``Content-Encoding: gzip``,
``deflate``, ``br`` (brotli) or ``zstd`` (every encoding aiohttp decodes, so
that any other is refused by us, clearly, with 415). aiohttp decompresses the body itself, in bounded chunks, and its
``client_max_size`` (``COLLECTOR_MAX_BODY_BYTES``) caps the *decompressed*
size, so a compression bomb stops at the cap. JSON is parsed with orjson.

Every failure raises ``Refusal`` with a reason from ``collector.ingest.outcomes``;
messages name what was wrong, never a part of the body.
"""

from __future__ import annotations

import asyncio
import json

import orjson
from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError

from collector.ingest.outcomes import Reason, Refusal

ACCEPTED_ENCODINGS = {"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"}


async def read_body(request: web.Request, limit: int | None = None, timeout: float | None = None) -> bytes:
    """Read the decompressed JSON body of a request: THE body reader of every
    endpoint that reads JSON (reports here; the operator and workspace JSON API
    through ``collector.http.common.parse_body``), so that every endpoint
    answers a bad body the same way.

    ``limit``: the cap in bytes after decompression (default: the
    application's ``client_max_size``, ``COLLECTOR_MAX_BODY_BYTES``);
    ``timeout``: seconds the whole body may take to arrive
    (``COLLECTOR_BODY_READ_TIMEOUT_S``; None: no deadline). See ``read_capped``.

    Raises Refusal: UNSUPPORTED_MEDIA_TYPE (not ``application/json``, or a
    charset other than utf-8), UNSUPPORTED_ENCODING (a Content-Encoding other
    than gzip/deflate/br/zstd), and those of ``read_capped``.
    """
    if request.content_type != "application/json":
        raise Refusal(Reason.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
    charset = request.charset
    if charset and charset.lower() not in ("utf-8", "utf8"):
        raise Refusal(Reason.UNSUPPORTED_MEDIA_TYPE, "the only charset accepted is utf-8")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        raise Refusal(
            Reason.UNSUPPORTED_ENCODING, "Content-Encoding must be gzip, deflate, br, zstd or none"
        )
    return await read_capped(request, request.client_max_size if limit is None else limit, timeout)


async def read_capped(request: web.Request, limit: int, timeout: float | None) -> bytes:
    """The request's body after decompression, read chunk by chunk (aiohttp
    decompresses in bounded chunks, so a compression bomb stops at ``limit``
    bytes) within ``timeout`` seconds: the reader under every body of every
    endpoint (JSON here, console forms in ``collector.console.common``).

    Raises Refusal: TOO_LARGE (over ``limit``, announced or after
    decompression), MALFORMED_BODY (a corrupt compressed stream or a truncated
    body), READ_TIMEOUT (not all there within ``timeout``), CLIENT_DISCONNECTED
    (the client closed or reset its connection while sending: a client's
    fault, never ``database_unavailable``).
    """
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(Reason.TOO_LARGE, f"the body is larger than {limit} bytes")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise Refusal(Reason.TOO_LARGE, f"the body (after decompression) is larger than {limit} bytes")
    except (PayloadEncodingError, RequestPayloadError):
        raise Refusal(Reason.MALFORMED_BODY, f"the body is not valid {encoding or 'request'} data") from None
    except TimeoutError:
        raise Refusal(Reason.READ_TIMEOUT, f"the body did not arrive within {timeout:g} s") from None
    except ConnectionError:  # ConnectionResetError and aiohttp's ClientConnectionResetError among them
        raise Refusal(Reason.CLIENT_DISCONNECTED, "the connection closed before the body was complete") from None
    return bytes(body)


def parse_json(body: bytes) -> object:
    """Parse a JSON document with orjson.

    orjson reads an integer literal beyond 64 bits as a float, and fails on a
    number beyond a double's range (``10^5000``): such a body is read again
    by ``parse_exact``, so that the privacy gate names the number's path
    (``number_too_large``) rather than the body being refused whole.

    Raises Refusal(MALFORMED_BODY) with the line and column of the error
    (the body's text is not quoted) for invalid JSON or invalid UTF-8.
    """
    if not body:
        raise Refusal(Reason.MALFORMED_BODY, "the body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if exc.lineno else ""
        error = Refusal(Reason.MALFORMED_BODY, f"the body is not valid JSON{where}")
        if "number" not in exc.msg:
            raise error from None
    return parse_exact(body, error)


#: Stand-ins for integer literals beyond 64 bits: still integers, still beyond
#: 2^53 - 1 (so the gate refuses them ``number_too_large`` where it keeps the
#: value), within what orjson writes (so ``parse_exact`` can check the document).
_HUGE, _HUGE_NEGATIVE = 2**64 - 1, -(2**63)
#: Every digit to "0", every other byte to " " (``has_long_integers``).
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))


def _exact_int(text: str) -> int:
    """``parse_int`` of ``parse_exact``: the literal's value, clamped to the stand-ins.

    CPU is bounded: a literal of more than 20 digits is never converted (Python's
    int() of n digits costs O(n^2); it is capped at 4300 digits anyway)."""
    negative = text[0] == "-"
    if len(text) - negative > 20:
        return _HUGE_NEGATIVE if negative else _HUGE
    return max(_HUGE_NEGATIVE, min(_HUGE, int(text)))


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def has_long_integers(body: bytes) -> bool:
    """True when ``body`` holds a run of 20 digits or more: maybe an integer literal
    orjson read as a float (beyond 64 bits). ~8 us for 12 KB: asked only for
    refused reports, never on the accepted path."""
    return b"0" * 20 in body.translate(_DIGITS_ONLY)


def parse_exact(body: bytes, error: Refusal | None = None) -> object:
    """Parse ``body`` with the standard library, integers exactly (beyond 64 bits:
    the stand-ins ``_HUGE``/``_HUGE_NEGATIVE``), as strict as orjson: UTF-8 only,
    no NaN/Infinity, no lone surrogate.

    Raises ``error`` (default: Refusal(MALFORMED_BODY)) when it is not valid JSON.
    """
    error = error or Refusal(Reason.MALFORMED_BODY, "the body is not valid JSON")
    try:
        doc = json.loads(body.decode("utf-8"), parse_int=_exact_int, parse_constant=_no_constant)
        orjson.dumps(doc)  # refuses lone surrogates, as orjson.loads does
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        raise error from None
    return doc

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

import orjson
from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError

from collector.ingest.outcomes import Reason, Refusal

ACCEPTED_ENCODINGS = {"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"}


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """Read the decompressed JSON body of a request: THE body reader of every
    endpoint that reads one (reports here; the operator and workspace JSON API
    through ``collector.http.common.parse_body``), so that every endpoint
    answers a bad body the same way.

    ``limit``: the cap in bytes after decompression (default: the
    application's ``client_max_size``, ``COLLECTOR_MAX_BODY_BYTES``). The body
    is read chunk by chunk (aiohttp decompresses in bounded chunks), so a
    compression bomb stops at the cap.

    Raises Refusal: UNSUPPORTED_MEDIA_TYPE (not ``application/json``, or a
    charset other than utf-8), UNSUPPORTED_ENCODING (a Content-Encoding other
    than gzip/deflate/br/zstd), TOO_LARGE (over ``limit``, compressed or not),
    MALFORMED_BODY (a corrupt compressed stream or a truncated body).
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
    if limit is None:
        limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(Reason.TOO_LARGE, f"the body is larger than {limit} bytes")
    body = bytearray()
    try:
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > limit:
                raise Refusal(Reason.TOO_LARGE, f"the body (after decompression) is larger than {limit} bytes")
    except (PayloadEncodingError, RequestPayloadError):
        raise Refusal(Reason.MALFORMED_BODY, f"the body is not valid {encoding or 'request'} data") from None
    return bytes(body)


def parse_json(body: bytes) -> object:
    """Parse a JSON document with orjson.

    Raises Refusal(MALFORMED_BODY) with the line and column of the error
    (the body's text is not quoted) for invalid JSON or invalid UTF-8.
    """
    if not body:
        raise Refusal(Reason.MALFORMED_BODY, "the body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if exc.lineno else ""
        raise Refusal(Reason.MALFORMED_BODY, f"the body is not valid JSON{where}") from None

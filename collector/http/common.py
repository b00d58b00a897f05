"""Shared pieces of the HTTP layer: app state, JSON answers, auth, body models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from collector.accounts import Principal, PrincipalCache, Unauthorized, datakeys, tokens
from collector.config import Settings
from collector.ingest import Ingest, ReceiptSigner, ReportWriter, decoding, outcomes


@dataclass
class State:
    settings: Settings
    pool: asyncpg.Pool
    signer: ReceiptSigner
    writer: ReportWriter
    principals: PrincipalCache
    ingest: Ingest
    keyring: datakeys.Keyring | None = None  # the writer's data keys (evicted with the tokens)


STATE = web.AppKey("state", State)


def state(request: web.Request) -> State:
    return request.app[STATE]


def json_response(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON answer serialised with orjson (UUIDs and datetimes as strings)."""
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def json_body(body: bytes, status: int = 200) -> web.Response:
    """A JSON answer whose body is already serialised (UTF-8 JSON bytes, sent as they are)."""
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(
    status: int, error: str, detail: str, violations: list[dict] | None = None, retry_after: int | None = None
) -> web.Response:
    """An error answer: ``{"error": code, "detail": sentence[, "violations": [...]]}``.

    Retryable answers (429/503) carry ``Retry-After`` in seconds.
    """
    body: dict = {"error": error, "detail": detail}
    if violations is not None:
        body["violations"] = violations
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="collector"'}
    return json_response(body, status, headers)


async def principal(request: web.Request) -> Principal:
    """Authenticate the request's bearer token. Raises Unauthorized."""
    st = state(request)
    token = tokens.bearer(request.headers.get("Authorization"))
    return await tokens.authenticate(st.pool, token, st.settings.admin_token, st.principals)


async def operator(request: web.Request, role: str) -> Principal:
    """Authenticate and require an operator token with ``role``.

    Raises Unauthorized, or auth.Forbidden (-> 403) for a token without the role.
    """
    p = await principal(request)
    p.require_role(role)
    return p


M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    def __init__(self, status: int, error: str, detail: str, violations: list[dict] | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.violations = status, error, detail, violations


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Parse a small JSON request body into ``model`` (strict).

    The body is read by the one body reader of every endpoint
    (``collector.ingest.decoding.read_body``), capped at
    ``COLLECTOR_API_MAX_BODY_BYTES`` after decompression, within
    ``COLLECTOR_BODY_READ_TIMEOUT_S``. Raises BadRequest:
    415 ``unsupported_media_type`` / ``unsupported_encoding``, 413 ``too_large``,
    408 ``read_timeout``, 400 ``malformed_body`` (not JSON, corrupt compressed
    data) or ``client_disconnected``, 422 with
    ``violations`` (path and reason, never the value) when it does not fit.
    """
    try:
        settings = state(request).settings
        raw = decoding.parse_json(await decoding.read_body(request, settings.api_max_body_bytes,
                                                           settings.body_read_timeout_s))
    except outcomes.Refusal as refusal:
        raise BadRequest(refusal.outcome.status, refusal.reason.value, refusal.detail) from None
    return _validate(model, raw, strict=True, what="the request body")


def parse_query(request: web.Request, model: type[M]) -> M:
    """Parse the query string into ``model`` (lax: query values are text).

    Raises BadRequest(400) with ``violations`` naming the parameter, never its value.
    """
    return _validate(model, dict(request.query), strict=False, what="the query", status=400)


def _validate(model: type[M], raw: object, *, strict: bool, what: str, status: int = 422) -> M:
    try:
        return model.model_validate(raw, strict=strict)
    except ValidationError as exc:
        violations = [
            {"path": ".".join(str(p) for p in e["loc"]) or "$", "reason": e["type"], "message": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        raise BadRequest(status, "invalid_request", f"{what} does not fit", violations) from None


__all__ = ["State", "STATE", "state", "json_response", "json_body", "error_response", "principal", "operator",
           "parse_body", "parse_query", "BadRequest", "Unauthorized"]

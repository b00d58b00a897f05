"""What every console page shares: its dependencies, who is signed in, CSRF
tokens, rendering, redirects and the errors a page can end in.

CSRF: every form carries a token made with itsdangerous
(``URLSafeTimedSerializer``, HMAC-SHA1 over a timestamped payload, keyed by
the collector secret ``console_csrf`` kept in the database, so every worker
and every instance agrees). The payload binds the token to the browser: the
SHA-256 of the session id when signed in (the session cookie is HttpOnly:
a page can embed the token without exposing the session), else of a random
pre-session cookie (``collector_console_pre``) set with the sign-in form (the
"signed double-submit cookie" of the OWASP CSRF cheat sheet). A POST is
accepted only with a token that verifies, is younger than its session (or an
hour, before sign-in) and is bound to the cookie the request carries. The
cookies are SameSite=Strict too, so a cross-site form post does not carry
them at all; the token is the second, independent lock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import aiohttp_jinja2
import aiohttp_session
from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from collector.accounts import Forbidden, Principal
from collector.config import Settings
from collector.ingest import decoding, load_secret, outcomes

if TYPE_CHECKING:
    import asyncpg

SESSION_COOKIE = "collector_console"
PRE_COOKIE = "collector_console_pre"
PRE_TTL_S = 3600
PREFIX = "/console"


@dataclass
class Deps:
    """What the console needs from the running service: the settings, and at
    startup (``start``) the database pool and the CSRF key."""

    settings: Settings
    pool: "asyncpg.Pool | None" = None
    csrf_secret: bytes = b""

    async def start(self, pool: "asyncpg.Pool") -> None:
        """Hand the console the pool; load (or make, once) its CSRF key."""
        async with pool.acquire() as conn:
            self.csrf_secret = await load_secret(conn, "console_csrf")
        self.pool = pool


DEPS = web.AppKey("console_deps", Deps)
#: The pre-session value of this request (read from its cookie or made now), and one made now (to set).
PRE_VALUE = web.RequestKey("console_pre", str)
PRE_NEW = web.RequestKey("console_pre_new", str)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def pool(request: web.Request) -> "asyncpg.Pool":
    p = deps(request).pool
    if p is None:  # before startup finished: a retryable fault (503)
        raise ConnectionError("the console has no database yet")
    return p


def is_tls(request: web.Request) -> bool:
    """Did the request come over TLS: to this server, or to a proxy in front
    that says so (``X-Forwarded-Proto: https``; trusting it can only add the
    Secure flag, which a client can only use to lose its own cookie)."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# -- the errors a page ends in (rendered by the ``pages`` middleware of ``app``) ----------------

class NotSignedIn(Exception):
    """No valid session: GET pages redirect to the sign-in form, others answer 401."""


class NoRole(Exception):
    """Signed in, without the role the page needs (403 page)."""

    def __init__(self, role: str, principal: Principal):
        super().__init__(role)
        self.role, self.principal = role, principal


class NotFound(Exception):
    """No such page or workspace (404 page)."""


class Problem(Exception):
    """A request the page cannot answer: ``status`` and a sentence (never a value sent)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class CsrfFailed(Exception):
    """A form without a valid CSRF token (403 page: reload the form)."""


# -- who is signed in ------------------------------------------------------------------------

async def current(request: web.Request) -> Principal | None:
    """The signed-in operator (roles as their token has them now), or None."""
    session = await aiohttp_session.get_session(request)
    return session.get("principal")


async def require(request: web.Request, role: str | None = None) -> Principal:
    """The signed-in operator holding ``role`` (admin holds every role; None:
    any operator). Raises NotSignedIn, NoRole."""
    who = await current(request)
    if who is None:
        raise NotSignedIn()
    if role is not None:
        try:
            who.require_role(role)
        except Forbidden:
            raise NoRole(role, who) from None
    return who


def has_role(who: Principal | None, role: str) -> bool:
    return who is not None and bool({role, "admin"} & who.roles)


# -- CSRF ------------------------------------------------------------------------------------

def _serializer(request: web.Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(deps(request).csrf_secret, salt="collector-console-csrf")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _binding(request: web.Request, make: bool) -> tuple[str, int] | None:
    """What a CSRF token is bound to, and its lifetime: the session (signed
    in), else the pre-session cookie (made when ``make``; set on the answer by
    ``render``). None: no binding (an anonymous POST without the cookie)."""
    session = await aiohttp_session.get_session(request)
    if session.get("principal") is not None and session.identity:
        return "s:" + _digest(session.identity), deps(request).settings.console_session_ttl_s
    pre = request.get(PRE_VALUE) or request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) > 100:
        if not make:
            return None
        pre = request[PRE_NEW] = request[PRE_VALUE] = secrets.token_urlsafe(32)
    return "p:" + _digest(pre), PRE_TTL_S


async def csrf_token(request: web.Request) -> str:
    """The CSRF token for the forms of this page."""
    bound = await _binding(request, make=True)
    assert bound is not None
    return _serializer(request).dumps(bound[0])


async def check_csrf(request: web.Request, form) -> None:
    """Raise CsrfFailed unless ``form["csrf"]`` is a token of this browser's
    session (or pre-session cookie), signed by this collector, within its lifetime."""
    bound = await _binding(request, make=False)
    token = form.get("csrf", "")
    if bound is None or not isinstance(token, str) or not token:
        raise CsrfFailed()
    try:
        payload = _serializer(request).loads(token, max_age=bound[1])
    except BadSignature:  # SignatureExpired is one
        raise CsrfFailed() from None
    if not isinstance(payload, str) or not hmac.compare_digest(payload, bound[0]):
        raise CsrfFailed()


# -- forms -------------------------------------------------------------------------------------

FORM_TYPE = "application/x-www-form-urlencoded"
FORM_FIELDS_MAX = 20


async def read_form(request: web.Request) -> dict[str, str]:
    """The posted form as ``{name: value}`` (the last value of a repeated
    name), read by the reader of every body (``collector.ingest.decoding.read_capped``:
    chunk by chunk after decompression, capped at ``COLLECTOR_API_MAX_BODY_BYTES``,
    within ``COLLECTOR_BODY_READ_TIMEOUT_S``). Raises Problem: 415 (not
    ``application/x-www-form-urlencoded``), 413 (over the cap), 408 (too slow),
    400 (corrupt compressed data, a truncated body, the connection closed
    mid-body, not UTF-8, more than FORM_FIELDS_MAX fields)."""
    if request.content_type != FORM_TYPE:
        raise Problem(415, f"A form is sent as {FORM_TYPE}.")
    settings = deps(request).settings
    try:
        body = await decoding.read_capped(request, settings.api_max_body_bytes, settings.body_read_timeout_s)
    except outcomes.Refusal as refusal:
        if refusal.reason is outcomes.Reason.TOO_LARGE:
            raise Problem(413, f"The form is larger than {settings.api_max_body_bytes} bytes.") from None
        if refusal.reason is outcomes.Reason.READ_TIMEOUT:
            raise Problem(408, "The form did not arrive in time.") from None
        raise Problem(400, "The form could not be read.") from None
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                              max_num_fields=FORM_FIELDS_MAX))
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "The form could not be read.") from None


# -- answers -----------------------------------------------------------------------------------

def redirect(location: str) -> web.Response:
    """303 See Other to a console path (never an outside address)."""
    return web.Response(status=303, headers={"Location": location})


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a console path (``/console/...``, no scheme, no
    ``//``, no backslash), else None: sign-in never redirects off the console."""
    if (not target or not target.startswith(PREFIX + "/") or "//" in target or "\\" in target
            or any(ord(c) < 33 for c in target)):
        return None
    return target


def nav(who: Principal | None) -> list[tuple[str, str]]:
    """The menu for ``who``: (path, name) of the pages their roles open."""
    if who is None:
        return []
    items = []
    if has_role(who, "compliance"):
        items += [(PREFIX + "/compliance", "Compliance"), (PREFIX + "/quarantine", "Quarantine")]
    if has_role(who, "billing"):
        items.append((PREFIX + "/billing", "Billing"))
    items.append((PREFIX + "/catalogue", "Catalogue"))
    return items


def home(who: Principal) -> str:
    """Where a signed-in operator lands: the first page of their menu."""
    return nav(who)[0][0]


async def render(request: web.Request, template: str, context: dict, status: int = 200,
                 who: Principal | None = None, signed_out: bool = False) -> web.Response:
    """The page ``template`` with ``context`` and what every page shows (who
    is signed in, the menu, a CSRF token for its forms); sets the
    pre-session cookie when the page made one. ``signed_out``: render as
    anonymous without asking the session (the error pages of a failing request)."""
    if who is None and not signed_out:
        who = await current(request)
    ctx = {"who": who, "nav": nav(who), "path": request.path, "csrf": "" if signed_out else await csrf_token(request),
           **context}
    response = aiohttp_jinja2.render_template(template, request, ctx, status=status)
    if request.get(PRE_NEW):
        response.set_cookie(PRE_COOKIE, request[PRE_NEW], max_age=PRE_TTL_S, path=PREFIX + "/",
                            httponly=True, samesite="Strict", secure=is_tls(request))
    return response

"""Signing in and out of the console, and the session store.

Sessions: aiohttp-session (the aio-libs session middleware: ``get_session``,
``new_session``, the session's life in a request) with a store of ours,
``DatabaseSessionStorage``, over ``collector.accounts.sessions``: the cookie
holds only a random session id; the database holds its hash, the operator
token's hash and the expiry. Chosen over aiohttp-session's encrypted-cookie
store because a session must end when its token is revoked and when the
operator signs out, on every worker at once: a server-side row that every
request joins to the token does that, where a self-contained cookie would
stay valid until it expires.

The cookie ``collector_console``: ``HttpOnly``, ``SameSite=Strict``,
``Path=/console/``, ``Max-Age`` = ``COLLECTOR_CONSOLE_SESSION_TTL_S``
(default 8 h, not renewed: a session ends that long after sign-in), and
``Secure`` when the request came over TLS (``common.is_tls``).

Routes: ``GET /console/`` (the sign-in form, or the signed-in operator's
first page), ``POST /console/sign-in`` (form: ``token``, ``csrf``,
``next``), ``POST /console/sign-out`` (form: ``csrf``).
"""

from __future__ import annotations

import aiohttp_session
from aiohttp import web

from collector.accounts import Unauthorized, sessions, tokens
from collector.console import common
from collector.console.common import PREFIX, SESSION_COOKIE

routes = web.RouteTableDef()


class DatabaseSessionStorage(aiohttp_session.AbstractStorage):
    """aiohttp-session's storage over ``collector.accounts.sessions``.

    A loaded session's mapping holds ``principal`` (the operator, roles as
    their token has them now). To sign in, a handler makes ``new_session``
    and sets ``token`` (the operator token, already authenticated): saving
    it stores a new session row and sets the cookie; the token itself goes
    no further than this request. ``invalidate()`` signs out (row deleted,
    cookie removed).
    """

    def __init__(self, deps: common.Deps):
        super().__init__(cookie_name=SESSION_COOKIE, max_age=deps.settings.console_session_ttl_s,
                         path=PREFIX + "/", httponly=True, samesite="Strict")
        self._deps = deps

    async def load_session(self, request: web.Request) -> aiohttp_session.Session:
        session_id = self.load_cookie(request)
        found = None
        if session_id:
            found = await sessions.lookup(common.pool(request), session_id, self._deps.settings.admin_token)
        if found is None:
            empty = aiohttp_session.Session(None, data=None, new=True, max_age=None)
            if session_id:
                empty.invalidate()  # an unknown, expired or revoked session: remove its cookie
            return empty
        return aiohttp_session.Session(session_id, data={"created": None, "session": {"principal": found.principal}},
                                       new=False, max_age=None)

    async def save_session(self, request: web.Request, response: web.StreamResponse,
                           session: aiohttp_session.Session) -> None:
        p = common.pool(request)
        if "token" not in session:  # signed out, or a stale cookie
            if session.identity:
                await sessions.end(p, session.identity)
            response.del_cookie(self.cookie_name, path=PREFIX + "/")
            return
        session_id, _ = await sessions.create(p, session["token"], self.max_age or 0)
        response.set_cookie(self.cookie_name, session_id, max_age=self.max_age, path=PREFIX + "/",
                            httponly=True, samesite="Strict", secure=common.is_tls(request))


@routes.get("/")
async def start(request: web.Request) -> web.Response:
    """The sign-in form, or (signed in) a redirect to the operator's first page."""
    who = await common.current(request)
    if who is not None:
        return common.redirect(common.home(who))
    return await _form(request, 200)


async def _form(request: web.Request, status: int, problem: str | None = None, next_: str | None = None) -> web.Response:
    return await common.render(request, "signin.html", {
        "title": "Sign in", "problem": problem,
        "next": common.safe_next(next_ if next_ is not None else request.query.get("next")) or ""}, status=status)


@routes.post("/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    """Check the CSRF token and the operator token; start a session; go on to
    ``next`` (a console path) or the operator's first page. A token that is
    not a valid operator token (unknown, revoked, a workspace token) gets
    the form again, 401, with one message for all."""
    form = await common.read_form(request)
    await common.check_csrf(request, form)
    token = form.get("token", "")
    next_ = form.get("next", "") if isinstance(form.get("next", ""), str) else ""
    who = None
    if isinstance(token, str) and token.strip():
        try:
            who = await tokens.authenticate(common.pool(request), token.strip(),
                                            common.deps(request).settings.admin_token)
        except Unauthorized:
            who = None
    if who is None or who.kind != "operator":
        return await _form(request, 401, "That is not a valid operator token.", next_)
    old = await aiohttp_session.get_session(request)
    if old.identity:
        await sessions.end(common.pool(request), old.identity)  # a new session id at every sign-in
    session = await aiohttp_session.new_session(request)
    session["token"] = token.strip()
    response = common.redirect(common.safe_next(next_) or common.home(who))
    response.del_cookie(common.PRE_COOKIE, path=PREFIX + "/")  # the pre-session cookie has done its work
    return response


@routes.post("/sign-out")
async def sign_out(request: web.Request) -> web.Response:
    """End the session (its row and its cookie) and show the sign-in form's address."""
    if await common.current(request) is None:  # nothing to end (a stale cookie is removed on load)
        return common.redirect(PREFIX + "/")
    form = await common.read_form(request)
    await common.check_csrf(request, form)
    session = await aiohttp_session.get_session(request)
    session.invalidate()
    return common.redirect(PREFIX + "/")

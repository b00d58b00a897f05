"""Assembly of the console: the sub-application, its middlewares, templates
and error pages.

Rendering: aiohttp-jinja2 (Jinja2 with autoescaping on: every value from the
database, a label included, is escaped in HTML text and attributes). No
JavaScript: forms and links, charts drawn as SVG on the server
(``collector.console.charts``), one stylesheet under ``/console/static/``.

Every answer carries ``Content-Security-Policy`` (``default-src 'none'``:
styles and images from the console itself, no script at all, forms only to
the console, no framing), ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer`` and, for pages, ``Cache-Control: no-store``
(a page with workspace data is not kept by the browser or a proxy).

Error pages (``pages`` middleware): no session -> GET: 303 to the sign-in
form with ``next`` (no data in the answer); other methods: 401 page.
Without the page's role -> 403 page naming the role it needs. Unknown page
or workspace -> 404. A form without a valid CSRF token -> 403. Database
unreachable -> 503 page with ``Retry-After``. A bug -> 500 page (logged).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import aiohttp_session
import jinja2
from aiohttp import web

from collector.accounts import UnknownWorkspace
from collector.config import Settings
from collector.console import auth, common, money, records, views
from collector.console.common import DEPS, PREFIX, Deps
from collector.ops import UNAVAILABLE_ERRORS, log

HERE = Path(__file__).parent

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none';"
       " base-uri 'none'")


def _number(value) -> str:
    """A count with thousands separators; None -> an em dash (unknown)."""
    if value is None:
        return "\u2014"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _max(value) -> str:
    """A limit's max: negative -> 'unlimited'."""
    if value is None:
        return "\u2014"
    return "unlimited" if value < 0 else f"{value:,}"


def _when(value) -> str:
    """A time as ``YYYY-MM-DD HH:MM UTC`` (ISO text or datetime); a date as is; None -> em dash."""
    if value is None or value == "":
        return "\u2014"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _query(pairs, **changes) -> str:
    """A query string from ``pairs`` (list of (name, value)) with ``changes`` replacing names."""
    kept = [(k, v) for k, v in pairs if k not in changes]
    return urlencode(kept + [(k, v) for k, v in changes.items() if v is not None])


@web.middleware
async def pages(request: web.Request, handler) -> web.StreamResponse:
    """Turn what a page ends in into an HTML answer, and set the security headers."""
    try:
        response = await handler(request)
    except common.NotSignedIn:
        if request.method == "GET":
            response = common.redirect(f"{PREFIX}/?next=" + quote(request.path_qs, safe="/"))
        else:
            response = await _error(request, 401, "Sign in first", "This needs a signed-in operator.")
        if common.SESSION_COOKIE in request.cookies:  # unknown, expired, signed out or revoked: remove it
            response.del_cookie(common.SESSION_COOKIE, path=PREFIX + "/")
    except common.NoRole as exc:
        have = ", ".join(sorted(exc.principal.roles)) or "none"
        response = await _error(request, 403, "Not for your role",
                                f"This page needs the '{exc.role}' role (or admin); your token has: {have}.")
    except (common.NotFound, UnknownWorkspace, web.HTTPNotFound):
        response = await _error(request, 404, "Not found", "There is no such page or workspace.")
    except common.CsrfFailed:
        response = await _error(request, 403, "Form expired",
                                "The form was not sent from this console or is too old. Go back, reload it and try again.")
    except common.Problem as exc:
        response = await _error(request, exc.status, "Cannot show this", exc.message)
    except web.HTTPMethodNotAllowed as exc:
        response = await _error(request, 405, "Not allowed", "This address does not take that method.")
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
    except web.HTTPException:
        raise
    except UNAVAILABLE_ERRORS as exc:
        log.warning("console_database_unavailable", error=type(exc).__name__)
        response = await _error(request, 503, "Database unavailable", "The database does not answer; retry in a moment.",
                                anonymous=True)
        response.headers["Retry-After"] = str(common.deps(request).settings.retry_after_s)
    except Exception as exc:  # a bug: an HTML page, logged (never a value)
        log.exception("console_request_failed", path=request.match_info.route.resource.canonical
                      if request.match_info.route.resource else "unmatched", error=type(exc).__name__)
        response = await _error(request, 500, "Something failed", "The console failed on this request; it is logged.",
                                anonymous=True)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith(PREFIX + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _error(request: web.Request, status: int, title: str, message: str, anonymous: bool = False) -> web.Response:
    who = None
    if not anonymous:
        try:
            who = await common.current(request)
        except UNAVAILABLE_ERRORS:
            anonymous = True
    return await common.render(request, "error.html", {"title": title, "message": message, "status": status},
                               status=status, who=who, signed_out=anonymous or who is None)


def make_app(settings: Settings) -> tuple[web.Application, Deps]:
    """The console sub-application (mount at ``/console/``) and its ``Deps``
    (``await deps.start(pool)`` once the service has its pool)."""
    deps = Deps(settings)
    app = web.Application(middlewares=[pages, aiohttp_session.session_middleware(auth.DatabaseSessionStorage(deps))])
    app[DEPS] = deps
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
        default_helpers=False,
        filters={"number": _number, "max": _max, "when": _when, "query": _query},
    )
    app.router.add_routes(auth.routes)
    app.router.add_routes(views.routes)
    app.router.add_routes(money.routes)
    app.router.add_routes(records.routes)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return app, deps

"""The operator console at ``/console/``: server-rendered pages for the
billing and compliance people (issue 13). Top layer, beside ``http``.

Public surface:
- ``make_app(settings) -> (web.Application, Deps)``: the console as an
  aiohttp sub-application (mounted by ``collector.http.app`` at
  ``/console/``); ``Deps.start(pool)`` at startup hands it the database.
- ``Deps``: what the console needs from the running service.

Inside: ``app`` (assembly, middlewares, rendering, error pages), ``auth``
(sign-in, sessions through aiohttp-session with a database store, CSRF),
``views`` (compliance board, workspace page and its admin edits), ``money``
(billing page and CSV), ``records`` (quarantine, catalogue), ``charts``
(server-drawn SVG), ``templates/`` (Jinja2, autoescaped), ``static/``.
"""

from collector.console.app import Deps, make_app

__all__ = ["Deps", "make_app"]

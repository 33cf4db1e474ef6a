"""Jinja2 pages: autoescaped, translated (gettext), with won and Seoul-time filters."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

import web as web_assets

from . import i18n
from .db import utcnow
from .keys import AppKeys, state


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(web_assets.TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    # a method the i18n extension adds to the environment, which Jinja2's types do not declare
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    tz = app[AppKeys.config].tz
    env.filters["won"] = lambda amount: i18n.format_won(int(amount))
    env.filters["localtime"] = lambda moment, fmt="medium": i18n.format_time(moment, tz, fmt)
    env.filters["pick"] = lambda obj, field: i18n.pick(obj, field)
    env.globals["static"] = lambda path: f"/static/{path}"
    # the server's time as the page is made: the pages count down on it, not on the device's own clock
    env.globals["server_now"] = lambda: utcnow().isoformat(timespec="milliseconds")


def base_context(request: web.Request) -> dict[str, Any]:
    st = state(request)

    def lang_url(lang: str) -> str:
        """This page in another language, keeping its other query parameters."""
        return str(request.rel_url.update_query(lang=lang))

    return {
        "lang_url": lang_url,
        "user": st.user,
        "csrf_token": st.session.csrf if st.session else "",
        "locale": st.locale,
        "path": request.path,
        "config": request.app[AppKeys.config],
    }


def render(request: web.Request, template: str, context: Mapping[str, Any], status: int = 200) -> web.Response:
    ctx = base_context(request)
    ctx.update(context)
    resp = aiohttp_jinja2.render_template(template, request, ctx)
    resp.set_status(status)
    return resp


PageHandler = Callable[[web.Request], Awaitable[Mapping[str, Any]]]


def page(template: str) -> Callable[[PageHandler], Callable[[web.Request], Awaitable[web.Response]]]:
    """A handler that returns its template's context."""

    def deco(fn: PageHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> web.Response:
            return render(request, template, await fn(request))

        return handler

    return deco

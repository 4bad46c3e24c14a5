"""The dashboard: one static page at `/` that reads the management API and refreshes itself.

No build step: plain HTML and JavaScript in `static/dashboard.html`, served as is. The page
asks the browser for credentials through the API's basic-auth challenge.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web


def _page() -> bytes:
    return resources.files("amqpd.mgmt").joinpath("static/dashboard.html").read_bytes()


async def _index(request: web.Request) -> web.Response:
    return web.Response(body=_page(), content_type="text/html", charset="utf-8")


def register(app: web.Application) -> None:
    app.router.add_get("/", _index)

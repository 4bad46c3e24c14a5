"""The dashboard: one static page at `/` that reads the management API and refreshes itself.

No build step: plain HTML and JavaScript in `static/dashboard.html`, served as is. The page
itself asks for HTTP basic auth (the API's realm), so the browser prompts once and then
sends the same credentials with the page's API requests.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from aiohttp import web

from amqpd.mgmt.access import Requester
from amqpd.mgmt.errors import ApiError


def _page() -> bytes:
    return resources.files("amqpd.mgmt").joinpath("static/dashboard.html").read_bytes()


def register(app: web.Application, login: Callable[[str | None], Requester]) -> None:
    """Serve the page at `/` to users `login` accepts (it raises ApiError otherwise)."""

    async def index(request: web.Request) -> web.Response:
        try:
            login(request.headers.get("Authorization"))
        except ApiError as error:
            return web.json_response(
                {"error": error.error, "reason": error.reason},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="RabbitMQ Management"'},
            )
        return web.Response(body=_page(), content_type="text/html", charset="utf-8")

    app.router.add_get("/", index)

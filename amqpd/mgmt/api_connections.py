"""`/api/connections`, `/api/channels`, `/api/consumers`: who is connected and consuming.

Read from the connection registry through `amqpd.mgmt.inspect`. `DELETE` on a connection
closes it with 320 CONNECTION_FORCED and the `X-Reason` header as the reply text, as
RabbitMQ does. Non-monitoring users see only their own connections.
"""

from __future__ import annotations

from typing import Any

from amqpd.mgmt import listing
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import not_found
from amqpd.mgmt.inspect import ConnectionView
from amqpd.mgmt.router import NO_CONTENT, Router

DEFAULT_REASON = "Closed via management plugin"


def _visible(call: Call) -> list[ConnectionView]:
    vhost = call.params.get("vhost")
    if vhost is not None:
        call.vhost()
    return [
        view
        for view in call.mgmt.views()
        if call.requester.sees_connection(view.user)
        and (vhost is None or view.vhost == vhost)
        and view.user
    ]


def _find(call: Call) -> ConnectionView:
    for view in _visible(call):
        if view.name == call.params["name"]:
            return view
    raise not_found()


def list_connections(call: Call) -> Any:
    node = call.mgmt.node
    return listing.render([view.json(node) for view in _visible(call)], call.query)


def show_connection(call: Call) -> Any:
    return _find(call).json(call.mgmt.node)


def close_connection(call: Call) -> Any:
    view = _find(call)
    reason = call.headers.get("X-Reason") or DEFAULT_REASON
    view.close(f"CONNECTION_FORCED - {reason}")
    return NO_CONTENT


def _channels(call: Call, views: list[ConnectionView]) -> list[dict[str, Any]]:
    node = call.mgmt.node
    return [view.channel_json(channel, node) for view in views for channel in view.channels()]


def list_channels(call: Call) -> Any:
    return listing.render(_channels(call, _visible(call)), call.query)


def connection_channels(call: Call) -> Any:
    return listing.render(_channels(call, [_find(call)]), call.query)


def show_channel(call: Call) -> Any:
    for item in _channels(call, _visible(call)):
        if item["name"] == call.params["name"]:
            return item
    raise not_found()


def list_consumers(call: Call) -> Any:
    node = call.mgmt.node
    items = [details for view in _visible(call) for _queue, details in view.consumers(node)]
    return listing.render(items, call.query)


def register(router: Router) -> None:
    router.add("GET", "/api/connections", list_connections)
    router.add("GET", "/api/connections/{name}", show_connection)
    router.add("DELETE", "/api/connections/{name}", close_connection)
    router.add("GET", "/api/connections/{name}/channels", connection_channels)
    router.add("GET", "/api/vhosts/{vhost}/connections", list_connections)
    router.add("GET", "/api/channels", list_channels)
    router.add("GET", "/api/channels/{name}", show_channel)
    router.add("GET", "/api/vhosts/{vhost}/channels", list_channels)
    router.add("GET", "/api/consumers", list_consumers)
    router.add("GET", "/api/consumers/{vhost}", list_consumers)

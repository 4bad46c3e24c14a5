"""`/api/overview`, vhosts, whoami, nodes, health checks, aliveness test.

The overview adds up live counts over the vhosts the requester may see; `message_stats`
are the vhosts' counters. Users, permissions and changing vhosts are `api_users`' (its
routes are registered from here).
"""

from __future__ import annotations

import platform
import time
from typing import Any

from amqpd import __version__
from amqpd.core.errors import AMQPError
from amqpd.core.exchange import EXCHANGE_TYPES
from amqpd.core.message import Message
from amqpd.core.stats import MessageStats
from amqpd.core.vhost import VHost
from amqpd.mgmt import api_users, listing, shapes
from amqpd.mgmt.context import Call, Mgmt
from amqpd.mgmt.errors import from_amqp, not_found
from amqpd.mgmt.messages import build_header
from amqpd.mgmt.rates import Rates
from amqpd.mgmt.router import Reply, Router
from amqpd.wire.content import peek_header

# The RabbitMQ release whose management API this follows (tools check it for features).
API_VERSION = "3.10.8"


def vhost_counts(vhost: VHost, unacked: Any) -> dict[str, int]:
    ready = sum(map(len, vhost.queues.values()))
    name = vhost.name
    waiting = sum(count for queue, count in unacked.items() if queue.vhost == name)
    return {
        "messages": ready + waiting,
        "messages_ready": ready,
        "messages_unacknowledged": waiting,
    }


def message_stats(stats: dict[str, int], rates: Rates, key: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for name, value in stats.items():
        shown[name] = value
        shown[f"{name}_details"] = rates.details(key, name)
    return shown


def summed(vhosts: list[VHost]) -> dict[str, int]:
    total = MessageStats().snapshot()
    for vhost in vhosts:
        for name, value in vhost.stats.snapshot().items():
            total[name] += value
    return total


def overview(call: Call) -> Any:
    mgmt = call.mgmt
    vhosts = mgmt.visible_vhosts(call.requester)
    views = [view for view in mgmt.views() if call.requester.sees_connection(view.user)]
    unacked = mgmt.unacked_by_queue(views)
    counts = {"messages": 0, "messages_ready": 0, "messages_unacknowledged": 0}
    for vhost in vhosts:
        for name, value in vhost_counts(vhost, unacked).items():
            counts[name] += value
    channels = [channel for view in views for channel in view.channels()]
    key = ("overview",)
    return {
        "management_version": API_VERSION,
        "rabbitmq_version": API_VERSION,
        "product_name": "amqpd",
        "product_version": __version__,
        "python_version": platform.python_version(),
        "rates_mode": "basic",
        "cluster_name": mgmt.node,
        "node": mgmt.node,
        "disable_stats": False,
        "exchange_types": [
            {"name": name, "description": f"AMQP {name} exchange", "enabled": True}
            for name in sorted(EXCHANGE_TYPES)
        ],
        "object_totals": {
            "connections": sum(1 for view in views if view.open),
            "channels": len(channels),
            "consumers": sum(channel.consumers for channel in channels),
            "exchanges": sum(len(vhost.exchanges) for vhost in vhosts),
            "queues": sum(len(vhost.queues) for vhost in vhosts),
        },
        "queue_totals": message_stats(counts, mgmt.rates, key),
        "message_stats": message_stats(summed(vhosts), mgmt.rates, key),
        "listeners": mgmt.listeners,
        "contexts": [],
    }


def whoami(call: Call) -> Any:
    return {"name": call.requester.name, "tags": list(call.requester.tags)}


def vhost_json(mgmt: Mgmt, vhost: VHost, unacked: Any) -> dict[str, Any]:
    key = ("vhost", vhost.name)
    meta = mgmt.broker.accounts.vhost_meta(vhost.name)
    description = meta.get("description", "Default virtual host" if vhost.name == "/" else "")
    tags = meta.get("tags", [])
    shown: dict[str, Any] = {
        "name": vhost.name,
        "description": description,
        "tags": tags,
        "metadata": {"description": description, "tags": tags},
        "tracing": False,
        "default_queue_type": meta.get("default_queue_type", "classic"),
        "cluster_state": {mgmt.node: "running"},
        "message_stats": message_stats(vhost.stats.snapshot(), mgmt.rates, key),
    }
    for name, value in vhost_counts(vhost, unacked).items():
        shown[name] = value
        shown[f"{name}_details"] = mgmt.rates.details(key, name)
    return shown


def list_vhosts(call: Call) -> Any:
    unacked = call.mgmt.unacked_by_queue()
    items = [vhost_json(call.mgmt, v, unacked) for v in call.mgmt.visible_vhosts(call.requester)]
    return listing.render(items, call.query)


def show_vhost(call: Call) -> Any:
    vhost = call.vhost()
    return vhost_json(call.mgmt, vhost, call.mgmt.unacked_by_queue())


def health_ok(call: Call) -> Any:
    return {"status": "ok"}


def health_alarms(call: Call) -> Any:
    if call.mgmt.broker.disk_full:
        return _failed("resource alarm(s) in effect: disk", [{"node": call.mgmt.node}])
    return {"status": "ok"}


def _failed(reason: str, alarms: list[dict[str, Any]]) -> Any:
    return Reply(503, {"status": "failed", "reason": reason, "alarms": alarms})


def aliveness(call: Call) -> Any:
    """Declare `aliveness-test`, publish to it and get the message back."""
    vhost = call.vhost()
    call.requester.check(vhost.name, "configure", "queue", "aliveness-test")
    try:
        queue = vhost.declare_queue("aliveness-test", owner=None)
    except AMQPError as error:
        raise from_amqp(error) from None
    header = build_header({}, len(b"test_message"))
    message = Message("", "aliveness-test", header, peek_header(header), b"test_message")
    vhost.publish(vhost.exchanges[""], message)
    while True:
        entry = queue.take()
        if entry is None:
            return _failed("aliveness test message was not delivered", [])
        if entry[1] is message:
            return {"status": "ok"}


def nodes(call: Call) -> Any:
    call.requester.require_monitor()
    return [node_json(call.mgmt)]


def node_json(mgmt: Mgmt) -> dict[str, Any]:
    return {
        "name": mgmt.node,
        "type": "disc",
        "running": True,
        "uptime": int((time.time() - mgmt.started) * 1000),
        "mem_used": shapes.process_memory(),
        "disk_free_alarm": mgmt.broker.disk_full,
        "mem_alarm": False,
        "partitions": [],
    }


def show_node(call: Call) -> Any:
    call.requester.require_monitor()
    if call.params["node"] != call.mgmt.node:
        raise not_found()
    return node_json(call.mgmt)


def register(router: Router) -> None:
    router.add("GET", "/api/overview", overview)
    router.add("GET", "/api/whoami", whoami)
    router.add("GET", "/api/cluster-name", lambda call: {"name": call.mgmt.node})
    router.add("GET", "/api/extensions", lambda call: [])
    router.add("GET", "/api/nodes", nodes)
    router.add("GET", "/api/nodes/{node}", show_node)
    router.add("GET", "/api/vhosts", list_vhosts)
    router.add("GET", "/api/vhosts/{vhost}", show_vhost)
    api_users.register(router)
    router.add("GET", "/api/health/checks/alarms", health_alarms)
    router.add("GET", "/api/health/checks/local-alarms", health_alarms)
    router.add("GET", "/api/health/checks/virtual-hosts", health_ok)
    router.add("GET", "/api/health/checks/node-is-quorum-critical", health_ok)
    router.add("GET", "/api/health/checks/node-is-mirror-sync-critical", health_ok)
    router.add("GET", "/api/aliveness-test/{vhost}", aliveness)

"""`amqpctl move_messages`: move queued messages to another broker, losing none.

Each message is consumed from amqpd (manual acks, a bounded prefetch window), published to
the target's default exchange under the queue's name with publisher confirms, and acked on
amqpd only once the target confirmed it. Properties, headers and bodies pass unchanged.
An interrupted move loses nothing: messages not yet acked go back to the queue, so a rerun
continues, and at most the messages in flight (the window) reach the target twice. The
target queue is declared like the source one when it does not exist yet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import pika  # type: ignore[import-untyped]
import pika.exceptions  # type: ignore[import-untyped]

from amqpd.ctl.client import EX_DATAERR, EX_UNAVAILABLE, ApiClient, CtlError, segment

IDLE_SECONDS = 1.0  # a queue counts as drained after this long without a delivery


def _connect(url: str, what: str) -> pika.BlockingConnection:
    try:
        return pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError as error:
        raise CtlError(
            f"cannot connect to the {what} broker {_safe(url)}: {error!r}", EX_UNAVAILABLE
        ) from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _ensure_target_queue(target: pika.BlockingConnection, queue: dict[str, Any]) -> None:
    channel = target.channel()
    try:
        channel.queue_declare(queue["name"], passive=True)
        channel.close()
        return
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 404:
            raise
    channel = target.channel()
    channel.queue_declare(
        queue["name"],
        durable=queue.get("durable", True),
        auto_delete=queue.get("auto_delete", False),
        arguments=queue.get("arguments") or None,
    )
    channel.close()


def move_queue(
    source: pika.BlockingConnection,
    target: pika.BlockingConnection,
    name: str,
    window: int,
    progress: Callable[[str, int, int], None],
) -> int:
    """Move everything in queue `name`; returns how many messages were moved."""
    out = target.channel()
    out.confirm_delivery()
    into = source.channel()
    total = into.queue_declare(name, passive=True).method.message_count
    into.basic_qos(prefetch_count=window)
    moved = 0
    last_report = 0.0
    for method, properties, body in into.consume(name, inactivity_timeout=IDLE_SECONDS):
        if method is None:  # idle: drained, unless more arrived meanwhile
            if into.queue_declare(name, passive=True).method.message_count == 0:
                break
            continue
        try:
            out.basic_publish("", name, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            into.basic_nack(method.delivery_tag, multiple=False, requeue=True)
            into.cancel()
            raise CtlError(
                f"the target refused a message of queue '{name}' ({type(error).__name__}); "
                f"{moved} moved, the rest stays in amqpd",
                EX_DATAERR,
            ) from None
        into.basic_ack(method.delivery_tag)
        moved += 1
        now = time.monotonic()
        if now - last_report >= 1.0:
            last_report = now
            progress(name, moved, max(total, moved))
    into.cancel()
    into.close()
    out.close()
    progress(name, moved, moved)
    return moved


def move_messages(
    client: ApiClient,
    vhost: str,
    queues: list[str],
    source_url: str,
    target_url: str,
    window: int,
    err: TextIO = sys.stderr,
) -> int:
    listed = {q["name"]: q for q in client.get(f"/api/queues/{segment(vhost)}")}
    if queues:
        missing = [name for name in queues if name not in listed]
        if missing:
            raise CtlError(f"no such queue(s) in vhost '{vhost}': {', '.join(missing)}", EX_DATAERR)
        chosen = [listed[name] for name in queues]
    else:
        chosen = [q for q in listed.values() if q.get("messages_ready") and not q.get("exclusive")]

    def progress(name: str, moved: int, total: int) -> None:
        print(f"{name}: {moved}/{total} moved", file=err, flush=True)

    source = _connect(source_url, "source")
    target = _connect(target_url, "target")
    moved = 0
    try:
        for queue in chosen:
            _ensure_target_queue(target, queue)
            moved += move_queue(source, target, queue["name"], window, progress)
    finally:
        for connection in (source, target):
            if connection.is_open:
                connection.close()
    print(
        f"moved {moved} messages from {len(chosen)} queue(s); an interrupted move can be "
        f"rerun: at most {window} in-flight messages per queue may then arrive twice",
        file=err,
    )
    return 0


def source_url(client: ApiClient, api_url: str, user: str, password: str, vhost: str) -> str:
    """amqpd's AMQP URL, from the API's host and the AMQP listener it reports."""
    from urllib.parse import quote, urlparse

    port = 5672
    for listener in client.get("/api/overview").get("listeners", []):
        if listener.get("protocol") == "amqp":
            port = int(listener["port"])
            break
    host = urlparse(api_url).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"amqp://{credentials}@{host}:{port}/{quote(vhost, safe='')}"

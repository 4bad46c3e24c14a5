"""Queues and exchanges as rows of numbers, and queues as JSON text without dicts.

`queue_values(queue, unacked)` is a queue's counters as one tuple (its `message_stats`,
then its message counts), read in a few attribute loads; the rate sampler stores these
tuples and `rates_of(pair)` turns two samples into per-second rates. `QueueText` writes a
queue's JSON object straight from such a tuple: the parts that rarely change (name,
arguments, policy) are encoded once per queue and kept, the numbers are formatted into a
template, and an idle queue's whole text is reused until something in it changes.
Listing 10,000 queues this way allocates a tuple or a string per queue instead of dozens of
dicts, so it can run on the event loop in short slices. Nothing here changes state.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from amqpd.core.exchange import Exchange
from amqpd.core.queue import Queue
from amqpd.core.stats import QUEUE_COUNTERS
from amqpd.mgmt.jsonable import to_json

COUNTS = ("messages", "messages_ready", "messages_unacknowledged")
QUEUE_FIELDS = QUEUE_COUNTERS + COUNTS  # the order of `queue_values`
STATS_SIZE = len(QUEUE_COUNTERS)
EXCHANGE_FIELDS = ("publish_in", "publish_out")

# A rough per-message cost of a queued message in RAM (entry, Message object, header).
MESSAGE_OVERHEAD = 300
QUEUE_OVERHEAD = 2000

_ZERO_RATES = (0.0,) * len(QUEUE_FIELDS)
_BOOL = {True: "true", False: "false"}
_text = encode_basestring_ascii  # a str as a JSON string, as json.dumps writes it


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
_Pair = tuple[float, Any, float, Any]


def queue_key(queue: Queue) -> tuple[str, str, str]:
    return ("queue", queue.vhost, queue.name)


def exchange_key(exchange: Exchange) -> tuple[str, str, str]:
    return ("exchange", exchange.vhost, exchange.name)


def queue_values(queue: Queue, unacked: int) -> tuple[int, ...]:
    """The queue's counters in `QUEUE_FIELDS` order: `deliver` and `get` count those needing
    an ack, `*_no_ack` the others and `deliver_get` all of them, as RabbitMQ does."""
    stats = queue.stats
    delivered = queue.delivered_count
    got = queue.get_count
    deliver_no_ack = stats.deliver_no_ack
    get_no_ack = stats.get_no_ack
    ready = len(queue.messages)
    return (
        queue.enqueued_count,
        delivered - deliver_no_ack,
        deliver_no_ack,
        got - get_no_ack,
        get_no_ack,
        delivered + got,
        stats.get_empty,
        stats.ack,
        stats.redeliver,
        ready + unacked,
        ready,
        unacked,
    )


def exchange_values(exchange: Exchange) -> tuple[int, int]:
    return (exchange.publish_in, exchange.publish_out)


def rates_of(pair: _Pair | None, size: int) -> tuple[float, ...]:
    """Per-second change of each value between the two samples of `pair` (tuples)."""
    if pair is None:
        return _ZERO_RATES[:size] if size <= len(_ZERO_RATES) else (0.0,) * size
    then, before, now, after = pair
    if now <= then or before == after:
        return _ZERO_RATES[:size] if size <= len(_ZERO_RATES) else (0.0,) * size
    elapsed = now - then
    return tuple(round((new - old) / elapsed, 1) for new, old in zip(after, before, strict=True))


def with_rates(
    fields: tuple[str, ...], values: tuple[int, ...], rates: tuple[float, ...]
) -> dict[str, Any]:
    """RabbitMQ's `{name: value, name_details: {"rate": r}}` for each field."""
    shown: dict[str, Any] = {}
    for name, value, rate in zip(fields, values, rates, strict=True):
        shown[name] = value
        shown[name + "_details"] = {"rate": rate}
    return shown


def exchange_stats(exchange: Exchange, pair: _Pair | None) -> dict[str, Any]:
    return with_rates(EXCHANGE_FIELDS, exchange_values(exchange), rates_of(pair, 2))


def _static_fields(queue: Queue, node: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a queue's JSON that change only with a policy (or never)."""
    return {
        "name": queue.name,
        "vhost": queue.vhost,
        "node": node,
        "type": "classic",
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
        "arguments": to_json(queue.arguments) if queue.arguments else {},
        "state": "running",
        "single_active_consumer_tag": None,
        "policy": policy["name"] if policy else None,
        "operator_policy": policy.get("operator_policy") if policy else None,
        "effective_policy_definition": dict(policy["definition"]) if policy else {},
        "head_message_timestamp": None,
    }


def _live_fields(queue: Queue, values: tuple[int, ...]) -> dict[str, Any]:
    consumers = queue.consumers
    count = len(consumers)
    return {
        "consumers": count,
        "consumer_capacity": 1.0 if count else 0,
        "consumer_utilisation": 1.0 if count else 0,
        "exclusive_consumer_tag": _exclusive_tag(queue) if count else None,
        "memory": QUEUE_OVERHEAD + MESSAGE_OVERHEAD * values[STATS_SIZE],
    }


def _exclusive_tag(queue: Queue) -> str | None:
    return next((c.tag for c in queue.consumers if c.exclusive), None)


def queue_dict(
    queue: Queue, unacked: int, pair: _Pair | None, node: str, policy: dict[str, Any] | None
) -> dict[str, Any]:
    """A queue as `/api/queues` lists it, as a dict (for filtering, sorting, columns)."""
    values = queue_values(queue, unacked)
    rates = rates_of(pair, len(QUEUE_FIELDS))
    shown = _static_fields(queue, node, policy)
    shown.update(_live_fields(queue, values))
    shown["message_stats"] = with_rates(
        QUEUE_COUNTERS, values[:STATS_SIZE], rates[:STATS_SIZE]
    )
    shown.update(with_rates(COUNTS, values[STATS_SIZE:], rates[STATS_SIZE:]))
    return shown


def _template() -> str:
    parts = [
        '"consumers":%d,"consumer_capacity":%s,"consumer_utilisation":%s,'
        '"exclusive_consumer_tag":%s,"memory":%d,"message_stats":{'
    ]
    parts.append(",".join(f'"{name}":%d,"{name}_details":{{"rate":%r}}' for name in QUEUE_COUNTERS))
    parts.append("},")
    parts.append(",".join(f'"{name}":%d,"{name}_details":{{"rate":%r}}' for name in COUNTS))
    parts.append("}")
    return "".join(parts)


class _Kept(NamedTuple):
    policy: Any
    prefix: str  # the static fields, JSON, up to and including the comma after them
    values: tuple[int, ...]  # what `text` was written from
    pair: Any
    text: str


class QueueText:
    """Writes queues as the JSON objects of `/api/queues`. Each queue's static part is kept,
    and so is its whole text while its counters, rate samples and policy stay the same and
    it has no consumers (then it is returned as it is: most queues of a long list are idle)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._node_json = _text(node)
        self._template = _template()
        self._kept: dict[Queue, _Kept] = {}

    def _prefix(self, queue: Queue, policy: dict[str, Any] | None) -> str:
        """The static fields (`_static_fields`) as JSON, up to the comma after them."""
        arguments = queue.arguments
        return (
            f'{{"name":{_text(queue.name)},"vhost":{_text(queue.vhost)},'
            f'"node":{self._node_json},"type":"classic",'
            f'"durable":{_BOOL[queue.durable]},"auto_delete":{_BOOL[queue.auto_delete]},'
            f'"exclusive":{_BOOL[queue.exclusive_owner is not None]},'
            f'"arguments":{_json(to_json(arguments)) if arguments else "{}"},'
            f'"state":"running","single_active_consumer_tag":null,'
            f'"policy":{_json(policy["name"]) if policy else "null"},'
            f'"operator_policy":{_json(policy.get("operator_policy")) if policy else "null"},'
            f'"effective_policy_definition":'
            f'{_json(dict(policy["definition"])) if policy else "{}"},'
            f'"head_message_timestamp":null,'
        )

    def render(
        self, queue: Queue, unacked: int, pair: _Pair | None, policy: dict[str, Any] | None
    ) -> str:
        kept = self._kept.get(queue)
        values = queue_values(queue, unacked)
        count = len(queue.consumers)
        if kept is None or (kept.policy is not policy and kept.policy != policy):
            prefix = self._prefix(queue, policy)
        elif not count and kept.pair is pair and kept.values == values:
            return kept.text
        else:
            prefix = kept.prefix
        rates = rates_of(pair, len(QUEUE_FIELDS))
        if count:
            capacity: Any = 1.0
            tag = json.dumps(_exclusive_tag(queue))
        else:
            capacity, tag = 0, "null"
        memory = QUEUE_OVERHEAD + MESSAGE_OVERHEAD * values[STATS_SIZE]
        numbers = [count, capacity, capacity, tag, memory]
        for value, rate in zip(values, rates, strict=True):
            numbers.append(value)
            numbers.append(rate)
        text = prefix + self._template % tuple(numbers)
        self._kept[queue] = _Kept(policy, prefix, values, pair, text)
        return text

    def forget_deleted(self) -> None:
        """Drop the kept parts of queues that are gone."""
        for queue in [queue for queue in self._kept if queue.deleted]:
            del self._kept[queue]

    def __len__(self) -> int:
        return len(self._kept)

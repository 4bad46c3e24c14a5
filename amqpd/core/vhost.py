"""A virtual host: the registry of exchanges and queues and the one API that changes them.

Every declare, delete, bind, unbind, purge and publish goes through `VHost`, which
enforces RabbitMQ's rules (reserved `amq.` names, exclusive ownership, equivalence,
if_unused/if_empty) and raises `ChannelError`/`ConnectionError_` with RabbitMQ's texts.
`owner` arguments identify the connection acting, for exclusive queues. Nothing here knows
about channels or sockets; `schedule` is how queues ask for a dispatch pass, `clock` is
where queues get the time and their expiry timers.

Routing follows exchange-to-exchange bindings, alternate exchanges and the `CC`/`BCC`
headers (sender-selected distribution); dead-lettered messages are routed here too.

The vhost owns its policies (`policies`, a `PolicyRegistry`): a queue or exchange gets the
ones that match when it is created (declare and recovery alike), and `set_policy` /
`clear_policy` re-apply them at once to every queue and exchange whose policy changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from amqpd.core.arguments import (
    NOT_ENFORCED,
    is_quorum,
    validate_exchange_arguments,
    validate_queue_arguments,
    validate_quorum_declare,
)
from amqpd.core.clock import Clock, ManualClock
from amqpd.core.deadletter import REJECTED, dead_lettered, deaths_of, is_cycle, routing_keys
from amqpd.core.durability import Durability
from amqpd.core.equivalence import (
    EXCHANGE_ARGUMENTS_CHECKED,
    QUEUE_ARGUMENTS_CHECKED,
    check_arguments,
    check_flag,
)
from amqpd.core.errors import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
    ChannelError,
    ConnectionError_,
    describe_exchange,
    describe_queue,
)
from amqpd.core.exchange import EXCHANGE_TYPES, Exchange
from amqpd.core.headers_match import validate_x_match
from amqpd.core.message import ContentInfo, Message
from amqpd.core.naming import generated_queue_name
from amqpd.core.policy import Policy, PolicyRegistry, queue_settings
from amqpd.core.queue import Queue
from amqpd.core.reply_to import REPLY_TO, REPLY_TO_PREFIX, ReplyQueues, stand_in
from amqpd.core.routing import sender_selected, walk
from amqpd.core.stats import MessageStats
from amqpd.core.table import TableError
from amqpd.core.ttl import with_arrival
from amqpd.store import BindingRecord, ExchangeRecord, QueueRecord, Store

log = logging.getLogger("amqpd.vhost")

DEFAULT_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)


class VHost:
    def __init__(
        self,
        name: str,
        schedule: Callable[[Queue], None] | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        parse_header: Callable[[bytes], ContentInfo] | None = None,
    ) -> None:
        self.name = name
        self._parse_header = parse_header  # the codec, for headers the broker rewrites
        self.clock: Clock = clock or ManualClock()
        self.rejecting = 0  # queues with x-overflow reject-publish(-dlx) and a limit
        self.ttl_queues = 0  # queues with x-message-ttl
        self.refused = False  # the last publish met a full reject-publish queue (nack it)
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self._schedule = schedule or (lambda queue: queue.dispatch())
        self.reply_queues = ReplyQueues(name, self._schedule)
        self.store = store
        self.next_message_id = 1
        self.durability = Durability()  # the store's durable ticket and who waits for it
        self.stats = MessageStats()
        self.policies = PolicyRegistry()
        self.exchanges[""] = EXCHANGE_TYPES["direct"]("", name, durable=True)
        for exchange_name, type_name in DEFAULT_EXCHANGES:
            self.exchanges[exchange_name] = EXCHANGE_TYPES[type_name](
                exchange_name, name, durable=True
            )

    # -- lookups ------------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        found = self.exchanges.get(name)
        if found is None:
            raise ChannelError(NOT_FOUND, f"no {describe_exchange(name, self.name)}")
        return found

    def queue(self, name: str, owner: object | None = None) -> Queue:
        """The queue named, checking that `owner` may use it if it is exclusive."""
        found = self.queues.get(name)
        if found is None:
            raise ChannelError(NOT_FOUND, f"no {describe_queue(name, self.name)}")
        self._check_exclusive(found, owner)
        return found

    def _check_exclusive(self, queue: Queue, owner: object | None) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(queue)

    def _locked(self, queue: Queue) -> ChannelError:
        return ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked {describe_queue(queue.name, self.name)}."
            " It could be originally declared on another connection or the exclusive"
            " property value does not match that of the original declaration.",
        )

    # -- exchanges ----------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type_name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Exchange:
        arguments = arguments or {}
        if name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise ChannelError(NOT_FOUND, f"no {describe_exchange(name, self.name)}")
            return existing
        exchange_class = EXCHANGE_TYPES.get(type_name)
        if exchange_class is None:
            adjective = "invalid" if type_name == "" else "unknown"
            raise ConnectionError_(COMMAND_INVALID, f"{adjective} exchange type '{type_name}'")
        if existing is not None:
            if existing.type_name != type_name:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"inequivalent arg 'type' for {describe_exchange(name, self.name)}: "
                    f"received '{type_name}' but current is '{existing.type_name}'",
                )
            for arg, received, current in (
                ("durable", durable, existing.durable),
                ("auto_delete", auto_delete, existing.auto_delete),
                ("internal", internal, existing.internal),
            ):
                check_flag("exchange", name, self.name, arg, received, current)
            check_arguments(
                "exchange",
                name,
                self.name,
                arguments,
                existing.arguments,
                EXCHANGE_ARGUMENTS_CHECKED,
            )
            return existing
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'"
            )
        validate_exchange_arguments(name, self.name, arguments)
        exchange = exchange_class(
            name,
            self.name,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )
        self.exchanges[name] = exchange
        self._apply_to_exchange(exchange)
        if durable and self.store is not None:
            self.store.exchange_declared(
                ExchangeRecord(name, type_name, auto_delete, internal, arguments)
            )
        return exchange

    def check_queue_name(self, name: str) -> None:
        """Clients may not declare queues in the reserved `amq.` namespace."""
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'"
            )

    def check_deletable_exchange(self, name: str) -> None:
        self.check_not_default(name)
        if name.startswith("amq."):
            raise ChannelError(
                ACCESS_REFUSED,
                f"deletion of system {describe_exchange(name, self.name)} not allowed",
            )

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        self.check_deletable_exchange(name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ treats deleting a missing exchange as success
        if if_unused and exchange.has_bindings():
            raise ChannelError(PRECONDITION_FAILED, f"{describe_exchange(name, self.name)} in use")
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        exchange.deleted = True
        del self.exchanges[exchange.name]
        if exchange.durable and self.store is not None:
            self.store.exchange_deleted(exchange.name)
        for destination in {key[0] for key in exchange.bindings}:
            exchange.unbind_all(destination)
            if isinstance(destination, Exchange):
                self._maybe_auto_delete_exchange(destination, as_source=False)
        for source in exchange.bound_from:
            if not source.deleted:
                source.unbind_all(exchange)
                self._maybe_auto_delete_exchange(source)

    def _maybe_auto_delete_exchange(self, exchange: Exchange, as_source: bool = True) -> None:
        if as_source and exchange.auto_delete and not exchange.deleted and not exchange.bindings:
            self._remove_exchange(exchange)

    # -- queues -------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        owner: object,
        passive: bool = False,
        server_named: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Queue:
        arguments = arguments or {}
        if name.startswith(REPLY_TO):
            if name == REPLY_TO:
                return stand_in(self.name)
            reply_queue = self.reply_queues.get(name)
            if reply_queue is not None and passive:
                return reply_queue
        if passive:
            return self._used(self.queue(name, owner))
        quorum_server_named = server_named or name == ""
        if name == "":
            name, server_named = generated_queue_name(), True
        if not server_named:
            self.check_queue_name(name)
        validate_queue_arguments(name, self.name, arguments)
        if is_quorum(arguments):
            validate_quorum_declare(
                name,
                self.name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                server_named=quorum_server_named,
                arguments=arguments,
            )
        existing = self.queues.get(name)
        if existing is not None:
            self._check_exclusive(existing, owner)
            if exclusive != existing.exclusive:
                raise self._locked(existing)
            check_flag("queue", name, self.name, "durable", durable, existing.durable)
            check_flag("queue", name, self.name, "auto_delete", auto_delete, existing.auto_delete)
            check_arguments(
                "queue", name, self.name, arguments, existing.arguments, QUEUE_ARGUMENTS_CHECKED
            )
            return self._used(existing)
        for arg in NOT_ENFORCED:
            if arg in arguments:
                log.warning(
                    "queue '%s' in vhost '%s': argument %s is accepted but not enforced",
                    name,
                    self.name,
                    arg,
                )
        return self.create_queue(
            name,
            durable=durable,
            exclusive_owner=owner if exclusive else None,
            auto_delete=auto_delete,
            arguments=arguments,
        )

    def _used(self, queue: Queue) -> Queue:
        """A declare of an existing queue renews its lease and drops its expired head."""
        if queue.expires is not None:
            queue.touch()
        if queue.may_expire:
            queue.drop_expired()
        return queue

    def create_queue(
        self,
        name: str,
        *,
        durable: bool,
        exclusive_owner: object | None,
        auto_delete: bool,
        arguments: dict[str, Any],
    ) -> Queue:
        """Make and register a queue with no further checks (declare and recovery use it);
        the policies that match apply to it from the start."""
        quorum = is_quorum(arguments)
        policy = self.policies.match("queue", name, quorum)
        operator = self.policies.match_operator("queue", name, quorum)
        queue = Queue(
            name,
            self.name,
            durable=durable,
            exclusive_owner=exclusive_owner,
            auto_delete=auto_delete,
            arguments=arguments,
            schedule=self._schedule,
            clock=self.clock,
            dead_letter=self.dead_letter,
            unused=self.remove_queue,
            settings=queue_settings(arguments, policy, operator, quorum),
        )
        queue.policy, queue.operator_policy = policy, operator
        queue.vhost_stats = self.stats
        self.queues[name] = queue
        if queue.rejects:
            self.rejecting += 1
        if queue.ttl is not None:
            self.ttl_queues += 1
        self.exchanges[""].bind(queue, name, {})
        if durable and exclusive_owner is None and self.store is not None:
            queue.store = self.store
            self.store.queue_declared(QueueRecord(name, auto_delete, arguments))
        return queue

    def delete_queue(
        self, name: str, *, owner: object, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0  # RabbitMQ answers delete-ok with 0 for a missing queue
        self._check_exclusive(queue, owner)
        if if_empty and queue.messages:
            raise ChannelError(PRECONDITION_FAILED, f"{describe_queue(name, self.name)} not empty")
        if if_unused and queue.consumers:
            raise ChannelError(PRECONDITION_FAILED, f"{describe_queue(name, self.name)} in use")
        return self.remove_queue(queue)

    def remove_queue(self, queue: Queue) -> int:
        """Delete a queue unconditionally (exclusive owner gone, auto-delete, delete)."""
        if queue.deleted:
            return 0
        count = len(queue.messages)
        queue.stop_timers()
        queue.deleted = True
        if queue.rejects:
            self.rejecting -= 1
        if queue.ttl is not None:
            self.ttl_queues -= 1
        self.queues.pop(queue.name, None)
        if queue.store is not None:
            queue.store.queue_deleted(queue.name)
        self.exchanges[""].unbind(queue, queue.name, {})
        for exchange in queue.bound_from:
            if not exchange.deleted:
                exchange.unbind_all(queue)
                self._maybe_auto_delete_exchange(exchange)
        queue.bound_from.clear()
        queue.messages.clear()
        queue.ready_bytes = 0
        if queue.backlogged:
            queue.release_publishers()
        for consumer in list(queue.consumers):
            consumer.queue_deleted(queue)
        queue.consumers.clear()
        return count

    def purge_queue(self, name: str, owner: object) -> int:
        return self.queue(name, owner).purge()

    def consumer_removed(self, queue: Queue) -> None:
        """Auto-delete a queue whose last consumer went away."""
        if queue.auto_delete and queue.had_consumer and not queue.consumers:
            self.remove_queue(queue)

    def owner_closed(self, owner: object) -> None:
        """Delete the exclusive queues of a connection that closed."""
        for queue in [q for q in self.queues.values() if q.exclusive_owner is owner]:
            self.remove_queue(queue)

    # -- bindings -----------------------------------------------------------------------

    def _check_bind_arguments(self, exchange: Exchange, arguments: dict[str, Any]) -> None:
        if exchange.type_name == "headers":
            problem = validate_x_match(arguments)
            if problem:
                raise ChannelError(PRECONDITION_FAILED, problem)

    def check_not_default(self, exchange_name: str) -> None:
        if exchange_name == "":
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")

    def bind_queue(
        self,
        queue_name: str,
        exchange_name: str,
        routing_key: str,
        arguments: dict[str, Any],
        owner: object,
    ) -> None:
        self.check_not_default(exchange_name)
        exchange = self.exchange(exchange_name)
        queue = self.queue(queue_name, owner)
        self._check_bind_arguments(exchange, arguments)
        if exchange.bind(queue, routing_key, arguments):
            queue.bound_from.add(exchange)
            self._persist_binding(exchange, queue, routing_key, arguments, added=True)

    def unbind_queue(
        self,
        queue_name: str,
        exchange_name: str,
        routing_key: str,
        arguments: dict[str, Any],
        owner: object,
    ) -> None:
        self.check_not_default(exchange_name)
        queue = self.queues.get(queue_name)
        exchange = self.exchanges.get(exchange_name)
        if queue is None or exchange is None:
            return  # RabbitMQ answers unbind-ok whatever is missing
        if exchange.unbind(queue, routing_key, arguments):
            self._persist_binding(exchange, queue, routing_key, arguments, added=False)
            self._maybe_auto_delete_exchange(exchange)

    def bind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        self.check_not_default(source)
        self.check_not_default(destination)
        source_exchange = self.exchange(source)
        destination_exchange = self.exchange(destination)
        self._check_bind_arguments(source_exchange, arguments)
        if source_exchange.bind(destination_exchange, routing_key, arguments):
            destination_exchange.bound_from.add(source_exchange)
            self._persist_binding(
                source_exchange, destination_exchange, routing_key, arguments, added=True
            )

    def unbind_exchange(
        self, destination: str, source: str, routing_key: str, arguments: dict[str, Any]
    ) -> None:
        self.check_not_default(source)
        self.check_not_default(destination)
        source_exchange = self.exchanges.get(source)
        destination_exchange = self.exchanges.get(destination)
        if source_exchange is None or destination_exchange is None:
            return
        if source_exchange.unbind(destination_exchange, routing_key, arguments):
            self._persist_binding(
                source_exchange, destination_exchange, routing_key, arguments, added=False
            )
            self._maybe_auto_delete_exchange(source_exchange)

    def _persist_binding(
        self,
        source: Exchange,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: dict[str, Any],
        *,
        added: bool,
    ) -> None:
        """Bindings between two durable ends are durable too."""
        if self.store is None or not source.durable or source.name == "":
            return
        if isinstance(destination, Queue):
            if destination.store is None:
                return
            kind = "queue"
        elif destination.durable:
            kind = "exchange"
        else:
            return
        record = BindingRecord(source.name, kind, destination.name, routing_key, arguments)
        if added:
            self.store.binding_added(record)
        else:
            self.store.binding_removed(record)

    # -- policies -----------------------------------------------------------------------

    def set_policy(self, policy: Policy, *, operator: bool = False) -> bool:
        """Add or replace a (validated) policy and apply it at once; True if it is new."""
        created = self.policies.set(policy, operator=operator)
        self.apply_policies()
        return created

    def clear_policy(self, name: str, *, operator: bool = False) -> bool:
        """Remove a policy and re-apply what is left; False if there was none."""
        if not self.policies.clear(name, operator=operator):
            return False
        self.apply_policies()
        return True

    def apply_policies(self) -> None:
        """Give every exchange and queue whose policies changed its new ones (recovery
        calls this once the exchanges are back)."""
        for exchange in self.exchanges.values():
            if exchange.name:
                self._apply_to_exchange(exchange)
        match, match_operator = self.policies.match, self.policies.match_operator
        for queue in list(self.queues.values()):
            policy = match("queue", queue.name, queue.quorum)
            operator = match_operator("queue", queue.name, queue.quorum)
            if policy != queue.policy or operator != queue.operator_policy:
                self._configure(queue, policy, operator)

    def _apply_to_exchange(self, exchange: Exchange) -> None:
        policy = self.policies.match("exchange", exchange.name)
        operator = self.policies.match_operator("exchange", exchange.name)
        if policy != exchange.policy or operator != exchange.operator_policy:
            exchange.apply_policy(policy, operator)

    def _configure(self, queue: Queue, policy: Policy | None, operator: Policy | None) -> None:
        rejected, timed = queue.rejects, queue.ttl is not None
        queue.policy, queue.operator_policy = policy, operator
        queue.configure(queue_settings(queue.arguments, policy, operator, queue.quorum))
        self.rejecting += queue.rejects - rejected
        self.ttl_queues += (queue.ttl is not None) - timed

    # -- routing ------------------------------------------------------------------------

    def publish(self, exchange: Exchange, message: Message) -> tuple[list[Queue], int]:
        """Route and enqueue a message; returns (queues reached, store ticket or 0).

        A persistent message reaching durable queues is written to the store once, and
        the ticket says when that write is durable (for publisher confirms). Queues that
        refuse it (x-overflow reject-publish) count as reached but do not take it, and
        `refused` tells the publisher's channel to nack it."""
        raw = message.info.headers_raw
        # A CC or BCC key? (An empty table is 4 bytes; `len` first: `in` on bytes is slow.)
        if raw is not None and len(raw) > 4 and (b"\x02CC" in raw or b"\x03BCC" in raw):
            queues = self.route_keys(exchange, message, sender_selected(message, self.parse_header))
        elif exchange.name == "" and (queue := self.queues.get(message.routing_key)) is not None:
            queues = [queue]  # `route`, inlined for the default exchange
        else:
            queues = self.route(exchange, message)
        self.stats.publish += 1
        exchange.publish_in += 1
        exchange.publish_out += len(queues)
        if self.rejecting:
            self.refused = False
            if queues:
                return queues, self.deliver(message, self._admitted(queues, message))
        # `deliver`, inlined: this is the per-message path.
        ticket = 0
        if message.delivery_mode == 2 and self.store is not None:
            ticket = self._store_message(message, queues)
        for queue in queues:
            queue.enqueue(message)
        return queues, ticket

    def deliver(self, message: Message, queues: list[Queue]) -> int:
        """Store (if persistent and durable) and enqueue a routed message; the store ticket."""
        ticket = 0
        if message.delivery_mode == 2 and self.store is not None:
            ticket = self._store_message(message, queues)
        for queue in queues:
            queue.enqueue(message)
        return ticket

    def _store_message(self, message: Message, queues: list[Queue]) -> int:
        """Write a persistent message to the store once for the durable queues among
        `queues`; the store ticket (0 if none of them is durable)."""
        assert self.store is not None
        durable = [queue.name for queue in queues if queue.store is not None]
        if not durable:
            return 0
        message.store_id = self.next_message_id
        self.next_message_id += 1
        return self.store.message_published(
            message.store_id,
            durable,
            message.exchange,
            message.routing_key,
            self._stored_header(message, queues),
            message.body,
        )

    def _stored_header(self, message: Message, queues: list[Queue]) -> bytes:
        """The header to store: with the arrival time if the message may expire in one
        of its durable queues, so that its deadline survives a restart."""
        if not self.ttl_queues and message.ttl is None:
            return message.header
        if message.ttl is None and not any(
            queue.ttl is not None for queue in queues if queue.store is not None
        ):
            return message.header
        if not message.arrived:
            message.arrived = self.clock.now()
        return with_arrival(message.header, message.arrived)

    def _admitted(self, queues: list[Queue], message: Message) -> list[Queue]:
        """The queues that take `message`: full reject-publish queues refuse it (and
        reject-publish-dlx ones dead-letter it as `maxlen`)."""
        admitted = []
        for queue in queues:
            if queue.rejects and queue.refuses(message):
                self.refused = True
                if queue.rejects_to_dlx and queue.dlx is not None:
                    self.dead_letter(queue, [message], "maxlen")
            else:
                admitted.append(queue)
        return admitted

    def route(self, exchange: Exchange, message: Message) -> list[Queue]:
        """The queues a message reaches, following exchange-to-exchange bindings once each."""
        key = message.routing_key
        if exchange.name == "":
            queue = self.queues.get(key)
            if queue is None and key.startswith(REPLY_TO_PREFIX):
                queue = self.reply_queues.get(key)
            return [queue] if queue is not None else []
        found = exchange.route(message, key)
        if not exchange.exchange_destinations and (found or exchange.alternate is None):
            return list(found)
        return walk(exchange, message, (key,), self.exchanges)

    def route_keys(self, exchange: Exchange, message: Message, keys: list[str]) -> list[Queue]:
        """The queues a message reaches with several routing keys (CC, dead-lettering)."""
        if exchange.name == "":
            queues = self.queues
            return list({queues[key]: None for key in keys if key in queues})
        return walk(exchange, message, keys, self.exchanges)

    def parse_header(self, header: bytes) -> ContentInfo:
        """The properties of a content header the broker rewrote (dead-lettering, BCC)."""
        if self._parse_header is None:
            raise RuntimeError(f"vhost {self.name!r} was given no content-header parser")
        return self._parse_header(header)

    # -- dead-lettering -----------------------------------------------------------------

    def dead_letter(self, queue: Queue, messages: list[Message], reason: str) -> None:
        """Republish messages that left `queue` as `reason` to its dead-letter exchange.
        A missing exchange discards them; automatic cycles are dropped (see deadletter.py)."""
        exchange = self.exchanges.get(queue.dlx or "")
        if exchange is None or queue.dlx is None:
            return
        now = self.clock.now()
        for message in messages:
            try:
                republished = dead_lettered(
                    message, queue.name, reason, exchange.name, queue.dlrk, now, self.parse_header
                )
                keys = (
                    [queue.dlrk]
                    if queue.dlrk is not None
                    else [key.decode(errors="replace") for key in routing_keys(message)]
                )
            except (TableError, ValueError):
                continue
            targets = self.route_keys(exchange, republished, keys)
            if targets and reason != REJECTED:
                deaths = deaths_of(republished)
                targets = [target for target in targets if not is_cycle(target.name, deaths)]
            if targets and self.rejecting:
                targets = [t for t in targets if not (t.rejects and t.refuses(republished))]
            if targets:
                self.deliver(republished, targets)

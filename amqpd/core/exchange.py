"""Exchanges: where a message goes, decided from its routing key or headers.

Each exchange keeps its bindings as `(destination, routing_key, args_key) -> arguments`,
where a destination is a queue or another exchange, and a type-specific index for routing:
a dict for direct, a set for fanout, a word trie for topic, a list for headers.
`route(message, key)` returns the destinations of one hop for one routing key; following
exchange-to-exchange bindings, alternate exchanges (`alternate` names one) and breaking
loops is the vhost's job. A policy can name the alternate exchange (`apply_policy`); the
`alternate-exchange` argument wins over it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from amqpd.core.headers_match import headers_match
from amqpd.core.message import Message
from amqpd.core.policy import Policy, alternate_exchange
from amqpd.core.topic import TopicTrie

Destination = Any  # a Queue or an Exchange
BindingKey = tuple[Any, str, Any]


def freeze(value: Any) -> Any:
    """A hashable stand-in for a decoded AMQP value, for comparing binding arguments."""
    if isinstance(value, dict):
        return tuple(sorted((key, freeze(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


class Exchange:
    type_name = ""

    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.policy: Policy | None = None  # the policy that applies (see `apply_policy`)
        self.operator_policy: Policy | None = None
        self.alternate: str | None = alternate_exchange(self.arguments, None)
        self.bindings: dict[BindingKey, dict[str, Any]] = {}
        self.bound_from: set[Exchange] = set()  # sources that may hold bindings to this
        self.exchange_destinations = 0  # bindings whose destination is an exchange
        self.deleted = False
        self.publish_in = 0  # messages published to this exchange (statistics)
        self.publish_out = 0  # ... times they reached a queue, summed over queues

    def apply_policy(self, policy: Policy | None, operator: Policy | None = None) -> None:
        """Take the policies that now apply; they can set the alternate exchange."""
        self.policy = policy
        self.operator_policy = operator
        self.alternate = alternate_exchange(self.arguments, policy, operator)

    def bind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        """Add a binding; False if an identical one exists already."""
        key = (destination, routing_key, freeze(arguments))
        if key in self.bindings:
            return False
        self.bindings[key] = arguments
        if isinstance(destination, Exchange):
            self.exchange_destinations += 1
        self._index_add(destination, routing_key, arguments)
        return True

    def unbind(self, destination: Destination, routing_key: str, arguments: dict[str, Any]) -> bool:
        key = (destination, routing_key, freeze(arguments))
        if self.bindings.pop(key, None) is None:
            return False
        if isinstance(destination, Exchange):
            self.exchange_destinations -= 1
        self._index_remove(destination, routing_key, arguments)
        return True

    def unbind_all(self, destination: Destination) -> None:
        for key in [key for key in self.bindings if key[0] is destination]:
            self.unbind(destination, key[1], self.bindings[key])

    def has_bindings(self) -> bool:
        return bool(self.bindings)

    def route(self, message: Message, key: str) -> Any:
        raise NotImplementedError

    def _index_add(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError

    def _index_remove(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class DirectExchange(Exchange):
    type_name = "direct"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_key: dict[str, Counter[Destination]] = {}

    def route(self, message: Message, key: str) -> Any:
        found = self._by_key.get(key)
        return found.keys() if found else ()

    def _index_add(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        self._by_key.setdefault(routing_key, Counter())[destination] += 1

    def _index_remove(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        counts = self._by_key[routing_key]
        counts[destination] -= 1
        if counts[destination] <= 0:
            del counts[destination]
            if not counts:
                del self._by_key[routing_key]


class FanoutExchange(Exchange):
    type_name = "fanout"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._destinations: Counter[Destination] = Counter()

    def route(self, message: Message, key: str) -> Any:
        return self._destinations.keys()

    def _index_add(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        self._destinations[destination] += 1

    def _index_remove(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        self._destinations[destination] -= 1
        if self._destinations[destination] <= 0:
            del self._destinations[destination]


class TopicExchange(Exchange):
    type_name = "topic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trie: TopicTrie[Destination] = TopicTrie()
        self._counts: Counter[tuple[str, Destination]] = Counter()

    def route(self, message: Message, key: str) -> Any:
        return self._trie.match(key)

    def _index_add(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        self._counts[(routing_key, destination)] += 1
        self._trie.add(routing_key, destination)

    def _index_remove(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        pair = (routing_key, destination)
        self._counts[pair] -= 1
        if self._counts[pair] <= 0:
            del self._counts[pair]
            self._trie.remove(routing_key, destination)


class HeadersExchange(Exchange):
    type_name = "headers"

    def route(self, message: Message, key: str) -> Any:
        if not self.bindings:
            return ()
        headers = message.headers
        return {
            destination
            for (destination, _key, _args), arguments in self.bindings.items()
            if headers_match(arguments, headers)
        }

    def _index_add(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        pass

    def _index_remove(self, destination: Destination, routing_key: str, arguments: dict) -> None:
        pass


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    cls.type_name: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange)
}

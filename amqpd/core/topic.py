"""A trie of dot-separated words for topic-exchange routing (AMQP 0-9-1 / RabbitMQ semantics).

Keys split on "." into words; the empty key has no words, and "a..b", ".a", "a." keep their
empty words. In a binding key `*` matches exactly one (possibly empty) word and `#` matches
zero or more words; every other word matches only itself. `match` returns each target once.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

_DEFAULT_CACHE_SIZE = 1024


def split_key(key: str) -> list[str]:
    """Split a routing or binding key into words the way RabbitMQ does ("" has no words)."""
    return key.split(".") if key else []


class _Node:
    """One trie node: literal children by word, plus dedicated `*` and `#` children."""

    __slots__ = ("children", "star", "hash", "targets", "is_hash")

    def __init__(self, is_hash: bool = False) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.targets: set[object] = set()
        self.is_hash = is_hash

    def is_empty(self) -> bool:
        return not (self.targets or self.children or self.star is not None or self.hash is not None)


class TopicTrie(Generic[T]):
    """Bindings (binding key -> targets) of one topic exchange, matched against routing keys.

    `match` caches its results per routing key (up to `cache_size` keys; 0 disables the
    cache); any successful `add` or `remove` clears the cache.
    """

    __slots__ = ("_root", "_size", "_cache", "_cache_size")

    def __init__(self, cache_size: int = _DEFAULT_CACHE_SIZE) -> None:
        self._root = _Node()
        self._size = 0
        self._cache: dict[str, frozenset[T]] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        """The number of distinct (binding key, target) pairs."""
        return self._size

    def add(self, binding_key: str, target: T) -> bool:
        """Bind `target` under `binding_key`; False if that exact pair was already bound."""
        node = self._root
        for word in split_key(binding_key):
            if word == "*":
                nxt = node.star
                if nxt is None:
                    nxt = node.star = _Node()
            elif word == "#":
                nxt = node.hash
                if nxt is None:
                    nxt = node.hash = _Node(is_hash=True)
            else:
                nxt = node.children.get(word)
                if nxt is None:
                    nxt = node.children[word] = _Node()
            node = nxt
        if target in node.targets:
            return False
        node.targets.add(target)
        self._size += 1
        self._cache.clear()
        return True

    def remove(self, binding_key: str, target: T) -> bool:
        """Unbind the pair; False if it was not bound. Nodes left empty are pruned."""
        path: list[tuple[_Node, str]] = []  # (parent, word leading to the child)
        node = self._root
        for word in split_key(binding_key):
            if word == "*":
                nxt = node.star
            elif word == "#":
                nxt = node.hash
            else:
                nxt = node.children.get(word)
            if nxt is None:
                return False
            path.append((node, word))
            node = nxt
        if target not in node.targets:
            return False
        node.targets.discard(target)
        self._size -= 1
        self._cache.clear()
        while path and node.is_empty():
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
            node = parent
        return True

    def match(self, routing_key: str) -> set[T]:
        """The targets of every binding whose key matches `routing_key`, each once."""
        cached = self._cache.get(routing_key)
        if cached is None:
            cached = frozenset(self._match(routing_key))
            if self._cache_size:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[routing_key] = cached
        return set(cached)

    def _match(self, routing_key: str) -> set[T]:
        # Iterative walk over (node, position) states. Only `#` nodes can be reached in the
        # same state along two different paths (a `#` may absorb any number of words), so
        # only their states are memoised; every other state has a single predecessor.
        # That bounds the work by nodes * (words + 1) even for keys like "#.#.#.#".
        words = split_key(routing_key)
        n = len(words)
        result: set[T] = set()
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            if node.is_hash:
                state = (id(node), i)
                if state in seen:
                    continue
                seen.add(state)
                if i < n:
                    push((node, i + 1))  # this `#` absorbs one more word
            if i == n:
                if node.targets:
                    result.update(node.targets)  # type: ignore[arg-type]
                if node.hash is not None:
                    push((node.hash, n))  # a trailing `#` matches zero words
                continue
            if node.hash is not None:
                push((node.hash, i))  # `#` matching zero words so far
            if node.star is not None:
                push((node.star, i + 1))
            if node.children:
                child = node.children.get(words[i])
                if child is not None:
                    push((child, i + 1))
        return result

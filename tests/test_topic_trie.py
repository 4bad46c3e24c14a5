"""Table-driven unit tests for the topic-exchange word trie (amqpd.core.topic).

The (binding key, routing key, expected) rows were checked against RabbitMQ 3.10 by
binding and publishing; a seeded random cross-check compares the trie with a plain
recursive reading of the AMQP topic rules.
"""

from __future__ import annotations

import random
from functools import cache

import pytest

from amqpd.core.topic import TopicTrie, split_key

# (binding key, routing key, matches?)
MATCH_CASES: list[tuple[str, str, bool]] = [
    # RabbitMQ tutorial 5
    ("*.orange.*", "quick.orange.rabbit", True),
    ("*.orange.*", "lazy.orange.elephant", True),
    ("*.orange.*", "quick.orange.fox", True),
    ("*.orange.*", "quick.brown.fox", False),
    ("*.orange.*", "orange", False),
    ("*.orange.*", "quick.orange.male.rabbit", False),
    ("*.orange.*", "quick.orange", False),
    ("*.*.rabbit", "quick.orange.rabbit", True),
    ("*.*.rabbit", "lazy.pink.rabbit", True),
    ("*.*.rabbit", "quick.brown.fox", False),
    ("*.*.rabbit", "quick.orange.male.rabbit", False),
    ("*.*.rabbit", "rabbit", False),
    ("lazy.#", "lazy", True),
    ("lazy.#", "lazy.orange.elephant", True),
    ("lazy.#", "lazy.pink.rabbit", True),
    ("lazy.#", "lazy.orange.male.rabbit", True),
    ("lazy.#", "quick.lazy", False),
    ("lazy.#", "lazyx", False),
    ("lazy.#", "", False),
    # literal keys, case-sensitive, whole words only
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "a.b", False),
    ("a.b.c", "a.b.c.d", False),
    ("a.b.c", "A.b.c", False),
    ("a.b", "a.bc", False),
    ("ab", "a.b", False),
    ("ünï.*", "ünï.côdé", True),
    # the empty key has no words
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    # `#` alone and repeated
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("#", "..", True),
    ("#.#", "", True),
    ("#.#", "a", True),
    ("#.#", "a.b.c", True),
    ("#.#.#.#.#.#", "", True),
    ("#.#.#.#.#.#", "a.b.c.d.e.f.g.h", True),
    # empty words from a..b, leading and trailing dots
    (".", ".", True),
    (".", "", False),
    ("*.*", ".", True),
    ("*.*", "a.", True),
    ("*.*", ".a", True),
    ("*.*", "a", False),
    ("*.*", "", False),
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a..b", "a.x.b", False),
    ("a.*.b", "a..b", True),
    ("a.*.b", "a.b", False),
    (".a", ".a", True),
    (".a", "a", False),
    ("*.a", ".a", True),
    ("a.", "a.", True),
    ("a.", "a", False),
    ("a.*", "a.", True),
    ("a.*", "a", False),
    ("a.#", "a.", True),
    ("#.a", ".a", True),
    # `#` at the start, middle and end
    ("#.a", "a", True),
    ("#.a", "x.a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "a.x", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.b", True),
    ("a.#.b", "a..b", True),
    ("a.#.b", "a", False),
    ("a.#.b", "b", False),
    ("a.#.b", "a.b.c", False),
    ("a.#.#.b", "a.b", True),
    ("a.#.#.b", "a.x.y.z.b", True),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y", True),
    ("#.a.#", "x.y.a", True),
    ("#.a.#", "b", False),
    ("#.a.#", "x.y", False),
    ("a.#.b.#.c", "a.b.c", True),
    ("a.#.b.#.c", "a.x.b.y.c", True),
    ("a.#.b.#.c", "a.c.b", False),
    ("#.#.a", "a", True),
    # `*` next to `#`
    ("*.#", "", False),
    ("*.#", "a", True),
    ("*.#", "a.b.c", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("#.*", "a.b", True),
    ("#.*.#", "", False),
    ("#.*.#", "a.b.c", True),
    ("*.#.*", "a", False),
    ("*.#.*", "a.b", True),
    ("*.#.*", "a.b.c", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c", True),
    ("#.b.*", "b.c", True),
    ("#.b.*", "a.b.c", True),
    ("#.b.*", "a.b", False),
    ("*.*.*", "a.b", False),
    ("*.*.*", "a.b.c", True),
    # wildcard characters inside a routing key are plain words
    ("a.b", "a.*", False),
    ("a.*", "a.*", True),
    ("a.#", "a.#", True),
    ("#", "#", True),
    ("a.b", "a.#", False),
    # wildcards only count as whole words
    ("a*", "ab", False),
    ("a*", "a*", True),
    ("a#", "a.b", False),
    ("a#", "a#", True),
]


@pytest.mark.parametrize(("binding_key", "routing_key", "expected"), MATCH_CASES)
def test_single_binding_match(binding_key: str, routing_key: str, expected: bool) -> None:
    trie: TopicTrie[str] = TopicTrie()
    assert trie.add(binding_key, "q") is True
    assert trie.match(routing_key) == ({"q"} if expected else set())


def test_all_table_bindings_in_one_trie() -> None:
    """The same rows, with every binding key in one trie and one target per key."""
    trie: TopicTrie[str] = TopicTrie()
    keys = sorted({binding_key for binding_key, _, _ in MATCH_CASES})
    for key in keys:
        trie.add(key, key)
    expected: dict[str, set[str]] = {}
    for binding_key, routing_key, matches in MATCH_CASES:
        expected.setdefault(routing_key, set())
        if matches:
            expected[routing_key].add(binding_key)
    for routing_key, want in expected.items():
        got = trie.match(routing_key)
        assert want <= got, routing_key
        assert {k for k in got if _reference_match(k, routing_key)} == got, routing_key


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", []),
        ("a", ["a"]),
        ("a.b", ["a", "b"]),
        (".", ["", ""]),
        ("a..b", ["a", "", "b"]),
        (".a", ["", "a"]),
        ("a.", ["a", ""]),
        ("..", ["", "", ""]),
    ],
)
def test_split_key(key: str, words: list[str]) -> None:
    assert split_key(key) == words


# (bindings as (key, target), routing key, expected targets)
TUTORIAL = [("*.orange.*", "Q1"), ("*.*.rabbit", "Q2"), ("lazy.#", "Q2")]
MULTI_CASES: list[tuple[list[tuple[str, str]], str, set[str]]] = [
    (TUTORIAL, "quick.orange.rabbit", {"Q1", "Q2"}),
    (TUTORIAL, "lazy.orange.elephant", {"Q1", "Q2"}),
    (TUTORIAL, "quick.orange.fox", {"Q1"}),
    (TUTORIAL, "lazy.brown.fox", {"Q2"}),
    (TUTORIAL, "lazy.pink.rabbit", {"Q2"}),
    (TUTORIAL, "quick.brown.fox", set()),
    (TUTORIAL, "orange", set()),
    (TUTORIAL, "lazy.orange.male.rabbit", {"Q2"}),
    # one target reached through several bindings comes back once
    ([("#", "q"), ("a.#", "q"), ("a.b", "q"), ("*.b", "q"), ("#.b", "q")], "a.b", {"q"}),
    # several targets on one key
    ([("a.b", "q1"), ("a.b", "q2"), ("a.b", "q3")], "a.b", {"q1", "q2", "q3"}),
    ([("a.b", "1"), ("a.*", "2"), ("*.b", "3"), ("#", "4"), ("c", "5")], "a.b", {*"1234"}),
    ([("", "empty"), ("#", "all"), ("*", "one")], "", {"empty", "all"}),
    ([("", "empty"), ("#", "all"), ("*", "one")], "x", {"all", "one"}),
    ([("#.#", "q1"), ("#", "q2"), ("#.#.#", "q3")], "a.b.c", {"q1", "q2", "q3"}),
    ([("a.#", "q1"), ("a.#.#", "q2"), ("a.*.#", "q3")], "a", {"q1", "q2"}),
]  # fmt: skip


@pytest.mark.parametrize(("bindings", "routing_key", "expected"), MULTI_CASES)
def test_multiple_bindings(
    bindings: list[tuple[str, str]], routing_key: str, expected: set[str]
) -> None:
    trie: TopicTrie[str] = TopicTrie()
    for key, target in bindings:
        trie.add(key, target)
    assert trie.match(routing_key) == expected


def test_add_reports_duplicates_and_len_counts_pairs() -> None:
    trie: TopicTrie[str] = TopicTrie()
    assert len(trie) == 0
    assert trie.add("a.b", "q1") is True
    assert trie.add("a.b", "q1") is False
    assert trie.add("a.b", "q2") is True
    assert trie.add("a.*", "q1") is True
    assert trie.add("#", "q1") is True
    assert trie.add("#", "q1") is False
    assert len(trie) == 4


# (bindings present, (key, target) to remove, expected return)
REMOVE_CASES: list[tuple[list[tuple[str, str]], tuple[str, str], bool]] = [
    ([("a.b", "q")], ("a.b", "q"), True),
    ([("a.b", "q")], ("a.b", "other"), False),
    ([("a.b", "q")], ("a.c", "q"), False),
    ([("a.b", "q")], ("a", "q"), False),
    ([("a.b", "q")], ("a.b.c", "q"), False),
    ([("a.b", "q")], ("a.*", "q"), False),
    ([("a.b", "q")], ("#", "q"), False),
    ([], ("", "q"), False),
    ([("", "q")], ("", "q"), True),
    ([("#", "q")], ("#", "q"), True),
    ([("*", "q")], ("*", "q"), True),
    ([("a.#.b", "q")], ("a.#.b", "q"), True),
    ([("a.#.b", "q")], ("a.*.b", "q"), False),
]


@pytest.mark.parametrize(("bindings", "pair", "expected"), REMOVE_CASES)
def test_remove_return_value(
    bindings: list[tuple[str, str]], pair: tuple[str, str], expected: bool
) -> None:
    trie: TopicTrie[str] = TopicTrie()
    for key, target in bindings:
        trie.add(key, target)
    assert trie.remove(*pair) is expected
    assert len(trie) == len(bindings) - (1 if expected else 0)
    assert trie.remove(*pair) is False  # a second removal never succeeds


@pytest.mark.parametrize(
    "keys",
    [
        ["a.b.c"],
        ["a.b.c", "a.b", "a"],
        ["#", "#.#", "#.#.#"],
        ["*.orange.*", "*.*.rabbit", "lazy.#"],
        ["", ".", "..", "a..b", ".a", "a."],
        ["a.*.#.b", "a.*.#.c", "a.*", "*.#", "#.*"],
    ],
)
def test_remove_prunes_every_node(keys: list[str]) -> None:
    trie: TopicTrie[str] = TopicTrie()
    for key in keys:
        trie.add(key, "q1")
        trie.add(key, "q2")
    for key in keys:
        assert trie.remove(key, "q1") is True
    assert not trie._root.is_empty()  # q2 still holds every path
    for key in reversed(keys):
        assert trie.remove(key, "q2") is True
    assert len(trie) == 0
    assert trie._root.is_empty()
    assert trie.match("a.b.c") == set()


def test_remove_keeps_sibling_and_prefix_bindings() -> None:
    trie: TopicTrie[str] = TopicTrie()
    for key in ["a.b", "a.b.c", "a.b.d", "a.#"]:
        trie.add(key, key)
    assert trie.remove("a.b.c", "a.b.c")
    assert trie.match("a.b") == {"a.b", "a.#"}
    assert trie.match("a.b.c") == {"a.#"}
    assert trie.match("a.b.d") == {"a.b.d", "a.#"}
    assert trie.remove("a.b", "a.b")
    assert trie.match("a.b") == {"a.#"}
    assert trie.match("a.b.d") == {"a.b.d", "a.#"}
    assert trie.remove("a.#", "a.#")
    assert trie.match("a.b.d") == {"a.b.d"}
    assert trie.remove("a.b.d", "a.b.d")
    assert trie._root.is_empty()


@pytest.mark.parametrize("cache_size", [0, 1, 2, 1024])
def test_match_sees_every_add_and_remove(cache_size: int) -> None:
    trie: TopicTrie[str] = TopicTrie(cache_size=cache_size)
    assert trie.match("a.b") == set()
    trie.add("a.*", "q1")
    assert trie.match("a.b") == {"q1"}
    assert trie.match("a.c") == {"q1"}
    trie.add("#", "q2")
    assert trie.match("a.b") == {"q1", "q2"}
    assert trie.match("x") == {"q2"}
    trie.remove("a.*", "q1")
    assert trie.match("a.b") == {"q2"}
    trie.remove("#", "q2")
    assert trie.match("a.b") == set()
    assert trie.match("x") == set()


def test_match_returns_a_fresh_set() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a", "q")
    trie.match("a").add("intruder")
    trie.match("a").clear()
    assert trie.match("a") == {"q"}


def test_targets_can_be_any_hashable() -> None:
    trie: TopicTrie[tuple[str, str]] = TopicTrie()
    trie.add("a.#", ("queue", "q1"))
    trie.add("a.#", ("exchange", "x1"))
    assert trie.match("a.b") == {("queue", "q1"), ("exchange", "x1")}


@pytest.mark.parametrize(
    ("binding_key", "routing_key", "expected"),
    [
        (".".join(["#"] * 30), ".".join(["w"] * 400), True),
        (".".join(["#"] * 30) + ".z", ".".join(["w"] * 400), False),
        (".".join(["#", "*"] * 15) + ".z", ".".join(["w"] * 400), False),
        (".".join(["#", "w"] * 15) + ".z", ".".join(["w"] * 400), False),
        (".".join(["#", "w"] * 15), ".".join(["w"] * 400), True),
    ],
)
def test_many_hashes_do_not_blow_up(binding_key: str, routing_key: str, expected: bool) -> None:
    """Without memoisation these would take longer than the age of the universe."""
    trie: TopicTrie[str] = TopicTrie()
    trie.add(binding_key, "q")
    assert trie.match(routing_key) == ({"q"} if expected else set())


def _reference_match(binding_key: str, routing_key: str) -> bool:
    """The topic rules read literally, independently of the trie."""
    pattern, words = split_key(binding_key), split_key(routing_key)

    @cache
    def from_(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(words)
        if pattern[i] == "#":
            return from_(i + 1, j) or (j < len(words) and from_(i, j + 1))
        if j == len(words):
            return False
        return (pattern[i] in ("*", words[j])) and from_(i + 1, j + 1)

    return from_(0, 0)


@pytest.mark.parametrize(("binding_key", "routing_key", "expected"), MATCH_CASES)
def test_reference_agrees_with_table(binding_key: str, routing_key: str, expected: bool) -> None:
    assert _reference_match(binding_key, routing_key) is expected


@pytest.mark.parametrize("seed", range(20))
def test_random_tries_agree_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    pattern_words = ["a", "b", "", "*", "#"]
    key_words = ["a", "b", "", "c"]

    def key(words: list[str], max_len: int) -> str:
        return ".".join(rng.choice(words) for _ in range(rng.randint(0, max_len)))

    trie: TopicTrie[int] = TopicTrie(cache_size=rng.choice([0, 8]))
    bindings: set[tuple[str, int]] = set()
    for _ in range(60):
        pair = (key(pattern_words, 5), rng.randrange(6))
        assert trie.add(*pair) is (pair not in bindings)
        bindings.add(pair)
    for pair in rng.sample(sorted(bindings), len(bindings) // 3):
        assert trie.remove(*pair) is True
        bindings.discard(pair)
    assert len(trie) == len(bindings)
    for _ in range(200):
        routing_key = key(key_words, 6)
        want = {t for k, t in bindings if _reference_match(k, routing_key)}
        assert trie.match(routing_key) == want, routing_key

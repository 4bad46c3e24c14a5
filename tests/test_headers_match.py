"""Table-driven unit tests for headers-exchange matching (amqpd.core.headers_match).

Every row whose binding RabbitMQ accepts was checked against RabbitMQ 3.10 by binding
and publishing; the validation texts are RabbitMQ's replies to queue.bind.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from decimal import Decimal

import pytest

from amqpd.core.headers_match import headers_match, validate_x_match

NEW_YEAR_2020 = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)  # 1577836800

# (binding arguments, message headers, matches?)
MATCH_CASES: list[tuple[dict[str, object], dict[str, object] | None, bool]] = [
    # no taking-part keys: "all" matches everything, "any" nothing
    ({}, None, True),
    ({}, {}, True),
    ({}, {"a": 1}, True),
    ({"x-match": "all"}, None, True),
    ({"x-match": "all"}, {"a": 1}, True),
    ({"x-match": "any"}, None, False),
    ({"x-match": "any"}, {"a": 1}, False),
    ({"x-match": "all-with-x"}, {"a": 1}, True),
    ({"x-match": "any-with-x"}, {"a": 1}, False),
    ({"x-match": "all", "x-a": 1}, {}, True),
    ({"x-match": "any", "x-a": 1}, {"x-a": 1}, False),
    # "all" (the default): every key present with an equal value
    ({"a": 1}, None, False),
    ({"a": 1}, {}, False),
    ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 2}, False),
    ({"a": 1}, {"b": 1}, False),
    ({"a": 1}, {"a": 1, "b": 2}, True),
    ({"A": 1}, {"a": 1}, False),
    ({"a": 1, "b": 2}, {"a": 1}, False),
    ({"a": 1, "b": 2}, {"b": 2}, False),
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}, True),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1, "c": 3}, True),
    ({"a": 1, "b": 2}, {"a": 1, "b": 3}, False),
    ({"x-match": "all", "a": 1, "b": 2}, {"a": 1, "b": 2}, True),
    ({"x-match": "all", "a": 1, "b": 2}, {"a": 1}, False),
    # "any": one key present with an equal value is enough
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 1}, True),
    ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 1, "b": 2}, True),
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 3, "b": 3}, False),
    ({"x-match": "any", "a": 1, "b": 2}, {"c": 1}, False),
    ({"x-match": "any", "a": 1, "b": 2}, {}, False),
    ({"x-match": "any", "a": 1, "b": 2}, None, False),
    # x- keys are ignored unless the mode ends in -with-x; x-match never takes part
    ({"x-a": 1, "a": 1}, {"a": 1}, True),
    ({"x-a": 1}, {"x-a": 2}, True),
    ({"x-match": "any", "x-foo": "1"}, {"x-foo": "1"}, False),
    ({"x-match": "any", "x-a": 1, "a": 1}, {"x-a": 1}, False),
    ({"x-match": "any-with-x", "x-foo": "1"}, {"x-foo": "1"}, True),
    ({"x-match": "any-with-x", "x-foo": "1"}, {"x-foo": "2"}, False),
    ({"x-match": "any-with-x", "x-a": 1, "a": 2}, {"a": 2}, True),
    ({"x-match": "all-with-x", "x-a": 1}, {}, False),
    ({"x-match": "all-with-x", "x-a": 1}, {"x-a": 1}, True),
    ({"x-match": "all-with-x", "x-a": 1, "a": 2}, {"x-a": 1}, False),
    ({"x-match": "all-with-x", "x-a": 1, "a": 2}, {"x-a": 1, "a": 2}, True),
    ({"x-match": "all-with-x"}, {"x-match": "any"}, True),
    ({"a": 1}, {"a": 1, "x-match": "any"}, True),
    ({"x-match": "any"}, {"x-match": "any"}, False),
    # a void binding value matches on presence alone
    ({"a": None}, {"a": "anything"}, True),
    ({"a": None}, {"a": None}, True),
    ({"a": None}, {"a": 0}, True),
    ({"a": None}, {"b": "anything"}, False),
    ({"a": None}, None, False),
    ({"a": "x"}, {"a": None}, False),
    ({"x-match": "any", "a": None, "b": 1}, {"a": False}, True),
    ({"x-match": "all", "a": None, "b": 1}, {"a": 1}, False),
    # strings: longstr and byte-array values compare as bytes
    ({"a": "abc"}, {"a": "abc"}, True),
    ({"a": "abc"}, {"a": "ABC"}, False),
    ({"a": "abc"}, {"a": b"abc"}, True),
    ({"a": b"abc"}, {"a": "abc"}, True),
    ({"a": "é"}, {"a": "é".encode()}, True),
    ({"a": ""}, {"a": ""}, True),
    ({"a": ""}, {"a": None}, False),
    # numbers compare by value across widths and with floats; never with strings or bools
    ({"a": 1}, {"a": "1"}, False),
    ({"a": "1"}, {"a": 1}, False),
    ({"a": 1}, {"a": True}, False),
    ({"a": True}, {"a": 1}, False),
    ({"a": False}, {"a": 0}, False),
    ({"a": True}, {"a": True}, True),
    ({"a": False}, {"a": False}, True),
    ({"a": True}, {"a": False}, False),
    ({"a": 2**40}, {"a": 2**40}, True),
    ({"a": 5}, {"a": 5}, True),
    ({"a": -7}, {"a": -7}, True),
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": 1.5}, {"a": 1.5}, True),
    ({"a": 1.5}, {"a": 1}, False),
    # decimals compare by (scale, unscaled value); timestamps as integer seconds
    ({"a": Decimal("1.5")}, {"a": Decimal("1.5")}, True),
    ({"a": Decimal("1.5")}, {"a": Decimal("1.50")}, False),
    ({"a": Decimal("15")}, {"a": 15}, False),
    ({"a": NEW_YEAR_2020}, {"a": NEW_YEAR_2020}, True),
    ({"a": NEW_YEAR_2020}, {"a": 1577836800}, True),
    ({"a": 1577836800}, {"a": NEW_YEAR_2020}, True),
    ({"a": NEW_YEAR_2020}, {"a": 1577836801}, False),
    # nested tables and arrays compare typed and in order
    ({"a": {"p": 1, "q": 2}}, {"a": {"p": 1, "q": 2}}, True),
    ({"a": {"p": 1, "q": 2}}, {"a": {"q": 2, "p": 1}}, False),  # as pika sends them;
    # pamqp (aio-pika) sorts table keys when encoding, so its tables always agree in order
    ({"a": {"p": 1}}, {"a": {"p": 1, "q": 2}}, False),
    ({"a": {"p": "s"}}, {"a": {"p": b"s"}}, False),
    ({"a": {"p": {"r": "s"}}}, {"a": {"p": {"r": "s"}}}, True),
    ({"a": {}}, {"a": {}}, True),
    ({"a": {}}, {"a": []}, True),  # both are an empty list in RabbitMQ
    ({"a": []}, {"a": {}}, True),
    ({"a": {"p": {}}}, {"a": {"p": []}}, False),  # nested, the field types differ
    ({"a": [{}]}, {"a": [[]]}, False),
    ({"a": {"p": 1}}, {"a": [1]}, False),
    ({"a": {"p": 1}}, {"a": "p"}, False),
    ({"a": ["s"]}, {"a": ["s"]}, True),
    ({"a": ["s"]}, {"a": [b"s"]}, False),
    ({"a": [1, 2]}, {"a": [1, 2]}, True),
    ({"a": [1, 2]}, {"a": [2, 1]}, False),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, False),
    ({"a": [1]}, {"a": [1.0]}, False),
    ({"a": [1]}, {"a": 1}, False),
    ({"a": [True]}, {"a": [1]}, False),
    ({"a": []}, {"a": []}, True),
    ({"a": [{"p": 1}, "s"]}, {"a": [{"p": 1}, "s"]}, True),
]

# bindings RabbitMQ would refuse today but may hold from before x-match was validated:
# an unknown x-match means "all"
LEGACY_CASES: list[tuple[dict[str, object], dict[str, object] | None, bool]] = [
    ({"x-match": "bogus", "a": 1}, {"a": 1}, True),
    ({"x-match": "bogus", "a": 1, "b": 2}, {"a": 1}, False),
    ({"x-match": "ANY", "a": 1, "b": 2}, {"a": 1}, False),
    ({"x-match": 5, "a": 1}, {"a": 1}, True),
    ({"x-match": b"any", "a": 1, "b": 2}, {"a": 1}, False),
    ({"x-match": "bogus"}, None, True),
]


@pytest.mark.parametrize(("binding_args", "headers", "expected"), MATCH_CASES + LEGACY_CASES)
def test_headers_match(
    binding_args: Mapping[str, object], headers: Mapping[str, object] | None, expected: bool
) -> None:
    assert headers_match(binding_args, headers) is expected


@pytest.mark.parametrize(("binding_args", "headers", "expected"), MATCH_CASES)
def test_key_order_does_not_matter(
    binding_args: dict[str, object], headers: dict[str, object] | None, expected: bool
) -> None:
    """RabbitMQ sorts both tables before comparing; insertion order must not change results."""
    reversed_args = dict(reversed(list(binding_args.items())))
    reversed_headers = None if headers is None else dict(reversed(list(headers.items())))
    assert headers_match(reversed_args, reversed_headers) is expected


MODES = ["all", "any", "all-with-x", "any-with-x"]

# (x-match value, RabbitMQ's detail text after "PRECONDITION_FAILED - ")
_EXPECTED = "expected all, any, all-with-x, or any-with-x"
INVALID_CASES: list[tuple[object, str]] = [
    ("foo", f'Invalid x-match field value <<"foo">>; {_EXPECTED}'),
    ("ALL", f'Invalid x-match field value <<"ALL">>; {_EXPECTED}'),
    ("Any", f'Invalid x-match field value <<"Any">>; {_EXPECTED}'),
    ("all ", f'Invalid x-match field value <<"all ">>; {_EXPECTED}'),
    ("", f"Invalid x-match field value <<>>; {_EXPECTED}"),
    ("héllo", f'Invalid x-match field value <<"héllo">>; {_EXPECTED}'),
    ("é", f'Invalid x-match field value <<"é">>; {_EXPECTED}'),
    ("ā", f"Invalid x-match field value <<196,129>>; {_EXPECTED}"),
    ("日本", f"Invalid x-match field value <<230,151,165,230,156,172>>; {_EXPECTED}"),
    ("a\x01b", f"Invalid x-match field value <<97,1,98>>; {_EXPECTED}"),
    ("\x7f", f"Invalid x-match field value <<127>>; {_EXPECTED}"),
    ('a"b', f'Invalid x-match field value <<"a\\"b">>; {_EXPECTED}'),
    ("a\\b", f'Invalid x-match field value <<"a\\\\b">>; {_EXPECTED}'),
    ("a\nb", f'Invalid x-match field value <<"a\\nb">>; {_EXPECTED}'),
    ("a\tb", f'Invalid x-match field value <<"a\\tb">>; {_EXPECTED}'),
    (23, "Invalid x-match field type signedint (value 23); expected longstr"),
    (-5, "Invalid x-match field type signedint (value -5); expected longstr"),
    (2**40, "Invalid x-match field type long (value 1099511627776); expected longstr"),
    (True, "Invalid x-match field type bool (value true); expected longstr"),
    (False, "Invalid x-match field type bool (value false); expected longstr"),
    (b"all", 'Invalid x-match field type binary (value <<"all">>); expected longstr'),
    (b"\xff\x00", "Invalid x-match field type binary (value <<255,0>>); expected longstr"),
    (None, "Invalid x-match field type void (value undefined); expected longstr"),
    (Decimal("1.5"), "Invalid x-match field type decimal (value {1,15}); expected longstr"),
    (
        datetime.datetime(2020, 1, 1),
        "Invalid x-match field type timestamp (value 1577836800); expected longstr",
    ),
    (
        {"k": "v"},
        'Invalid x-match field type table (value [{<<"k">>,longstr,<<"v">>}]); expected longstr',
    ),
    (
        ["a", 1],
        'Invalid x-match field type array (value [{longstr,<<"a">>},{signedint,1}]);'
        " expected longstr",
    ),
]


@pytest.mark.parametrize("mode", MODES)
def test_valid_x_match(mode: str) -> None:
    assert validate_x_match({"x-match": mode}) is None
    assert validate_x_match({"x-match": mode, "a": 1, "x-b": "c"}) is None


@pytest.mark.parametrize("binding_args", [None, {}, {"a": 1}, {"x-other": "foo"}])
def test_absent_x_match_is_valid(binding_args: dict[str, object] | None) -> None:
    assert validate_x_match(binding_args) is None


@pytest.mark.parametrize(("value", "text"), INVALID_CASES)
def test_invalid_x_match_text(value: object, text: str) -> None:
    assert validate_x_match({"x-match": value}) == text
    assert validate_x_match({"a": 1, "x-match": value, "x-b": 2}) == text

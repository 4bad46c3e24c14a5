"""Headers-exchange matching and `x-match` validation, as RabbitMQ does them.

`headers_match(binding_args, headers)` decides whether one binding matches a message's
headers; `validate_x_match(binding_args)` returns the detail text of the 406
PRECONDITION_FAILED that queue.bind / exchange.bind with a bad `x-match` gets, or None.
Values are those decoded by pamqp (str, bytes, int, float, bool, Decimal, datetime, dict,
list, None).
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping

from amqpd.encoding import erlang_binary

X_MATCH = "x-match"
_MODES = {
    # mode -> (all binding keys must match, binding keys starting with "x-" take part)
    "all": (True, False),
    "any": (False, False),
    "all-with-x": (True, True),
    "any-with-x": (False, True),
}
_VALID_TEXT = "expected all, any, all-with-x, or any-with-x"


def headers_match(
    binding_args: Mapping[str, object], message_headers: Mapping[str, object] | None
) -> bool:
    """True if a headers-exchange binding with `binding_args` matches `message_headers`.

    RabbitMQ's rules (checked against RabbitMQ 3.10 and its source):
    - `x-match` is "all" (also when absent, and -- for bindings that predate validation --
      when it holds any other value), "any", "all-with-x" or "any-with-x".
    - The `x-match` key itself never takes part. Other binding keys starting with "x-"
      take part only in the "-with-x" modes; otherwise they are ignored.
    - A binding key matches when the message has that header and either the binding
      value is void (None: presence alone is enough) or the two values are equal.
    - "all": every taking-part key must match. With no taking-part keys at all (e.g. no
      arguments) the binding matches every message, including one without headers.
    - "any": at least one key must match, so with no taking-part keys it matches nothing.
    - Equality is by value, as Erlang's `==` on RabbitMQ's decoded field values: str and
      bytes compare as bytes ("abc" == b"abc"); integers of any width and floats compare
      numerically (1 == 1.0); a bool equals only a bool (True != 1); a timestamp equals
      the integer count of its seconds; a Decimal equals only a Decimal with the same
      scale and unscaled value (1.5 != 1.50); void equals only void; 1 != "1"; an
      empty table equals an empty array.
    - Nested tables and arrays compare with their field types and in order, so
      {"a": 1, "b": 2} != {"b": 2, "a": 1} and ["s"] != [b"s"]. Nested integers of
      different wire widths differ in RabbitMQ, but pamqp decoding loses the width, so
      here any two nested ints of equal value are equal (a known small deviation).
    """
    mode = binding_args.get(X_MATCH)
    need_all, with_x = _MODES.get(mode, (True, False)) if isinstance(mode, str) else (True, False)
    headers = message_headers if message_headers is not None else {}
    for key, expected in binding_args.items():
        if key.startswith("x-") and (not with_x or key == X_MATCH):
            continue
        if key in headers:
            matched = expected is None or _equal(expected, headers[key])
        else:
            matched = False
        if matched is not need_all:
            return matched
    return need_all


def validate_x_match(binding_args: Mapping[str, object] | None) -> str | None:
    """RabbitMQ's detail text for an invalid `x-match` binding argument, else None.

    The caller raises `ChannelError(PRECONDITION_FAILED, text)`; RabbitMQ's reply text is
    e.g. 'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; expected all, any,
    all-with-x, or any-with-x'. Only the source exchange's type validates, so this
    applies to queue.bind and exchange.bind whose source is a headers exchange.
    A non-string value is reported by its field type; pamqp decoding loses the wire
    width of integers, so an int is named as pika sends it (signedint, or long when it
    does not fit 32 bits) and a float as "double".
    """
    if not binding_args or X_MATCH not in binding_args:
        return None
    value = binding_args[X_MATCH]
    if isinstance(value, str):
        if value in _MODES:
            return None
        return f"Invalid x-match field value {erlang_binary(value.encode())}; {_VALID_TEXT}"
    type_name, shown = _format_typed(value)
    return f"Invalid x-match field type {type_name} (value {shown}); expected longstr"


# --- equality -------------------------------------------------------------------------


def _timestamp(value: datetime.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return int(value.timestamp())


def _equal(a: object, b: object) -> bool:
    """Top-level header equality (RabbitMQ compares the values, not the field types)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, str | bytes) and isinstance(b, str | bytes):
        return (a.encode() if isinstance(a, str) else a) == (
            b.encode() if isinstance(b, str) else b
        )
    if isinstance(a, datetime.datetime):
        a = _timestamp(a)
    if isinstance(b, datetime.datetime):
        b = _timestamp(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        if isinstance(a, dict | list) and isinstance(b, dict | list) and not a and not b:
            return True  # an empty table and an empty array are the same empty list
        return _typed_equal(a, b)
    if a is None or b is None:
        return a is None and b is None
    return False


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    return type(value).__name__


def _typed_equal(a: object, b: object) -> bool:
    """Equality of values nested in tables/arrays, where RabbitMQ also compares field types."""
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        return all(
            ka == kb and _typed_equal(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_typed_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime.datetime) and isinstance(b, datetime.datetime):
        return _timestamp(a) == _timestamp(b)
    return a == b


# --- Erlang-style term formatting for error texts ---------------------------------------


def _format_typed(value: object) -> tuple[str, str]:
    """(RabbitMQ field type name, Erlang rendering of the decoded value)."""
    if value is None:
        return "void", "undefined"
    if isinstance(value, bool):
        return "bool", "true" if value else "false"
    if isinstance(value, int):
        return ("signedint" if -(2**31) <= value < 2**31 else "long"), str(value)
    if isinstance(value, float):
        return "double", repr(value)
    if isinstance(value, str):
        return "longstr", erlang_binary(value.encode())
    if isinstance(value, bytes | bytearray):
        return "binary", erlang_binary(bytes(value))
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        scale = -exponent if isinstance(exponent, int) else 0
        if scale < 0:
            unscaled, scale = unscaled * 10**-scale, 0
        return "decimal", f"{{{scale},{unscaled}}}"
    if isinstance(value, datetime.datetime):
        return "timestamp", str(_timestamp(value))
    if isinstance(value, dict):
        fields = []
        for k, v in value.items():
            type_name, shown = _format_typed(v)
            fields.append(f"{{{erlang_binary(str(k).encode())},{type_name},{shown}}}")
        return "table", "[" + ",".join(fields) + "]"
    if isinstance(value, list):
        items = ["{{{},{}}}".format(*_format_typed(v)) for v in value]
        return "array", "[" + ",".join(items) + "]"
    return type(value).__name__, repr(value)

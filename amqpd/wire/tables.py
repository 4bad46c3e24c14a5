"""Field tables and arrays from the wire, decoded without recursion and in linear time.

`decode_table(data, offset)` returns `(end, table)` for the long-length-prefixed table at
`offset` with the same values pamqp's `decode.field_table` gives (scalars are decoded by
pamqp's own functions on a bounded slice). Unlike pamqp it walks nested tables and arrays
with an explicit stack (no RecursionError, no copy of the rest of the buffer per value), refuses
nesting deeper than `MAX_DEPTH` and any value that overruns its table or array, and raises
`TableError` (a ValueError) for everything malformed, `TableTooDeep` for too deep.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import decode

# Tables and arrays nested deeper than this are refused. RabbitMQ has no limit, but no client
# nests more than a few levels, and decoded values are walked recursively further on.
MAX_DEPTH = 100

_long = struct.Struct(">I")
_SCALARS = {kind[0]: function for kind, function in decode.TABLE_MAPPING.items()}
_TABLE = ord("F")
_ARRAY = ord("A")
_LONG_SIZED = frozenset((ord("S"), ord("x")))
_WIDEST_SCALAR = 9  # a decimal (5), a long long or double (8), plus a margin


class TableError(ValueError):
    """A field table that does not decode (malformed, overrunning, or nested too deep)."""


class TableTooDeep(TableError):
    """Tables or arrays nested deeper than MAX_DEPTH."""


def decode_table(data: bytes, offset: int = 0) -> tuple[int, dict[str, Any]]:
    """(offset after the table, the table) for the table whose size field is at `offset`."""
    try:
        return _decode(data, offset, _TABLE)
    except TableError:
        raise
    except (struct.error, IndexError, UnicodeDecodeError, TypeError, ValueError, OverflowError,
            OSError) as error:  # fmt: skip
        raise TableError(f"malformed field table: {error}") from None


def _decode(data: bytes, offset: int, kind: int) -> tuple[int, Any]:
    (size,) = _long.unpack_from(data, offset)
    pos = offset + 4
    end = pos + size
    if end > len(data):
        raise TableError("field table longer than its frame")
    root: Any = {} if kind == _TABLE else []
    stack: list[tuple[Any, int]] = [(root, end)]
    scalars = _SCALARS
    unpack_long = _long.unpack_from
    container, end = root, end
    while True:
        if pos >= end:
            if pos > end:
                raise TableError("value overruns its field table")
            stack.pop()
            if not stack:
                return pos, root
            container, end = stack[-1]
            continue
        is_table = type(container) is dict
        if is_table:
            key_size = data[pos]
            pos += 1
            if pos + key_size > end:
                raise TableError("field name overruns its field table")
            key = data[pos : pos + key_size].decode()
            pos += key_size
        kind = data[pos]
        pos += 1
        if kind == _TABLE or kind == _ARRAY:
            (size,) = unpack_long(data, pos)
            child_end = pos + 4 + size
            if child_end > end:
                raise TableError("nested value overruns its field table")
            if len(stack) >= MAX_DEPTH:
                raise TableTooDeep(f"field tables nested deeper than {MAX_DEPTH} levels")
            value: Any = {} if kind == _TABLE else []
            if is_table:
                container[key] = value
            else:
                container.append(value)
            stack.append((value, child_end))
            container, end = value, child_end
            pos += 4
            continue
        function = scalars.get(kind)
        if function is None:
            raise TableError(f"unknown field type {kind}")
        if kind in _LONG_SIZED:
            (size,) = unpack_long(data, pos)
            if pos + 4 + size > end:
                raise TableError("string overruns its field table")
            chunk = data[pos : pos + 4 + size]
        else:
            chunk = data[pos : pos + _WIDEST_SCALAR]
        consumed, value = function(chunk)
        pos += consumed
        if is_table:
            container[key] = value
        else:
            container.append(value)

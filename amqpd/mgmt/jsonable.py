"""AMQP field values (tables, byte strings, decimals, timestamps) as JSON values.

`to_json(value)` converts what pamqp decodes into what RabbitMQ's management API shows:
byte strings become text (undecodable bytes replaced), timestamps become epoch seconds,
decimals become numbers; tables nested deeper than 64 levels are cut at "...". Pure
functions, no state.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

MAX_DEPTH = 64  # deeper tables (AMQP allows them) are cut: JSON encoders recurse


def to_json(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {str(key): to_json(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value

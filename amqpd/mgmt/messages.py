"""Messages as the management API shows and accepts them (`/get`, `/publish`).

`properties_json(header)` decodes a raw content-header payload into RabbitMQ's property
names (`type` for the AMQP `type` field, timestamps as epoch seconds); `build_header`
does the reverse for a publish request. `payload_json` applies RabbitMQ's `encoding`
(`auto`: UTF-8 text when the body decodes, else base64) and `truncate` rules.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from pamqp import commands, header

from amqpd.mgmt.jsonable import to_json

_NAMES = {"message_type": "type"}
_ATTRIBUTES = {value: key for key, value in _NAMES.items()}


class BadMessage(ValueError):
    """A publish request whose properties or payload cannot be encoded."""


def properties_json(payload: bytes) -> dict[str, Any]:
    content = header.ContentHeader()
    content.unmarshal(payload)
    props = content.properties
    shown: dict[str, Any] = {}
    for attribute in props.attributes():
        value = getattr(props, attribute)
        if value is None or (attribute == "cluster_id" and not value):
            continue
        shown[_NAMES.get(attribute, attribute)] = to_json(value)
    return shown


def payload_json(body: bytes, encoding: str, truncate: int | None) -> dict[str, Any]:
    shown = body if truncate is None else body[:truncate]
    if encoding == "auto":
        try:
            return {"payload": shown.decode("utf-8"), "payload_encoding": "string"}
        except UnicodeDecodeError:
            pass
    return {"payload": base64.b64encode(shown).decode(), "payload_encoding": "base64"}


def _table(value: Any) -> Any:
    """JSON headers -> values pamqp can encode (ints, floats, strings, nested tables)."""
    if isinstance(value, dict):
        return {str(key): _table(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_table(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise BadMessage(f"unsupported header value {value!r}")


def build_header(properties: dict[str, Any], body_size: int) -> bytes:
    """A content-header payload for `properties` (RabbitMQ's JSON names)."""
    if not isinstance(properties, dict):
        raise BadMessage("properties must be an object")
    values: dict[str, Any] = {}
    for name, value in properties.items():
        attribute = _ATTRIBUTES.get(name, name)
        if attribute == "headers":
            value = _table(value)
        elif attribute == "timestamp" and isinstance(value, int | float):
            value = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
        values[attribute] = value
    try:
        props = commands.Basic.Properties(**values)
        return header.ContentHeader(0, body_size, props).marshal()
    except (TypeError, ValueError) as error:
        raise BadMessage(f"bad properties: {error}") from None


def decode_payload(payload: Any, encoding: str) -> bytes:
    if not isinstance(payload, str):
        raise BadMessage("payload must be a string")
    if encoding == "string":
        return payload.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            raise BadMessage("payload is not valid base64") from None
    raise BadMessage(f"payload_encoding must be string or base64, got {encoding!r}")

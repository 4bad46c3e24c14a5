"""AMQP errors as exceptions that carry their reply code and RabbitMQ's reply text.

Raise `ChannelError` for a soft error (the channel closes) and `ConnectionError_` for a
hard one (the connection closes). The layer that owns the socket turns them into
channel.close / connection.close with the class and method ids of the failing method.
"""

from __future__ import annotations

CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    200: "OK",
    312: "NO_ROUTE",
    313: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


class AMQPError(Exception):
    """An error with a reply code; `text` is the full reply text, name prefix included."""

    def __init__(self, code: int, detail: str, index: int = 0) -> None:
        self.code = code
        self.index = index  # class_id << 16 | method_id of the method at fault, 0 if none
        self.text = truncate_reply_text(f"{REPLY_NAMES[code]} - {detail}")
        super().__init__(self.text)


class ChannelError(AMQPError):
    """Closes the channel only."""


class ConnectionError_(AMQPError):  # noqa: N801 - the builtin name is taken
    """Closes the whole connection."""


def truncate_reply_text(text: str) -> str:
    """Reply texts are short strings: like RabbitMQ, keep 252 bytes and add '...'."""
    raw = text.encode()
    if len(raw) <= 255:
        return text
    return raw[:252].decode(errors="ignore") + "..."


def describe_queue(name: str, vhost: str) -> str:
    return f"queue '{name}' in vhost '{vhost}'"


def describe_exchange(name: str, vhost: str) -> str:
    return f"exchange '{name}' in vhost '{vhost}'"

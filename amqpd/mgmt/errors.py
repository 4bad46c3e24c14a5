"""HTTP errors of the management API, with RabbitMQ's JSON bodies and status codes.

Handlers raise `ApiError`; the router turns it into `{"error": ..., "reason": ...}` with
its status. `from_amqp` maps a core `ChannelError`/`ConnectionError_` (a rule the vhost
enforced) onto the HTTP answer RabbitMQ gives for the same rule.
"""

from __future__ import annotations

from typing import Any

from amqpd.core.errors import ACCESS_REFUSED, NOT_FOUND, AMQPError


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: Any) -> None:  # text, or a list
        super().__init__(str(reason))
        self.status = status
        self.error = error
        self.reason = reason


def not_found() -> ApiError:
    return ApiError(404, "Object Not Found", "Not Found")


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


def not_authorised(reason: str) -> ApiError:
    return ApiError(401, "not_authorised", reason)


def method_not_allowed() -> ApiError:
    return ApiError(405, "Method Not Allowed", "Method Not Allowed")


def from_amqp(error: AMQPError) -> ApiError:
    if error.code == NOT_FOUND:
        return not_found()
    if error.code == ACCESS_REFUSED:
        return not_authorised("Access refused.")
    return bad_request(error.text.partition(" - ")[2] or error.text)

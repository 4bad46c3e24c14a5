"""Server-generated names in RabbitMQ's format: `amq.gen-...` queues, `amq.ctag-...` tags."""

from __future__ import annotations

import base64
import os


def _random_suffix() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def generated_queue_name() -> str:
    return "amq.gen-" + _random_suffix()


def generated_consumer_tag() -> str:
    return "amq.ctag-" + _random_suffix()

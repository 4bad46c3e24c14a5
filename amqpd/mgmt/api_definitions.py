"""`/api/definitions[/vhost]`: export (GET) and import (POST) in RabbitMQ's format.

Administrators only, as in RabbitMQ. An import answers 204, or 400 with the reason when
the file names a vhost amqpd does not have or a declaration fails.
"""

from __future__ import annotations

import json
from typing import Any

from amqpd.mgmt import definitions
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request
from amqpd.mgmt.router import NO_CONTENT, Router


def export(call: Call) -> Any:
    call.requester.require_admin()
    vhost = call.vhost().name if "vhost" in call.params else None
    return definitions.export(call.mgmt.broker, vhost, call.mgmt.policies)


def import_(call: Call) -> Any:
    call.requester.require_admin()
    vhost = call.vhost().name if "vhost" in call.params else None
    body = call.json()
    if "file" in body and isinstance(body["file"], str):  # the web UI's upload form
        try:
            body = json.loads(body["file"])
        except ValueError as error:
            raise bad_request(f"file is not valid JSON: {error}") from None
    try:
        definitions.import_definitions(call.mgmt.broker, body, vhost, call.mgmt.policies)
    except definitions.DefinitionsError as error:
        raise bad_request(str(error)) from None
    return NO_CONTENT


def register(router: Router) -> None:
    router.add("GET", "/api/definitions", export)
    router.add("POST", "/api/definitions", import_)
    router.add("GET", "/api/definitions/{vhost}", export)
    router.add("POST", "/api/definitions/{vhost}", import_)

"""`/api/policies[/vhost[/name]]`: list, show, set (PUT) and clear (DELETE) policies.

Reading needs the vhost; changing needs the `policymaker` or `administrator` tag, as in
RabbitMQ. Invalid definitions answer 400 with RabbitMQ's "Validation failed" text.
"""

from __future__ import annotations

from typing import Any

from amqpd.mgmt import listing
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import bad_request, not_authorised, not_found
from amqpd.mgmt.policies import PolicyError
from amqpd.mgmt.router import CREATED, NO_CONTENT, Router


def _require_policymaker(call: Call) -> None:
    requester = call.requester
    if not (requester.is_admin or "policymaker" in requester.tags):
        raise not_authorised("Not policymaker user")


def list_policies(call: Call) -> Any:
    names = {vhost.name for vhost in call.vhosts()}
    found = [p for p in call.mgmt.policies.list() if p["vhost"] in names]
    return listing.render(found, call.query)


def show_policy(call: Call) -> Any:
    vhost = call.vhost()
    found = call.mgmt.policies.get(vhost.name, call.params["name"])
    if found is None:
        raise not_found()
    return found


def put_policy(call: Call) -> Any:
    _require_policymaker(call)
    vhost = call.vhost()
    try:
        created = call.mgmt.policies.put(vhost.name, call.params["name"], call.json())
    except PolicyError as error:
        raise bad_request(str(error)) from None
    return CREATED if created else NO_CONTENT


def delete_policy(call: Call) -> Any:
    _require_policymaker(call)
    vhost = call.vhost()
    if not call.mgmt.policies.delete(vhost.name, call.params["name"]):
        raise not_found()
    return NO_CONTENT


def register(router: Router) -> None:
    router.add("GET", "/api/policies", list_policies)
    router.add("GET", "/api/policies/{vhost}", list_policies)
    router.add("GET", "/api/policies/{vhost}/{name}", show_policy)
    router.add("PUT", "/api/policies/{vhost}/{name}", put_policy)
    router.add("DELETE", "/api/policies/{vhost}/{name}", delete_policy)
    router.add("GET", "/api/operator-policies", lambda call: [])
    router.add("GET", "/api/operator-policies/{vhost}", lambda call: [])

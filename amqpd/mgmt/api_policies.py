"""`/api/policies[/vhost[/name]]` and `/api/operator-policies[/vhost[/name]]`: list, show,
set (PUT) and clear (DELETE) policies; the vhost applies a change at once.

Reading needs the vhost; changing a policy needs the `policymaker` or `administrator` tag,
an operator policy `administrator`, as in RabbitMQ. Invalid definitions answer 400 with
RabbitMQ's "Validation failed" text.
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


def _require_admin(call: Call) -> None:
    if not call.requester.is_admin:
        raise not_authorised("Not administrator user")


class PolicyHandlers:
    """The handlers of one of the two kinds: policies or operator policies."""

    def __init__(self, operator: bool) -> None:
        self.operator = operator
        self._may_change = _require_admin if operator else _require_policymaker

    def list(self, call: Call) -> Any:
        names = {vhost.name for vhost in call.vhosts()}
        listed = call.mgmt.policies.list(operator=self.operator)
        return listing.render([p for p in listed if p["vhost"] in names], call.query)

    def show(self, call: Call) -> Any:
        vhost = call.vhost()
        found = call.mgmt.policies.get(vhost.name, call.params["name"], operator=self.operator)
        if found is None:
            raise not_found()
        return found

    def put(self, call: Call) -> Any:
        self._may_change(call)
        vhost = call.vhost()
        try:
            created = call.mgmt.policies.put(
                vhost.name, call.params["name"], call.json(), operator=self.operator
            )
        except PolicyError as error:
            raise bad_request(str(error)) from None
        return CREATED if created else NO_CONTENT

    def delete(self, call: Call) -> Any:
        self._may_change(call)
        vhost = call.vhost()
        if not call.mgmt.policies.delete(vhost.name, call.params["name"], operator=self.operator):
            raise not_found()
        return NO_CONTENT


def register(router: Router) -> None:
    for base, operator in (("/api/policies", False), ("/api/operator-policies", True)):
        handlers = PolicyHandlers(operator)
        router.add("GET", base, handlers.list)
        router.add("GET", base + "/{vhost}", handlers.list)
        router.add("GET", base + "/{vhost}/{name}", handlers.show)
        router.add("PUT", base + "/{vhost}/{name}", handlers.put)
        router.add("DELETE", base + "/{vhost}/{name}", handlers.delete)

"""What every API handler gets: the broker, the rate sampler, and one request's details.

`Mgmt` is created once per server; `Call` once per request (the authenticated requester,
decoded path parameters, query and JSON body). `Mgmt.views()` and `Mgmt.vhost()` are the
entry points to broker state.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqpd.core.vhost import VHost
from amqpd.mgmt import inspect
from amqpd.mgmt.access import Requester
from amqpd.mgmt.errors import bad_request, not_found
from amqpd.mgmt.order import SortedNames
from amqpd.mgmt.policies import Policies, policies_path
from amqpd.mgmt.rates import Rates
from amqpd.mgmt.rows import QueueText

if TYPE_CHECKING:
    from amqpd.broker import Broker


class Mgmt:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.config = broker.config
        self.rates = Rates()
        self.node = inspect.node_name()
        self.started = time.time()
        self.policies = Policies(broker.vhosts, policies_path(broker.config.data_dir))
        self.listeners: list[dict[str, Any]] = []  # as /api/overview shows them
        self.queue_text = QueueText(self.node)  # each queue's JSON, its static part kept
        self.queue_order = SortedNames()  # each vhost's queue names, sorted

    def views(self) -> list[inspect.ConnectionView]:
        return inspect.connections(self.broker.connections)

    def unacked_by_queue(self, views: list[inspect.ConnectionView] | None = None) -> Counter[Any]:
        return inspect.unacked_by_queue(self.views() if views is None else views)

    def vhost(self, name: str) -> VHost:
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise not_found()
        return vhost

    def visible_vhosts(self, requester: Requester) -> list[VHost]:
        return [v for v in self.broker.vhosts.values() if requester.sees_vhost(v.name)]


class Call:
    def __init__(
        self,
        mgmt: Mgmt,
        requester: Requester,
        method: str,
        params: dict[str, str],
        query: Mapping[str, str],
        body: bytes,
        headers: Mapping[str, str],
    ) -> None:
        self.mgmt = mgmt
        self.requester = requester
        self.method = method
        self.params = params
        self.query = query
        self._body = body
        self.headers = headers

    def json(self) -> dict[str, Any]:
        """The request body as a JSON object (empty body: {})."""
        if not self._body.strip():
            return {}
        try:
            value = json.loads(self._body)
        except ValueError as error:
            raise bad_request(f"body is not valid JSON: {error}") from None
        except RecursionError:
            raise bad_request("body is nested too deeply") from None
        if not isinstance(value, dict):
            raise bad_request("body must be a JSON object")
        return value

    def vhost(self) -> VHost:
        """The vhost named in the path, if the requester may see it."""
        vhost = self.mgmt.vhost(self.params["vhost"])
        self.requester.require_vhost(vhost.name)
        return vhost

    def vhosts(self) -> list[VHost]:
        """The vhost in the path, or every vhost the requester may see."""
        if "vhost" in self.params:
            return [self.vhost()]
        return self.mgmt.visible_vhosts(self.requester)

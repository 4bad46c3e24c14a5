"""Run amqpd from tests: the `Broker` subprocess, its settings and address, the pytest plugin.

`with Broker() as broker:` starts amqpd on a free port with a private data directory and
stops it on exit (see process.py); `amqpd.testing.plugin` is the pytest plugin, registered
through the `pytest11` entry point, with the `amqpd`, `amqpd_url`, `amqpd_vhost` and
`amqpd_factory` fixtures. Importing this package starts nothing and imports no client library.
"""

from amqpd.testing.endpoint import Endpoint
from amqpd.testing.process import Broker, BrokerStartError
from amqpd.testing.settings import BrokerSettings

__all__ = ["Broker", "BrokerSettings", "BrokerStartError", "Endpoint"]

"""Operator surfaces: RabbitMQ's management HTTP API, Prometheus metrics, definitions, and
a dashboard, served from the broker's event loop.

Everything here reads broker state through the vhost API (`amqpd.core.vhost.VHost`) and
the small connection view in `amqpd.mgmt.inspect`; nothing reaches into a connection's or
channel's protocol state. aiohttp and prometheus_client are imported only when the
listeners start, so a broker without them starts as fast as before.
"""

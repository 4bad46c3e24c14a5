"""The asyncio.Protocol for one client socket: a thin adapter around `Connection`.

It creates the connection with the running event loop as its clock (or the clock it is
given: the test controls' movable one) and forwards every
transport event to it unchanged. All protocol rules live in connection.py, which can be
driven without a socket.
"""

from __future__ import annotations

import asyncio

from amqpd.connection import BrokerView, Connection
from amqpd.transport import Clock


class AmqpProtocol(asyncio.Protocol):
    __slots__ = ("connection",)

    def __init__(self, broker: BrokerView, clock: Clock | None = None) -> None:
        self.connection = Connection(broker, clock or asyncio.get_running_loop())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connection.connection_made(transport)  # type: ignore[arg-type]  # a Transport

    def data_received(self, data: bytes) -> None:
        self.connection.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()

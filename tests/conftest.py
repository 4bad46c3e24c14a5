"""Shared fixtures: one amqpd process per test session, and pika helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pika
import pytest

from tests.broker_process import BrokerProcess, external_broker


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    def params(self, **kwargs: object) -> pika.ConnectionParameters:
        kwargs.setdefault("credentials", pika.PlainCredentials("guest", "guest"))
        return pika.ConnectionParameters(host=self.host, port=self.port, **kwargs)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"


@pytest.fixture(scope="session")
def broker_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess | None]:
    """The session-wide amqpd behind `broker` (its log included), None under AMQPD_TEST_URL."""
    if external_broker() is not None:
        yield None
        return
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-data")) as proc:
        yield proc


@pytest.fixture(scope="session")
def broker(broker_process: BrokerProcess | None) -> BrokerAddress:
    """The broker under test: a session-wide amqpd, or AMQPD_TEST_URL if set."""
    if broker_process is None:
        outside = external_broker()
        assert outside is not None
        return BrokerAddress(*outside)
    return BrokerAddress(broker_process.host, broker_process.port)


@pytest.fixture
def connection(broker: BrokerAddress) -> Iterator[pika.BlockingConnection]:
    conn = pika.BlockingConnection(broker.params())
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection):  # type: ignore[no-untyped-def]
    return connection.channel()


@pytest.fixture
def unique() -> str:
    """A name no other test uses, so tests can share one broker."""
    return f"t-{uuid.uuid4().hex[:10]}"

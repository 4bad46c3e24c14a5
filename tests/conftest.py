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
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddress]:
    """The broker under test: a session-wide amqpd, or AMQPD_TEST_URL if set."""
    outside = external_broker()
    if outside is not None:
        yield BrokerAddress(*outside)
        return
    with BrokerProcess(tmp_path_factory.mktemp("amqpd-data")) as proc:
        yield BrokerAddress(proc.host, proc.port)


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

"""Application-level checks: real frameworks that depend on RabbitMQ's extensions.

- Celery with quorum queues (native delayed delivery: `celery_delayed_N` queues with TTLs
  and dead-lettering) runs a `countdown=1` task and a task that retries itself.
- dramatiq's dead-letter queue receives a message after its retries are used up.
- aio-pika's `patterns.RPC` call with an expiration times out instead of running late.
- A FastStream app starts (passive declare of `amq.rabbitmq.reply-to`) and answers
  `broker.request()` over direct reply-to.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import BrokerAddress


def _wait(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_celery_quorum_queues_countdown_and_retry(broker: BrokerAddress) -> None:
    celery = pytest.importorskip("celery")
    from celery.contrib.testing.worker import start_worker
    from kombu import Queue

    name = f"celery-{uuid.uuid4().hex[:8]}"
    app = celery.Celery(name, broker=broker.url.replace("amqp://", "pyamqp://"))
    app.conf.update(
        task_default_queue=name,
        task_queues=[Queue(name, queue_arguments={"x-queue-type": "quorum"})],
        task_default_queue_type="quorum",
        broker_transport_options={"confirm_publish": True},
        worker_detect_quorum_queues=True,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
    )
    ran: list[tuple[str, float]] = []
    attempts: list[int] = []

    @app.task(name=f"{name}.later")
    def later(stamp: float) -> None:
        ran.append(("later", time.monotonic() - stamp))

    @app.task(bind=True, name=f"{name}.flaky", max_retries=3)
    def flaky(self) -> None:  # type: ignore[no-untyped-def]
        attempts.append(self.request.retries)
        if self.request.retries < 1:
            raise self.retry(countdown=1)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        later.apply_async((time.monotonic(),), countdown=1)
        flaky.delay()
        _wait(lambda: len(ran) == 1 and len(attempts) == 2, timeout=20)
    assert ran[0][1] >= 0.9  # it waited for its countdown
    assert attempts == [0, 1]


async def test_aio_pika_rpc_expiration_times_out(broker: BrokerAddress) -> None:
    aio_pika = pytest.importorskip("aio_pika")
    import asyncio

    from aio_pika.patterns import RPC

    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel()
        rpc = await RPC.create(channel)
        calls: list[int] = []
        method = f"slow_{uuid.uuid4().hex[:8]}"

        async def slow(*, x: int) -> int:
            calls.append(x)
            return x

        # Not auto-delete: the queue outlives its consumer, so a call can wait in it.
        await rpc.register(method, slow, auto_delete=False)
        assert await rpc.call(method, kwargs={"x": 1}) == 1
        await rpc.unregister(slow)
        task = asyncio.ensure_future(rpc.call(method, kwargs={"x": 2}, expiration=1))
        deadline = time.monotonic() + 15
        while not (
            await channel.declare_queue(method, passive=True)
        ).declaration_result.message_count:
            assert time.monotonic() < deadline, "the call was never queued"
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.2)  # queued for longer than its expiration
        await rpc.register(method, slow, auto_delete=False)
        # Expired, the call is dead-lettered (rpc.dlx, a headers exchange) back to the caller.
        with pytest.raises(asyncio.TimeoutError) as raised:
            await asyncio.wait_for(task, 15)
        assert raised.value.args[:1] == ("Message timed-out",)  # not wait_for's own timeout
        assert calls == [1]
        await channel.queue_delete(method)
        await rpc.close()
    finally:
        await connection.close()


def test_dramatiq_dead_letter_queue(broker: BrokerAddress) -> None:
    dramatiq = pytest.importorskip("dramatiq")
    import pika
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.middleware import Retries

    queue = f"dq-{uuid.uuid4().hex[:8]}"
    rabbit = RabbitmqBroker(url=broker.url)
    for middleware in list(rabbit.middleware):
        if isinstance(middleware, Retries):
            rabbit.middleware.remove(middleware)
    rabbit.add_middleware(Retries(max_retries=1, min_backoff=10, max_backoff=20))
    dramatiq.set_broker(rabbit)
    calls: list[int] = []

    @dramatiq.actor(queue_name=queue, broker=rabbit)
    def failing() -> None:
        calls.append(1)
        raise RuntimeError("always fails")

    worker = dramatiq.Worker(rabbit, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        failing.send()
        connection = pika.BlockingConnection(broker.params())
        channel = connection.channel()

        def dead_lettered() -> bool:
            return channel.queue_declare(f"{queue}.XQ", passive=True).method.message_count == 1

        _wait(dead_lettered)
        connection.close()
    finally:
        worker.stop()
        rabbit.close()
    assert len(calls) == 2  # the first try and one retry


async def test_faststream_app_starts_and_answers_requests(broker: BrokerAddress) -> None:
    rabbit = pytest.importorskip("faststream.rabbit")

    app_broker = rabbit.RabbitBroker(broker.url)
    queue = f"fs-{uuid.uuid4().hex[:8]}"

    @app_broker.subscriber(queue)
    async def handle(body: str) -> str:
        return f"echo: {body}"

    async with app_broker:
        await app_broker.start()
        response = await app_broker.request("hello", queue, timeout=5)
        assert await response.decode() == "echo: hello"

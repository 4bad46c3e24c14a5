"""Producer and consumer processes of `bench run`, talking to the parent over a Pipe.

Each worker process runs one asyncio (uvloop) loop holding one or more connections.
Messages to the parent: ("ready", wid), ("error", wid, text), ("tick", wid, stats) once
a second after the start, ("count", wid, received, last_ns) in answer to ("poll",), and
("final", wid, stats) at the end. From the parent: ("start", t0_ns, end_ns), ("poll",),
("stop",). Producers stop by themselves (duration or count) and wait for outstanding
confirms; consumers run until told to stop. All times are time.monotonic_ns(), which
is one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from pamqp import commands

from .client import BenchClient, connect
from .consumer import Consumer
from .settings import RunConfig
from .stats import Histogram, merge_into
from .wire import PRODUCER_SHIFT, STAMP, PublishTemplate

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, but stay usable without
    uvloop = None  # type: ignore[assignment]


def run_loop(main: Any) -> None:
    """Run a coroutine on uvloop when available."""
    if uvloop is not None:
        uvloop.run(main)
    else:  # pragma: no cover
        asyncio.run(main)


class Mailbox:
    """The worker's end of the parent pipe, readable from the event loop."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(pipe.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self.pipe.poll():
                self.inbox.put_nowait(self.pipe.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            self.inbox.put_nowait(("stop",))

    def send(self, *message: Any) -> None:
        self.pipe.send(message)


async def _sleep_until(deadline_ns: int) -> None:
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


# -- producers -------------------------------------------------------------------------


class Producer(BenchClient):
    """Publishes pre-encoded messages; tracks confirms per batch of equal send time."""

    def __init__(self, producer_id: int, cfg: RunConfig) -> None:
        super().__init__()
        self.producer_id = producer_id
        self.cfg = cfg
        self.sent = 0
        self.confirmed = 0
        self.nacked = 0
        self.confirm_hist: Histogram = {}
        self.last_confirm_ns = 0
        self.publish_end_ns = 0
        self.window_open = asyncio.Event()
        self._batches: deque[list[int]] = deque()  # [first_tag, last_tag, send_ns]
        self._early: set[int] = set()  # tags acked singly ahead of the front batch

    def _fail(self, error: Any) -> None:
        super()._fail(error)
        self.window_open.set()

    @property
    def outstanding(self) -> int:
        return self.sent - self.confirmed - self.nacked

    def _record(self, count: int, sent_ns: int) -> None:
        if count <= 0:
            return
        lat = (self.now - sent_ns) // 1000
        if lat >= 1024:
            shift = lat.bit_length() - 10
            lat = (lat >> shift) << shift
        elif lat < 0:
            lat = 0
        self.confirm_hist[lat] = self.confirm_hist.get(lat, 0) + count

    def on_confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        batches = self._batches
        settled = 0
        if multiple:
            while batches and batches[0][0] <= delivery_tag:
                batch = batches[0]
                last = min(batch[1], delivery_tag)
                count = last - batch[0] + 1
                if self._early:
                    for tag in range(batch[0], last + 1):
                        if tag in self._early:
                            self._early.discard(tag)
                            count -= 1
                self._record(count, batch[2])
                settled += count
                if last == batch[1]:
                    batches.popleft()
                else:
                    batch[0] = last + 1
        elif batches and batches[0][0] == delivery_tag:
            batch = batches[0]
            self._record(1, batch[2])
            settled = 1
            batch[0] += 1
            if batch[0] > batch[1]:
                batches.popleft()
        else:
            for batch in batches:
                if batch[0] <= delivery_tag <= batch[1]:
                    if delivery_tag not in self._early:
                        self._early.add(delivery_tag)
                        self._record(1, batch[2])
                        settled = 1
                    break
        while self._early and batches and batches[0][0] in self._early:
            batch = batches[0]
            self._early.discard(batch[0])
            batch[0] += 1
            if batch[0] > batch[1]:
                batches.popleft()
        if ack:
            self.confirmed += settled
        else:
            self.nacked += settled
        self.last_confirm_ns = self.now
        if self.outstanding < self.cfg.confirm:
            self.window_open.set()

    async def _wait(self, event: asyncio.Event, deadline_ns: int) -> None:
        if self.cfg.count:
            await event.wait()
            return
        timeout = (deadline_ns - time.monotonic_ns()) / 1e9
        if timeout > 0:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass

    async def publish(self, start_ns: int, end_ns: int) -> None:
        """Publish until end_ns (or cfg.count messages), honouring rate, window, flow."""
        cfg = self.cfg
        template = PublishTemplate(
            1,
            cfg.exchange,
            cfg.routing_key(),
            cfg.size,
            self.frame_max,
            cfg.persistent,
            cfg.mandatory,
            cfg.max_priority,
        )
        prefix, suffix, pack = template.prefix, template.suffix, STAMP.pack
        levels = len(template.prefixes) > 1
        batch = 0  # with priorities, each batch of publishes gets the next level
        batch_max = max(1, min(2000, 65536 // template.wire_size))
        key_base = self.producer_id << PRODUCER_SHIFT
        window, count, rate = cfg.confirm, cfg.count, cfg.rate
        writable, window_open = self.writable, self.window_open
        clock = time.monotonic_ns
        transport = self.transport
        assert transport is not None
        seq = 0
        while True:
            now = clock()
            if count:
                if seq >= count:
                    break
            elif now >= end_ns:
                break
            if self.closed is not None:
                raise self.closed
            n = batch_max
            if rate:
                due = int((now - start_ns) * rate / 1e9) + 1 - seq
                if due <= 0:
                    next_ns = start_ns + int(seq * 1e9 / rate)
                    await asyncio.sleep(max(0.0, (next_ns - now) / 1e9))
                    continue
                n = min(n, due)
            if window:
                room = window - (seq - self.confirmed - self.nacked)
                if room <= 0:
                    window_open.clear()
                    await self._wait(window_open, end_ns)
                    continue
                n = min(n, room)
            if count:
                n = min(n, count - seq)
            if not writable.is_set():
                await self._wait(writable, end_ns)
                continue
            ts = clock()
            stop = seq + n
            keys = range(key_base | seq, key_base | stop)
            if levels:
                data = template.encode(keys, ts, batch)
                batch += 1
            else:
                data = b"".join([prefix + pack(key, ts) + suffix for key in keys])
            transport.write(data)
            if window:
                self._batches.append([seq + 1, stop, ts])
            seq = stop
            self.sent = seq
            self.publish_end_ns = ts
            await asyncio.sleep(0)

    async def settle(self, timeout: float) -> None:
        """Wait until every published message is confirmed (confirm mode only)."""
        if not self.cfg.confirm:
            return
        deadline = time.monotonic() + timeout
        while self.outstanding > 0 and self.closed is None and time.monotonic() < deadline:
            self.window_open.clear()
            if self.outstanding <= 0:
                break
            try:
                await asyncio.wait_for(self.window_open.wait(), deadline - time.monotonic())
            except TimeoutError:
                break


def _take(hist_owner: Any, attr: str) -> Histogram:
    value: Histogram = getattr(hist_owner, attr)
    setattr(hist_owner, attr, {})
    return value


async def _producer_main(cfg: RunConfig, wid: int, ids: list[int], pipe: Connection) -> None:
    box = Mailbox(pipe)
    clients: list[Producer] = []
    try:
        for pid in ids:
            client = await connect(cfg.uri, Producer, producer_id=pid, cfg=cfg)
            assert isinstance(client, Producer)
            if cfg.confirm:
                await client.rpc(commands.Confirm.Select(), commands.Confirm.SelectOk)
            clients.append(client)
    except Exception as exc:
        box.send("error", wid, f"producer connect failed: {exc!r}")
        return
    box.send("ready", wid)
    message = await box.inbox.get()
    if message[0] != "start":
        for client in clients:
            await client.close()
        return
    start_ns, end_ns = message[1], message[2]

    def snapshot() -> dict[str, Any]:
        hist: Histogram = {}
        for c in clients:
            merge_into(hist, _take(c, "confirm_hist"))
        return {
            "sent": sum(c.sent for c in clients),
            "confirmed": sum(c.confirmed for c in clients),
            "nacked": sum(c.nacked for c in clients),
            "confirm_hist": hist,
        }

    async def ticker() -> None:
        tick = 1
        while True:
            await _sleep_until(start_ns + tick * 1_000_000_000)
            box.send("tick", wid, snapshot())
            tick += 1

    await _sleep_until(start_ns)
    ticks = asyncio.create_task(ticker())
    error = ""
    results = await asyncio.gather(
        *(c.publish(start_ns, end_ns) for c in clients), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            error = error or repr(result)
    await asyncio.gather(*(c.settle(cfg.drain_timeout) for c in clients))
    ticks.cancel()
    final = snapshot()
    final.update(
        sent_by_producer={c.producer_id: c.sent for c in clients},
        publish_end_ns=max((c.publish_end_ns for c in clients), default=0),
        last_confirm_ns=max((c.last_confirm_ns for c in clients), default=0),
        returned=sum(c.returned for c in clients),
        blocked=any(c.blocked for c in clients),
        error=error or next((str(c.closed) for c in clients if c.closed), ""),
    )
    box.send("final", wid, final)
    await asyncio.gather(*(c.close() for c in clients))


def producer_process(cfg: RunConfig, wid: int, ids: list[int], pipe: Connection) -> None:
    """Process entry point: the producers with these ids, each on its own connection."""
    try:
        run_loop(_producer_main(cfg, wid, ids, pipe))
    except Exception:
        pipe.send(("error", wid, traceback.format_exc()))


# -- consumers -------------------------------------------------------------------------


async def _consumer_main(cfg: RunConfig, wid: int, queue_ids: list[int], pipe: Connection) -> None:
    box = Mailbox(pipe)
    clients: list[Consumer] = []
    names = cfg.queues()
    try:
        for index, queue_index in enumerate(queue_ids):
            client = await connect(cfg.uri, Consumer, queue_index=queue_index, cfg=cfg)
            assert isinstance(client, Consumer)
            if cfg.prefetch:
                await client.rpc(
                    commands.Basic.Qos(prefetch_count=cfg.prefetch), commands.Basic.QosOk
                )
            await client.rpc(
                commands.Basic.Consume(
                    queue=names[queue_index],
                    consumer_tag=f"bench-{wid}-{index}",
                    no_ack=cfg.auto_ack,
                ),
                commands.Basic.ConsumeOk,
            )
            clients.append(client)
    except Exception as exc:
        box.send("error", wid, f"consumer setup failed: {exc!r}")
        return
    box.send("ready", wid)

    def snapshot() -> dict[str, Any]:
        hist: Histogram = {}
        for c in clients:
            merge_into(hist, c.take_histogram())
        return {"received": sum(c.received for c in clients), "latency_hist": hist}

    async def ticker(start_ns: int) -> None:
        tick = 1
        while True:
            await _sleep_until(start_ns + tick * 1_000_000_000)
            box.send("tick", wid, snapshot())
            tick += 1

    ticks: asyncio.Task[None] | None = None
    while True:
        message = await box.inbox.get()
        if message[0] == "start":
            ticks = asyncio.create_task(ticker(message[1]))
        elif message[0] == "poll":
            box.send(
                "count",
                wid,
                sum(c.received for c in clients),
                max((c.last_receive_ns for c in clients), default=0),
                next((str(c.closed) for c in clients if c.closed), ""),
            )
        elif message[0] == "stop":
            break
    if ticks is not None:
        ticks.cancel()
    for client in clients:
        client.ack_rest()
    final = snapshot()
    final.update(
        runs=[(c.queue_index, c.take_runs()) for c in clients],
        last_receive_ns=max((c.last_receive_ns for c in clients if c.received), default=0),
        foreign=sum(c.foreign for c in clients),
        error=next((str(c.closed) for c in clients if c.closed), ""),
    )
    await asyncio.gather(*(c.close() for c in clients))
    box.send("final", wid, final)


def consumer_process(cfg: RunConfig, wid: int, queue_ids: list[int], pipe: Connection) -> None:
    """Process entry point: one consumer connection per entry of queue_ids."""
    try:
        run_loop(_consumer_main(cfg, wid, queue_ids, pipe))
    except Exception:
        pipe.send(("error", wid, traceback.format_exc()))

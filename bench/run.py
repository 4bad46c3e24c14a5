"""`bench run`: set up the topology, start worker processes, report, tear down.

The parent process never touches message traffic. It declares the queues (and the fanout
exchange), forks consumer then producer processes, starts them at one instant, prints a
line per second from their tick reports, waits until producers are done and consumers
have drained what was sent (or stalled for --drain-timeout), merges the consumers'
sequence bitmaps to count lost and duplicated messages, deletes the topology and returns
the summary dict (`format_summary` renders it for humans).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import sys
import time
from dataclasses import asdict, replace
from multiprocessing.connection import Connection, wait
from typing import Any, TextIO

from pamqp import commands

from .client import connect
from .settings import RunConfig
from .stats import Histogram, count_all, count_within, merge_into, merge_runs, percentiles
from .wire import PRODUCER_SHIFT
from .workers import consumer_process, producer_process, run_loop

POINTS = (50, 95, 99)
TOPOLOGY_TIMEOUT = 30.0  # seconds for declaring or deleting the run's queues


class BenchError(Exception):
    """The run could not be carried out (broker unreachable, worker failed...)."""


async def _topology(cfg: RunConfig, create: bool) -> None:
    await asyncio.wait_for(_declare_or_delete(cfg, create), TOPOLOGY_TIMEOUT)


async def _declare_or_delete(cfg: RunConfig, create: bool) -> None:
    client = await connect(cfg.uri)
    try:
        if create:
            if cfg.fanout:
                await client.rpc(
                    commands.Exchange.Declare(
                        exchange=cfg.exchange, exchange_type="fanout", durable=cfg.persistent
                    ),
                    commands.Exchange.DeclareOk,
                )
            for name in cfg.queues():
                await client.rpc(
                    commands.Queue.Declare(
                        queue=name, durable=cfg.persistent, arguments=cfg.queue_arguments()
                    ),
                    commands.Queue.DeclareOk,
                )
                await client.rpc(commands.Queue.Purge(queue=name), commands.Queue.PurgeOk)
                if cfg.fanout:
                    await client.rpc(
                        commands.Queue.Bind(queue=name, exchange=cfg.exchange),
                        commands.Queue.BindOk,
                    )
        else:
            for name in cfg.queues():
                await client.rpc(commands.Queue.Delete(queue=name), commands.Queue.DeleteOk)
            if cfg.fanout:
                await client.rpc(
                    commands.Exchange.Delete(exchange=cfg.exchange), commands.Exchange.DeleteOk
                )
    finally:
        await client.close()


def _split(items: list[int], parts: int) -> list[list[int]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


class _Worker:
    def __init__(self, role: str, wid: int, process: Any, pipe: Connection) -> None:
        self.role = role
        self.wid = wid
        self.process = process
        self.pipe = pipe
        self.last: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self.count: tuple[int, int, str] | None = None


class Runner:
    """One run of a RunConfig; `run()` returns the summary dict."""

    def __init__(self, cfg: RunConfig, out: TextIO | None = sys.stdout) -> None:
        if not cfg.run_id:
            cfg = replace(cfg, run_id=secrets.token_hex(4))
        cfg.validate()
        self.cfg = cfg
        self.out = out
        self.workers: list[_Worker] = []
        self.latency: Histogram = {}
        self.confirm_latency: Histogram = {}
        self._interval_lat: Histogram = {}
        self._interval_conf: Histogram = {}
        self._printed: dict[str, int] = {"sent": 0, "confirmed": 0, "received": 0}
        self.errors: list[str] = []
        self.start_ns = 0
        self.deadline = time.monotonic() + cfg.limit

    # -- plumbing ---------------------------------------------------------------------

    def _spawn(self, role: str, target: Any, args_list: list[list[int]]) -> list[_Worker]:
        ctx = multiprocessing.get_context("fork")
        spawned = []
        for ids in args_list:
            wid = len(self.workers)
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=target,
                args=(self.cfg, wid, ids, child_end),
                name=f"bench-{role}-{wid}",
                daemon=True,
            )
            process.start()
            child_end.close()
            worker = _Worker(role, wid, process, parent_end)
            self.workers.append(worker)
            spawned.append(worker)
        return spawned

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "tick" or kind == "final":
            data = message[2]
            for key, target, interval in (
                ("latency_hist", self.latency, self._interval_lat),
                ("confirm_hist", self.confirm_latency, self._interval_conf),
            ):
                if key in data:
                    merge_into(target, data[key])
                    merge_into(interval, data[key])
            worker.last = data
            if kind == "final":
                worker.final = data
                if data.get("error"):
                    self.errors.append(f"{worker.role} {worker.wid}: {data['error']}")
        elif kind == "count":
            worker.count = (message[2], message[3], message[4])
        elif kind == "error":
            self.errors.append(f"{worker.role} {worker.wid}: {message[2]}")
            worker.final = worker.final or {}

    def _pump(self, timeout: float) -> None:
        """Handle whatever the workers sent within timeout seconds."""
        live = [w.pipe for w in self.workers if not w.pipe.closed]
        by_pipe = {id(w.pipe): w for w in self.workers}
        for pipe in wait(live, max(0.0, timeout)):
            worker = by_pipe[id(pipe)]
            try:
                while pipe.poll():
                    self._handle(worker, pipe.recv())
            except (EOFError, OSError):
                pipe.close()
                if worker.final is None:
                    worker.final = {}
                    self.errors.append(f"{worker.role} {worker.wid}: exited unexpectedly")

    def _await_ready(self, workers: list[_Worker], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {w.wid for w in workers}
        by_pipe = {id(w.pipe): w for w in workers}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("workers did not get ready in time")
            for pipe in wait([w.pipe for w in workers if w.wid in pending], left):
                worker = by_pipe[id(pipe)]
                try:
                    message = pipe.recv()
                except EOFError:
                    raise BenchError(f"{worker.role} {worker.wid} died during setup") from None
                if message[0] == "ready":
                    pending.discard(worker.wid)
                elif message[0] == "error":
                    raise BenchError(f"{worker.role} {worker.wid}: {message[2]}")

    def _sum(self, role: str, key: str) -> int:
        return sum(w.last.get(key, 0) for w in self.workers if w.role == role)

    def _print_line(self, elapsed: float) -> None:
        sent = self._sum("producer", "sent")
        confirmed = self._sum("producer", "confirmed")
        received = self._sum("consumer", "received")
        lat = percentiles(self._interval_lat, (50, 99))
        parts = [f"time {elapsed:5.1f}s", f"sent {sent - self._printed['sent']:>8} msg/s"]
        if self.cfg.confirm:
            parts.append(f"confirmed {confirmed - self._printed['confirmed']:>8} msg/s")
        parts.append(f"received {received - self._printed['received']:>8} msg/s")
        if lat["p50"] is not None:
            parts.append(f"latency p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])}")
        if self.cfg.confirm:
            conf = percentiles(self._interval_conf, (50, 99))
            if conf["p50"] is not None:
                parts.append(f"confirm p50 {_ms(conf['p50'])} p99 {_ms(conf['p99'])}")
        self._printed = {"sent": sent, "confirmed": confirmed, "received": received}
        self._interval_lat, self._interval_conf = {}, {}
        if self.out is not None:
            print(", ".join(parts), file=self.out, flush=True)

    def _run_until(self, done: Any, next_print: list[float]) -> None:
        """Pump messages (printing each second) until done() or an error."""
        while not done() and not self.errors:
            now = time.monotonic()
            if now > self.deadline:
                self.errors.append(f"time limit of {self.cfg.limit:g} s reached")
                return
            if now >= next_print[0]:
                self._print_line(next_print[0] - self.start_ns / 1e9 - 0.1)
                next_print[0] += 1.0
            self._pump(min(0.05, max(0.0, next_print[0] - time.monotonic())))

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        try:
            run_loop(_topology(cfg, create=True))
        except Exception as exc:
            raise BenchError(f"cannot set up on {cfg.uri}: {exc}") from exc
        try:
            return self._run()
        finally:
            for worker in self.workers:
                if worker.process.is_alive():
                    worker.process.join(2)
                if worker.process.is_alive():
                    worker.process.kill()
            try:
                run_loop(_topology(cfg, create=False))
            except Exception as exc:  # cleanup is best effort; the broker may be gone
                self.errors.append(f"cleanup failed: {exc}")

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        consumers = self._spawn(
            "consumer",
            consumer_process,
            _split([i % cfg.queue_count for i in range(cfg.consumers)], cfg.consumer_procs)
            if cfg.consumers
            else [],
        )
        self._await_ready(consumers)
        producers = self._spawn(
            "producer",
            producer_process,
            _split(list(range(cfg.producers)), cfg.producer_procs) if cfg.producers else [],
        )
        self._await_ready(producers)
        self.start_ns = time.monotonic_ns() + 100_000_000
        end_ns = self.start_ns + int(cfg.duration * 1e9)
        for worker in self.workers:
            worker.pipe.send(("start", self.start_ns, end_ns))
        next_print = [self.start_ns / 1e9 + 1.1]
        if producers:
            self._run_until(lambda: all(w.final is not None for w in producers), next_print)
        else:
            self._run_until(lambda: time.monotonic_ns() >= end_ns, next_print)
        sent_by = {}
        for worker in producers:
            sent_by.update((worker.final or {}).get("sent_by_producer", {}))
        expected = sum(sent_by.values()) * cfg.queue_count
        drain_start = time.monotonic()
        if consumers and not self.errors:
            self._drain(consumers, expected, next_print)
        drain_time = time.monotonic() - drain_start
        for worker in consumers:
            worker.pipe.send(("stop",))
        deadline = time.monotonic() + 15
        while any(w.final is None for w in self.workers) and time.monotonic() < deadline:
            self._pump(0.1)
        return self._summary(sent_by, expected, drain_time)

    def _drain(self, consumers: list[_Worker], expected: int, next_print: list[float]) -> None:
        last_total, last_change = -1, time.monotonic()
        cap = time.monotonic() + self.cfg.drain_max
        while not self.errors:
            for worker in consumers:
                worker.count = None
                worker.pipe.send(("poll",))
            self._run_until(lambda: all(w.count is not None for w in consumers), next_print)
            total = sum(w.count[0] for w in consumers if w.count)
            failed = [w.count[2] for w in consumers if w.count and w.count[2]]
            if failed:
                self.errors.append(f"consumer: {failed[0]}")
                return
            if total >= expected:
                return
            if total != last_total:
                last_total, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > self.cfg.drain_timeout:
                return
            if time.monotonic() > cap:
                self.errors.append(f"drain cap of {self.cfg.drain_max:g} s reached")
                return
            self._pump(0.05)

    def _summary(self, sent_by: dict[int, int], expected: int, drain: float) -> dict[str, Any]:
        cfg = self.cfg
        producers = [w.final or {} for w in self.workers if w.role == "producer"]
        consumers = [w.final or {} for w in self.workers if w.role == "consumer"]
        t0 = self.start_ns
        sent = sum(sent_by.values())
        confirmed = sum(f.get("confirmed", 0) for f in producers)
        nacked = sum(f.get("nacked", 0) for f in producers)
        received = sum(f.get("received", 0) for f in consumers)
        duplicates = seen = unexpected = 0
        for queue_index in range(cfg.queue_count):
            union, dups = merge_runs(
                runs for f in consumers for q, runs in f.get("runs", []) if q == queue_index
            )
            duplicates += dups
            in_range = 0
            for producer, count in sent_by.items():
                base = producer << PRODUCER_SHIFT
                in_range += count_within(union, base, base + count)
            seen += in_range
            unexpected += count_all(union) - in_range
        publish_end = max((f.get("publish_end_ns", 0) for f in producers), default=0)
        last_confirm = max((f.get("last_confirm_ns", 0) for f in producers), default=0)
        last_receive = max((f.get("last_receive_ns", 0) for f in consumers), default=0)

        def rate(count: int, end_ns: int) -> float:
            span = (end_ns - t0) / 1e9
            return round(count / span, 1) if count and span > 0 else 0.0

        summary: dict[str, Any] = {
            "config": {k: v for k, v in asdict(cfg).items() if k != "run_id"},
            "publish_seconds": round(max(0, publish_end - t0) / 1e9, 3),
            "drain_seconds": round(drain, 3),
            "sent": sent,
            "sent_rate": rate(sent, publish_end),
            "confirmed": confirmed,
            "nacked": nacked,
            "confirm_rate": rate(confirmed, last_confirm),
            "received": received,
            "receive_rate": rate(received, last_receive),
            "expected": expected if cfg.consumers else None,
            "lost": (expected - seen) if cfg.consumers else None,
            "duplicated": duplicates,
            "unexpected": unexpected,
            "foreign": sum(f.get("foreign", 0) for f in consumers),
            "returned": sum(f.get("returned", 0) for f in producers),
            "blocked": any(f.get("blocked") for f in producers),
            "latency_ms": percentiles(self.latency, POINTS),
            "confirm_latency_ms": percentiles(self.confirm_latency, POINTS)
            if cfg.confirm
            else None,
            "errors": self.errors,
        }
        return summary


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}ms" if value < 100 else f"{value:.0f}ms"


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable final summary of `run()`'s dict."""

    def lat(d: dict[str, float | None] | None) -> str:
        if not d or d.get("p50") is None:
            return "-"
        return " ".join(f"{k} {_ms(d[k])}" for k in ("p50", "p95", "p99", "max"))

    lines = [
        "summary:",
        f"  sent      {summary['sent']:>10} msgs  {summary['sent_rate']:>12,.0f} msg/s"
        f"  (publishing {summary['publish_seconds']} s)",
    ]
    if summary["config"]["confirm"]:
        lines.append(
            f"  confirmed {summary['confirmed']:>10} msgs  {summary['confirm_rate']:>12,.0f}"
            f" msg/s  nacked {summary['nacked']}"
        )
    lines.append(
        f"  received  {summary['received']:>10} msgs  {summary['receive_rate']:>12,.0f} msg/s"
        f"  (drain after publishing {summary['drain_seconds']} s)"
    )
    lines.append(f"  latency   {lat(summary['latency_ms'])}")
    if summary["confirm_latency_ms"] is not None:
        lines.append(f"  confirm latency  {lat(summary['confirm_latency_ms'])}")
    lines.append(
        f"  lost {summary['lost']}  duplicated {summary['duplicated']}"
        f"  unexpected {summary['unexpected']}  foreign {summary['foreign']}"
        f"  returned {summary['returned']}"
        + ("  (connection was blocked)" if summary["blocked"] else "")
    )
    for error in summary["errors"]:
        lines.append(f"  ERROR: {error}")
    return "\n".join(lines)


def run_benchmark(cfg: RunConfig, out: TextIO | None = sys.stdout) -> dict[str, Any]:
    """Run once and return the summary dict (progress lines go to `out`)."""
    if cfg.generator == "node":
        from .nodegen import run_node

        return run_node(cfg)
    return Runner(cfg, out).run()


__all__ = ["BenchError", "RunConfig", "format_summary", "run_benchmark"]

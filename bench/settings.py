"""The parameters of one throughput/latency run (`bench run`), shared by all processes.

A `RunConfig` is frozen and picklable: the parent builds it from the command line, and
each producer and consumer process receives a copy. `queues()` and `exchange` name the
topology the parent declares before the workers start.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run; see `bench run --help` for the meaning of each field."""

    uri: str
    producers: int = 1
    consumers: int = 1
    size: int = 16
    confirm: int = 0  # publisher-confirm window per producer; 0 = no confirms
    persistent: bool = False
    mandatory: bool = False
    auto_ack: bool = False
    multi_ack_every: int = 0  # 0/1: ack every message singly; N>1: multiple=True every N
    prefetch: int = 0
    rate: float = 0.0  # msg/s per producer; 0 = as fast as possible
    duration: float = 10.0  # seconds of publishing (ignored when count is set)
    count: int = 0  # messages per producer; 0 = use duration
    fanout: int = 0  # 0 = one queue via the default exchange; N = fanout exchange, N queues
    queue: str = ""  # queue name (prefix in fan-out mode); "" = a unique name per run
    producer_procs: int = 1
    consumer_procs: int = 1
    drain_timeout: float = 10.0  # give up draining after this many s without progress
    drain_max: float = 60.0  # give up draining after this many s in all
    time_limit: float = 0.0  # end the whole run after this many s; 0 = derived (see limit)
    generator: str = "python"  # "python" (bench/workers.py) or "node" (bench/node, amqplib)
    max_priority: int = 0  # > 0: priority queues (x-max-priority); batches cycle 0..N-1
    message_ttl: int = -1  # >= 0: queues with this x-message-ttl (ms)
    run_id: str = field(default="")

    def queue_arguments(self) -> dict[str, int]:
        """The x- arguments the run's queues are declared with."""
        arguments = {}
        if self.max_priority:
            arguments["x-max-priority"] = self.max_priority
        if self.message_ttl >= 0:
            arguments["x-message-ttl"] = self.message_ttl
        return arguments

    @property
    def queue_count(self) -> int:
        """How many queues the run uses."""
        return self.fanout if self.fanout else 1

    @property
    def exchange(self) -> str:
        """The exchange producers publish to ("" = the default exchange)."""
        return f"bench.{self.run_id}.fanout" if self.fanout else ""

    def queues(self) -> list[str]:
        """Queue names, index = queue number."""
        base = self.queue or f"bench.{self.run_id}"
        if not self.fanout:
            return [base]
        return [f"{base}.{i}" for i in range(self.fanout)]

    def routing_key(self) -> str:
        """The routing key producers publish with."""
        return "" if self.fanout else self.queues()[0]

    @property
    def ack_every(self) -> int:
        """Deliveries per basic.ack in manual-ack mode (>= 1)."""
        return max(1, self.multi_ack_every)

    @property
    def limit(self) -> float:
        """Seconds after which the whole run is abandoned (setup, publishing, drain, cleanup)."""
        if self.time_limit > 0:
            return self.time_limit
        publishing = self.duration if self.count <= 0 else 600.0
        return publishing + self.drain_max + 60.0

    def validate(self) -> None:
        """Raise ValueError for combinations that cannot run."""
        if self.size < 16:
            raise ValueError("message size (-s) must be at least 16 bytes (the stamp)")
        if self.producers < 0 or self.consumers < 0:
            raise ValueError("-x and -y must be >= 0")
        if self.producers == 0 and self.consumers == 0:
            raise ValueError("nothing to do: -x 0 -y 0")
        if self.fanout and 0 < self.consumers < self.fanout:
            raise ValueError("fan-out needs at least one consumer per queue (-y >= --fanout)")
        if not self.auto_ack and self.prefetch and self.ack_every > self.prefetch:
            raise ValueError("--multi-ack-every larger than prefetch (-q) would stall")
        if self.count <= 0 and self.duration <= 0:
            raise ValueError("give a duration (-z) or a message count (-C)")
        if not 0 <= self.max_priority <= 255:
            raise ValueError("--max-priority must be between 0 and 255")
        if self.producers >= 1 << 15:
            raise ValueError("too many producers")
        if self.generator not in ("python", "node"):
            raise ValueError("--generator is python or node")
        if self.generator == "node":
            plain = self.producers == 1 and self.consumers == self.queue_count
            extras = self.count or self.mandatory or self.max_priority or self.message_ttl >= 0
            if not plain or extras:
                raise ValueError(
                    "--generator node runs one producer and one consumer per queue "
                    "(-x1, -y1 or -y N with --fanout N), timed (-z), without "
                    "-C/mandatory/--max-priority/--message-ttl"
                )

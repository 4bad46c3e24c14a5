"""Command line of the benchmark: `python -m bench {run,idle,startup} ...` (`scripts/bench`).

`run` (the default when the first argument is an option) is the PerfTest-style
throughput/latency workload; `idle` opens many idle connections; `startup` times a
broker command from exec to a completed AMQP handshake. `--json` prints the summary as
one JSON object on stdout (progress lines then go to stderr). Exit status: 0 when the
run completed with no errors, lost or duplicated messages; 1 otherwise; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .client import DEFAULT_URI
from .settings import RunConfig

SUBCOMMANDS = ("run", "idle", "startup")


def _run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="throughput/latency workload (PerfTest-style)",
        description="Producers publish stamped messages to a queue (or a "
        "fanout exchange with N queues); consumers measure latency, loss "
        "and duplicates.",
    )
    p.add_argument("--uri", default=DEFAULT_URI, help="broker URI (default %(default)s)")
    p.add_argument("-x", "--producers", type=int, default=1, help="producer connections")
    p.add_argument(
        "-y",
        "--consumers",
        type=int,
        default=None,
        help="consumer connections (default 1, or one per queue with --fanout)",
    )
    p.add_argument("-s", "--size", type=int, default=16, help="message body bytes (>= 16)")
    p.add_argument(
        "-c",
        "--confirm",
        type=int,
        default=0,
        help="publisher-confirm window per producer (0 = no confirms)",
    )
    p.add_argument(
        "-f",
        "--flag",
        action="append",
        default=[],
        choices=("persistent", "mandatory"),
        help="persistent: delivery_mode=2 on durable queue(s); mandatory",
    )
    p.add_argument("-a", "--auto-ack", action="store_true", help="consume with no_ack")
    p.add_argument(
        "--multi-ack-every",
        type=int,
        default=0,
        help="manual acks: basic.ack multiple=true every N deliveries "
        "(0 = ack each delivery singly)",
    )
    p.add_argument("-q", "--prefetch", type=int, default=0, help="basic.qos prefetch count")
    p.add_argument(
        "-r",
        "--rate",
        type=float,
        default=0.0,
        help="publish rate per producer in msg/s (0 = unlimited)",
    )
    p.add_argument("-z", "--duration", type=float, default=10.0, help="seconds to publish")
    p.add_argument(
        "-C", "--count", type=int, default=0, help="messages per producer (overrides -z)"
    )
    p.add_argument(
        "--fanout",
        type=int,
        default=0,
        metavar="N",
        help="publish to a fanout exchange bound to N queues",
    )
    p.add_argument("-u", "--queue", default="", help="queue name (default: unique per run)")
    p.add_argument(
        "--producer-procs", type=int, default=1, help="processes to spread producers over"
    )
    p.add_argument(
        "--consumer-procs", type=int, default=1, help="processes to spread consumers over"
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="give up waiting for deliveries/confirms after this many idle s",
    )
    p.add_argument(
        "--drain-max",
        type=float,
        default=60.0,
        help="give up waiting for deliveries/confirms after this many s in all",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=0.0,
        help="abandon the whole run after this many s (default: duration + drain-max + 60)",
    )
    p.add_argument(
        "--generator",
        choices=("python", "node"),
        default="python",
        help="load generator: python worker processes, or one Node.js amqplib process "
        "(one producer and one consumer connection; needs npm ci --prefix tests/node)",
    )
    p.add_argument(
        "--max-priority",
        type=int,
        default=0,
        metavar="N",
        help="declare priority queues (x-max-priority N); publish batches cycle priorities 0..N-1",
    )
    p.add_argument(
        "--message-ttl",
        type=int,
        default=-1,
        metavar="MS",
        help="declare queues with x-message-ttl MS",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _idle_parser(sub: Any) -> None:
    p = sub.add_parser(
        "idle",
        help="open N idle connections with a channel each",
        description="Opens N connections (each with channel 1), reports "
        "the time it took and the broker's RSS before and after.",
    )
    p.add_argument("--uri", default=DEFAULT_URI, help="broker URI (default %(default)s)")
    p.add_argument("-n", "--connections", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50, help="handshakes in flight at once")
    p.add_argument(
        "--pid",
        type=int,
        default=0,
        help="broker pid for RSS (default: the process listening on the port)",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=2.0,
        help="seconds to keep the connections open before measuring RSS",
    )
    p.add_argument("--json", action="store_true")


def _startup_parser(sub: Any) -> None:
    p = sub.add_parser(
        "startup",
        help="time from exec to a completed AMQP handshake",
        description="Runs CMD (default: python -m amqpd --port 0 "
        "--data-dir {datadir}) and measures the time until a client "
        "handshake succeeds, then the idle RSS. If CMD contains {port}, a "
        "free port is substituted and polled; otherwise the port is read "
        "from a 'listening on HOST:PORT' line on the command's stderr. "
        "{datadir} becomes a fresh temporary directory.",
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to wait after the handshake before reading idle RSS",
    )
    p.add_argument("--user", default="guest")
    p.add_argument("--password", default="guest")
    p.add_argument("--json", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, help="broker command (after --)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="AMQP 0-9-1 load generator")
    sub = parser.add_subparsers(dest="command_name", required=True)
    _run_parser(sub)
    _idle_parser(sub)
    _startup_parser(sub)
    return parser


def _emit(summary: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(text)


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import BenchError, format_summary, run_benchmark

    consumers = args.consumers
    if consumers is None:
        consumers = args.fanout if args.fanout else 1
    cfg = RunConfig(
        uri=args.uri,
        producers=args.producers,
        consumers=consumers,
        size=args.size,
        confirm=args.confirm,
        persistent="persistent" in args.flag,
        mandatory="mandatory" in args.flag,
        auto_ack=args.auto_ack,
        multi_ack_every=args.multi_ack_every,
        prefetch=args.prefetch,
        rate=args.rate,
        duration=args.duration,
        count=args.count,
        fanout=args.fanout,
        queue=args.queue,
        producer_procs=args.producer_procs,
        consumer_procs=args.consumer_procs,
        drain_timeout=args.drain_timeout,
        drain_max=args.drain_max,
        time_limit=args.time_limit,
        generator=args.generator,
        max_priority=args.max_priority,
        message_ttl=args.message_ttl,
    )
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_benchmark(cfg, out=sys.stderr if args.json else sys.stdout)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    _emit(summary, args.json, format_summary(summary))
    bad = summary["errors"] or summary["lost"] or summary["duplicated"]
    return 1 if bad else 0


def _cmd_idle(args: argparse.Namespace) -> int:
    from .idle import format_idle, idle_connections

    summary = idle_connections(args.uri, args.connections, args.concurrency, args.pid, args.hold)
    _emit(summary, args.json, format_idle(summary))
    return 1 if summary["errors"] else 0


def _cmd_startup(args: argparse.Namespace) -> int:
    from .startup import format_startup, measure_startup

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    summary = measure_startup(
        command or None, args.runs, args.timeout, args.settle, args.user, args.password
    )
    _emit(summary, args.json, format_startup(summary))
    return 1 if summary["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench` and `scripts/bench`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    handler = {"run": _cmd_run, "idle": _cmd_idle, "startup": _cmd_startup}
    return handler[args.command_name](args)

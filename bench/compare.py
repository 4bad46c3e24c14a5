"""`scripts/compare`: the benchmark workloads on amqpd and its peers back to back, as a table.

For each chosen workload it starts a fresh amqpd (temp data dir, free port), runs the
bench command against it, then (with --pure) against a fresh amqpd forced onto its
pure-Python codec (AMQPD_PURE_PYTHON=1), then against RabbitMQ on --rabbit-port and (with
--lavinmq-bin PATH) against a fresh LavinMQ started from that binary, and prints every
number with the ratio of amqpd to the best peer (RabbitMQ or LavinMQ, whichever did better
on that metric). If nothing answers on the RabbitMQ port, a node is started there
(installed with apt-get first only with --install-rabbitmq). Each measurement is a separate
`python -m bench ... --json` process; the exact commands are printed so any row can be
re-run by hand.

`--generator node` drives workloads 1-4 with one Node.js amqplib process instead of the
Python workers (one producer and one consumer connection, as the LavinMQ comparison was
first made; workloads 2 and 3 then use its settings: single acks, prefetch 100, 16 B,
confirm window 2000). Each throughput row also reports the broker's CPU time
per received message (user+system from /proc/PID/stat over the run), the figure that
survives a shared machine; `--rounds N` measures every broker N times, alternating, and
reports medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .brokers import (
    AmqpdProcess,
    LavinMQProcess,
    RabbitMQMissing,
    ensure_rabbitmq,
    lavinmq_command,
    rabbitmq_command,
)
from .procinfo import cpu_seconds, pid_listening_on

PURE_ENV = {"AMQPD_PURE_PYTHON": "1"}

REPO_ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench` finds bench/


@dataclass(frozen=True)
class Workload:
    """One row group of the table: bench arguments and how to read the result."""

    number: int
    title: str
    args: tuple[str, ...]
    timed: bool = True  # takes -z
    node_args: tuple[str, ...] = ()  # with --generator node, the LavinMQ comparison's settings


WORKLOADS = {
    1: Workload(1, "transient, 1p/1c, auto-ack, 16 B", ("run", "-x1", "-y1", "-a", "-s16")),
    2: Workload(
        2,
        "manual acks (multi 100, prefetch 200), 16 B",
        ("run", "-x1", "-y1", "-s16", "--multi-ack-every", "100", "-q", "200"),
        # The LavinMQ comparison's row (LavinMQ 1.0.1 stalls on multiple acks).
        node_args=("run", "-x1", "-y1", "-s16", "-q", "100"),
    ),
    3: Workload(
        3,
        "persistent+durable, confirms 1000, manual acks, 100 B",
        (
            "run",
            "-x1",
            "-y1",
            "-s100",
            "-f",
            "persistent",
            "-c",
            "1000",
            "--multi-ack-every",
            "100",
            "-q",
            "200",
        ),
        node_args=("run", "-x1", "-y1", "-s16", "-f", "persistent", "-c", "2000", "-q", "100"),
    ),
    4: Workload(
        4,
        "fan-out to 4 queues, consumer each, auto-ack, 16 B",
        ("run", "-x1", "--fanout", "4", "-y4", "-a", "-s16"),
    ),
    5: Workload(
        5, "latency at a fixed 5000 msg/s, 16 B", ("run", "-x1", "-y1", "-a", "-s16", "-r", "5000")
    ),
    6: Workload(
        6,
        "1000 idle connections with a channel each",
        ("idle", "--connections", "1000"),
        timed=False,
    ),
    7: Workload(7, "startup: exec to handshake; idle RSS", ("startup", "--runs", "3"), timed=False),
}


def _bench(args: list[str], show: bool) -> dict[str, Any]:
    # --json belongs to the bench, not to a command given after "--".
    split = args.index("--") if "--" in args else len(args)
    command = [sys.executable, "-m", "bench", *args[:split], "--json", *args[split:]]
    if show:
        print("  $ python " + " ".join(command[1:]), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    try:
        return dict(json.loads(done.stdout))
    except json.JSONDecodeError:
        return {"errors": [f"bench exited {done.returncode}: {done.stderr.strip()[-500:]}"]}


def _command_for(w: Workload, uri: str, duration: float, generator: str = "python") -> list[str]:
    args = list(w.args)
    if generator != "python" and w.number in (1, 2, 3, 4):
        args = [*(w.node_args or w.args), "--generator", generator]
    if w.number == 5:
        args += ["-z", str(max(duration, 10.0))]
    elif w.timed:
        args += ["-z", str(duration)]
    if w.number != 7:
        args += ["--uri", uri]
    return args


def _rows(w: Workload, result: dict[str, Any]) -> list[tuple[str, float | None, bool]]:
    """(metric, value, higher_is_better) for one workload's result."""
    if w.number in (1, 2, 3, 4):
        rows = [
            ("received msg/s", result.get("receive_rate"), True),
            ("broker CPU us/msg", result.get("cpu_us_per_msg"), False),
            ("latency p99 ms", (result.get("latency_ms") or {}).get("p99"), False),
        ]
        if w.number == 3:
            rows.append(
                ("confirm p99 ms", (result.get("confirm_latency_ms") or {}).get("p99"), False)
            )
        return rows
    if w.number == 5:
        lat = result.get("latency_ms") or {}
        return [
            ("latency p50 ms", lat.get("p50"), False),
            ("latency p99 ms", lat.get("p99"), False),
            ("latency max ms", lat.get("max"), False),
        ]
    if w.number == 6:
        return [
            ("open seconds", result.get("open_seconds"), False),
            ("RSS with conns MiB", result.get("rss_with_connections_mib"), False),
            ("RSS delta MiB", result.get("rss_delta_mib"), False),
        ]
    return [
        ("startup s (median)", result.get("startup_seconds_median"), False),
        ("idle RSS MiB", result.get("idle_rss_mib_median"), False),
    ]


def _problems(result: dict[str, Any]) -> str:
    notes = list(result.get("errors") or [])
    if result.get("lost"):
        notes.append(f"lost {result['lost']}")
    if result.get("duplicated"):
        notes.append(f"duplicated {result['duplicated']}")
    if len(notes) > 1 and len(set(notes)) == 1:
        notes = [f"{notes[0]} (x{len(notes)})"]
    elif len(notes) > 3:
        notes = [*notes[:3], f"... {len(notes) - 3} more"]
    return "; ".join(str(n)[:120] for n in notes)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def workload_list() -> str:
    """The workloads as the help text lists them: number, what it measures, bench command."""
    lines = ["workloads:"]
    for w in WORKLOADS.values():
        duration = " -z SECONDS" if w.timed else ""
        lines.append(f"  {w.number}  {w.title}")
        lines.append(f"     bench {' '.join(w.args)}{duration}")
        if w.node_args:
            lines.append(f"     --generator node: bench {' '.join(w.node_args)}{duration}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of scripts/compare; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="compare",
        description=__doc__,
        epilog=workload_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-w",
        "--workloads",
        default="1,2,3,4,5,6,7",
        help="comma-separated workload numbers (default all: 1-7)",
    )
    parser.add_argument(
        "-z",
        "--duration",
        type=float,
        default=10.0,
        help="seconds per throughput workload (5 runs at least 10 s)",
    )
    parser.add_argument(
        "--rabbit-port",
        type=int,
        default=5673,
        help="RabbitMQ AMQP port; a node is started there if nothing answers",
    )
    parser.add_argument(
        "--install-rabbitmq",
        action="store_true",
        help="if rabbitmq-server is missing, install it with apt-get (needs root)",
    )
    parser.add_argument("--rabbit-host", default="127.0.0.1")
    parser.add_argument(
        "--rabbit-startup-node",
        default="benchstartup@localhost",
        help="node name for the throwaway RabbitMQ of workload 7",
    )
    parser.add_argument(
        "--amqpd-arg", action="append", default=[], help="extra argument for amqpd (repeatable)"
    )
    parser.add_argument(
        "--pure",
        action="store_true",
        help="also measure amqpd on its pure-Python codec (AMQPD_PURE_PYTHON=1)",
    )
    parser.add_argument(
        "--lavinmq-bin",
        metavar="PATH",
        help="also measure a LavinMQ started from this binary (skipped when not given)",
    )
    parser.add_argument(
        "--lavinmq-arg", action="append", default=[], help="extra argument for LavinMQ"
    )
    parser.add_argument(
        "--generator",
        choices=("python", "node"),
        default="python",
        help="load generator of workloads 1-4 (node: one amqplib process)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each broker this many times, alternating, and report medians",
    )
    parser.add_argument("--json", action="store_true", help="also dump all results as JSON")
    args = parser.parse_args(argv)
    chosen = [WORKLOADS[int(n)] for n in args.workloads.split(",") if n.strip()]
    rabbit_uri = f"amqp://guest:guest@{args.rabbit_host}:{args.rabbit_port}/%2F"
    if any(w.number != 7 for w in chosen):
        try:
            ensure_rabbitmq(args.rabbit_port, args.rabbit_host, install=args.install_rabbitmq)
        except RabbitMQMissing as missing:
            print(f"compare: {missing}", file=sys.stderr)
            return 2
    ours = ["amqpd", *(["amqpd pure"] if args.pure else [])]
    peers = ["RabbitMQ", *(["LavinMQ"] if args.lavinmq_bin else [])]
    table: list[tuple[str, ...]] = []
    raw: dict[str, Any] = {}
    for w in chosen:
        print(f"workload {w.number}: {w.title}", flush=True)
        rounds: dict[str, list[dict[str, Any]]] = {who: [] for who in [*ours, *peers]}
        for _ in range(max(1, args.rounds)):
            for who in rounds:
                rounds[who].append(_measure(who, w, args, rabbit_uri))
        raw[str(w.number)] = rounds
        per_round = {who: [_rows(w, r) for r in runs] for who, runs in rounds.items()}
        rows = {who: _median_rows(runs) for who, runs in per_round.items()}
        for i, (metric, _, better) in enumerate(rows["amqpd"]):
            values = {who: rows[who][i][1] for who in rows}
            known = [v for who in peers if (v := values[who]) is not None]
            best = (max(known) if better else min(known)) if known else None
            ratios = [f"{a / best:.2f}" if (a := values[w_]) is not None and best else "-"
                      for w_ in ours]  # fmt: skip
            goal = ">=1 better" if better else "<=1 better"
            cells = [_fmt(values[who]) for who in [*ours, *peers]]
            table.append((str(w.number), metric, *cells, *ratios, goal))
        for who, runs in rounds.items():
            result = {"errors": [e for r in runs for e in r.get("errors") or []]}
            result["lost"] = sum(r.get("lost") or 0 for r in runs)
            result["duplicated"] = sum(r.get("duplicated") or 0 for r in runs)
            if _problems(result):
                blank = [""] * (len(ours) * 2 + len(peers))
                table.append((str(w.number), f"  {who} problems", _problems(result), *blank))
    headers = ("#", "metric", *ours, *peers, *(f"{who}/best" for who in ours), "")
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print()
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)))
    print("  ".join("-" * widths[i] for i in range(len(headers))))
    for row in table:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)))
    if args.json:
        print(json.dumps(raw, indent=2, sort_keys=True))
    return 0


def _median_rows(
    runs: list[list[tuple[str, float | None, bool]]],
) -> list[tuple[str, float | None, bool]]:
    """Each metric's median over the rounds (rounds without a value left out)."""
    merged = []
    for i, (metric, _, better) in enumerate(runs[0]):
        known = [v for run in runs if (v := run[i][1]) is not None]
        merged.append((metric, statistics.median(known) if known else None, better))
    return merged


def _bench_with_cpu(args: list[str], pid: int | None) -> dict[str, Any]:
    """`_bench`, plus the broker's CPU time per received message when its pid is known."""
    before = cpu_seconds(pid)
    result = _bench(args, True)
    after = cpu_seconds(pid)
    received = result.get("received") or 0
    if before is not None and after is not None and received:
        result["cpu_us_per_msg"] = round((after - before) / received * 1e6, 2)
    return result


def _measure(who: str, w: Workload, args: argparse.Namespace, rabbit_uri: str) -> dict[str, Any]:
    """One broker's result for one workload (a fresh broker where we start one)."""
    env = PURE_ENV if who == "amqpd pure" else {}
    if w.number == 7:
        return _bench(["startup", *_startup_command(who, args, env)], True)
    if who == "RabbitMQ":
        pid = pid_listening_on(args.rabbit_port)
        return _bench_with_cpu(_command_for(w, rabbit_uri, args.duration, args.generator), pid)
    broker: AmqpdProcess | LavinMQProcess
    if who == "LavinMQ":
        broker = LavinMQProcess(args.lavinmq_bin, *args.lavinmq_arg)
    else:
        broker = AmqpdProcess(*args.amqpd_arg, env=env)
    try:
        broker.start()
    except RuntimeError as error:
        return {"errors": [str(error)]}
    try:
        command = _command_for(w, broker.uri, args.duration, args.generator)
        return _bench_with_cpu(command, broker.pid)
    finally:
        broker.stop()


def _startup_command(who: str, args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """`bench startup` arguments (runs, then the broker's command) for workload 7."""
    if who == "RabbitMQ":
        rabbit_argv, rabbit_env = rabbitmq_command(0, args.rabbit_startup_node, 0)
        return [
            "--runs",
            "1",
            "--timeout",
            "120",
            "--",
            "env",
            "RABBITMQ_NODE_PORT={port}",
            "RABBITMQ_DIST_PORT={distport}",
            f"RABBITMQ_NODENAME={args.rabbit_startup_node}",
            f"HOME={rabbit_env.get('HOME', '')}",
            *rabbit_argv,
        ]
    if who == "LavinMQ":
        return ["--runs", "3", "--", *lavinmq_command(args.lavinmq_bin, args.lavinmq_arg)]
    prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
    return [
        "--runs",
        "3",
        "--",
        *prefix,
        sys.executable,
        "-m",
        "amqpd",
        "--port",
        "0",
        "--data-dir",
        "{datadir}",
        *args.amqpd_arg,
    ]

"""`bench idle`: open N connections with one channel each and keep them idle.

Reports how long opening them took (wall time, with `concurrency` handshakes in flight),
the broker's RSS before, with the connections open (after `hold` seconds) and the
difference. The broker pid comes from --pid or from the process listening on the URI's
port (see procinfo.py). All connections are closed again at the end.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .client import BenchClient, BrokerUri, connect
from .procinfo import pid_listening_on, rss_mib
from .workers import run_loop

HANDSHAKE_TIMEOUT = 10.0


async def _open_all(uri: BrokerUri, count: int, concurrency: int) -> dict[str, Any]:
    clients: list[BenchClient] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(max(1, concurrency))
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            try:
                clients.append(await asyncio.wait_for(connect(uri), HANDSHAKE_TIMEOUT))
                latencies.append(time.perf_counter() - started)
            except TimeoutError:
                errors.append(f"no handshake within {HANDSHAKE_TIMEOUT:.0f} s (broker fd limit?)")
            except Exception as exc:
                errors.append(repr(exc))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "errors": errors,
        "open_seconds": round(elapsed, 3),
        "handshake_ms_p50": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "handshake_ms_max": round(latencies[-1] * 1000, 2) if latencies else None,
    }


async def _idle(
    uri: BrokerUri, count: int, concurrency: int, pid: int | None, hold: float
) -> dict[str, Any]:
    before = rss_mib(pid)
    result = await _open_all(uri, count, concurrency)
    clients: list[BenchClient] = result.pop("clients")
    await asyncio.sleep(hold)
    alive = sum(1 for c in clients if c.closed is None)
    during = rss_mib(pid)
    close_started = time.perf_counter()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    result.update(
        connections=count,
        opened=len(clients),
        alive_after_hold=alive,
        close_seconds=round(time.perf_counter() - close_started, 3),
        broker_pid=pid,
        rss_before_mib=before,
        rss_with_connections_mib=during,
        rss_delta_mib=round(during - before, 1)
        if during is not None and before is not None
        else None,
    )
    if alive != count and not result["errors"]:
        result["errors"] = [f"only {alive} of {count} connections stayed open"]
    return result


def idle_connections(
    uri: str, count: int, concurrency: int = 50, pid: int = 0, hold: float = 2.0
) -> dict[str, Any]:
    """Run the idle-connections workload and return its summary dict."""
    parsed = BrokerUri.parse(uri)
    broker_pid = pid or pid_listening_on(parsed.port)
    summary: dict[str, Any] = {}

    async def main() -> None:
        summary.update(await _idle(parsed, count, concurrency, broker_pid, hold))

    run_loop(main())
    return summary


def format_idle(summary: dict[str, Any]) -> str:
    """Human-readable lines for an `idle_connections` summary."""
    per = (summary["open_seconds"] / summary["opened"] * 1000) if summary["opened"] else 0
    lines = [
        f"opened {summary['opened']}/{summary['connections']} connections (+channel) in "
        f"{summary['open_seconds']} s ({per:.2f} ms each; handshake p50 "
        f"{summary['handshake_ms_p50']} ms, max {summary['handshake_ms_max']} ms)",
        f"still open after hold: {summary['alive_after_hold']}; closed in "
        f"{summary['close_seconds']} s",
        f"broker pid {summary['broker_pid']}: RSS before {summary['rss_before_mib']} MiB, "
        f"with connections {summary['rss_with_connections_mib']} MiB "
        f"(delta {summary['rss_delta_mib']} MiB)",
    ]
    errors = summary["errors"]
    if errors:
        lines.append(f"{len(errors)} errors, first: {errors[0]}")
    return "\n".join(lines)

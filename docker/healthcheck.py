#!/usr/bin/env python3
"""Container health check: does amqpd answer AMQP on the address it really listens on?

The address comes from the ready file the entrypoint writes from amqpd's ready line
($AMQPD_READY_FILE, default /tmp/amqpd.ready: "HOST PORT"), so `--port`, AMQPD_PORT and a
config file's port are all honoured; no ready file means not ready yet (still recovering).
`healthcheck.py HOST PORT` checks that address instead. The check sends the protocol header
`AMQP\\x00\\x00\\x09\\x01` and expects a connection.start method frame (type 1, channel 0,
class 10, method 10, frame-end 0xCE). Exit 0 if so, 1 if not.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
FRAME_END = 0xCE
CONNECTION_START = (10, 10)
DEFAULT_READY_FILE = "/tmp/amqpd.ready"


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def check(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None if the broker answers with connection.start, else what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(PROTOCOL_HEADER)
            frame_type, channel, size = struct.unpack(">BHI", read_exactly(sock, 7))
            if frame_type != FRAME_METHOD or channel != 0 or not 4 <= size <= 1 << 20:
                return f"unexpected frame type={frame_type} channel={channel} size={size}"
            payload = read_exactly(sock, size + 1)
    except (OSError, ConnectionError) as exc:
        return f"{host}:{port}: {exc}"
    method = struct.unpack(">HH", payload[:4])
    if method != CONNECTION_START or payload[-1] != FRAME_END:
        return f"expected connection.start, got class/method {method}"
    return None


def address(argv: list[str]) -> tuple[str, int] | str:
    """(host, port) to check, or why there is none yet."""
    if len(argv) > 2:
        return argv[1], int(argv[2])
    path = os.environ.get("AMQPD_READY_FILE") or DEFAULT_READY_FILE
    try:
        host, port = open(path, encoding="ascii").read().split()
    except FileNotFoundError:
        return f"not ready yet (no {path})"
    except (OSError, ValueError) as exc:
        return f"unreadable {path}: {exc}"
    return host, int(port)


def main(argv: list[str]) -> int:
    target = address(argv)
    problem = target if isinstance(target, str) else check(*target)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

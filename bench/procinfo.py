"""Find the process listening on a TCP port; read its resident set size and CPU time (/proc).

`pid_listening_on(port)` scans /proc/net/tcp{,6} for a LISTEN socket on the port and then
/proc/*/fd for the process holding that socket inode (needs permission to read other
processes' fds -- root, or the same user). `rss_kib(pid)` reads VmRSS from
/proc/PID/status, `cpu_seconds(pid)` user+system time from /proc/PID/stat. All return
None when the information is not available.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def pid_listening_on(port: int) -> int | None:
    """The pid of a process with a listening socket on this TCP port, if visible."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not targets:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                try:
                    if os.readlink(fd.path) in targets:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def rss_kib(pid: int) -> int | None:
    """VmRSS of the process in KiB, or None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib(pid: int | None) -> float | None:
    """VmRSS in MiB rounded to 0.1, or None."""
    if pid is None:
        return None
    kib = rss_kib(pid)
    return None if kib is None else round(kib / 1024, 1)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds the process has used so far (/proc/PID/stat), or None."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    try:
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")

"""The state every connection shares: config, vhosts and their stores, the tick scheduler.

`Broker(config, loop)` is created by the server; `open_vhosts` restores each vhost from its
log and wires the store's callbacks (pending records, durable tickets, fatal errors) back to
the event loop. Resource alarms block publishing connections (`connection.blocked`):
`watch_disk` while a store's disk is full, `watch_memory` while memory use (RssAnon +
RssShmem) is at or above the high watermark; `alarms()` names the alarms in effect as
RabbitMQ does (`memory`, `disk`). The same watch pages queued bodies out of memory
(`paging.Pager`) and returns free heap memory to the system (`memory.HeapTrimmer`).
`accounts` are the users, vhosts and permissions (config file plus run-time changes);
`add_vhost`, `delete_vhost` (closing its connections with 320 and removing its data) and
`delete_user` (closing the user's connections) change them with the state they govern.
Connections see the broker through `BrokerView` (connection.py); nothing here imports the
connection at run time.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from amqpd import policy_file
from amqpd.accounts import Accounts, AccountsError, accounts_path
from amqpd.config import Config
from amqpd.core.policy import Policy
from amqpd.core.vhost import VHost
from amqpd.login_guard import LoginGuard
from amqpd.memory import (
    HeapTrimmer,
    MemoryAlarm,
    available_memory,
    format_size,
    parse_watermark,
    used_memory,
)
from amqpd.paging import Pager
from amqpd.restore import restore
from amqpd.scheduler import TickScheduler
from amqpd.spill import SpillLog
from amqpd.store import DurableStore, StoreFailed
from amqpd.testclock import ShiftedClock, ShiftedLoopClock
from amqpd.timers import LoopClock
from amqpd.wire.content import peek_header

if TYPE_CHECKING:
    from amqpd.connection import Connection

log = logging.getLogger("amqpd.server")


def vhost_dir_name(name: str) -> str:
    """A vhost's directory under the data directory: its name percent-quoted, and "." and
    ".." spelled out too, so that no name can point at the data directory or above it."""
    if not name:
        raise ValueError("a vhost needs a name")
    quoted = quote(name, safe="")
    return quoted if quoted.strip(".") else "%2E" * len(quoted)


class Broker:
    """Everything connections share: config, vhosts and stores, the tick scheduler."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        # `loop` may be anything with call_soon / call_soon_threadsafe (a test's fake clock).
        self.config = config
        self.loop = loop
        self.scheduler = TickScheduler(loop)
        self.vhosts: dict[str, VHost] = {}
        self.stores: list[DurableStore] = []
        self.connections: set[Connection] = set()
        self.accounts = Accounts(config, accounts_path(config.data_dir))
        self._retiring: dict[str, tuple[DurableStore, SpillLog]] = {}  # deleted vhosts
        self._retirements: set[asyncio.Future[None]] = set()
        self.fatal: BaseException | None = None
        self.disk_full = False
        watermark = parse_watermark(config.memory_high_watermark)
        available = available_memory()
        self.memory = MemoryAlarm(watermark.limit(available))
        self.memory_watermark = watermark.describe(available)
        self.trimmer = HeapTrimmer()
        self.pager = Pager(keep=config.paging_head)
        self.spills: dict[str, SpillLog] = {}  # vhost name -> where its transient bodies page
        # Why publishers are blocked ("" when they are not), as connection.blocked says it.
        self.blocked_reason = ""
        self.logins = LoginGuard()  # failed logins per peer: delays, bounded logging
        self.stopping = asyncio.Event()
        self.recovery_seconds: dict[str, float] = {}  # per vhost, for metrics
        # With test controls on, the core's clock (TTLs, x-expires) and the connections' clock
        # (heartbeats, handshake timeout) can be moved forward; None otherwise.
        controls = config.test_controls
        self.test_clock = ShiftedClock(loop) if controls else None
        self.connection_clock = ShiftedLoopClock(loop) if controls else None

    def alarms(self) -> list[str]:
        """The resource alarms in effect, by RabbitMQ's names: "memory", "disk"."""
        on = []
        if self.memory.on:
            on.append("memory")
        if self.disk_full:
            on.append("disk")
        return on

    def open_vhosts(self) -> None:
        """Create each vhost and restore it from its log (raises StoreFailed); the
        policies are in place first, so recovered queues and exchanges get them."""
        try:
            self.accounts.load()
        except AccountsError as error:
            raise StoreFailed(str(error)) from None
        policies = policy_file.load(policy_file.policies_path(self.config.data_dir))
        for name in self.accounts.vhosts():
            self.open_vhost(name, policies.get(name, []))

    def open_vhost(self, name: str, policies: list[tuple[Policy, bool]] | None = None) -> VHost:
        """Open (create or recover) one vhost's store and state, with its `policies`
        (policy, is an operator policy) as the policies file has them."""
        self._finish_retiring(name)
        started = time.monotonic()
        store = DurableStore(
            self._vhost_dir(name),
            fsync=self.config.fsync,
            fsync_interval_ms=self.config.fsync_interval_ms,
        )
        store.recover_bodies = False  # a deep queue's bodies stay in the log
        recovered = store.recover()
        self.stores.append(store)
        vhost = VHost(
            name,
            schedule=self.scheduler.dispatch,
            store=store,
            clock=self.test_clock or LoopClock(self.loop),
            parse_header=peek_header,
        )
        # Wired before the restore: expiring what ran out while the broker was down
        # writes records, and they must reach the disk like any other.
        store.on_pending = lambda store=store: self.scheduler.flush_store(store)
        store.on_durable = lambda ticket, vhost=vhost: self.loop.call_soon_threadsafe(
            vhost.durability.advance, ticket
        )
        store.on_fatal = lambda error: self.loop.call_soon_threadsafe(self._fail, error)
        policy_file.install(vhost.policies, policies or [])
        restore(vhost, recovered, head=self.config.paging_head)
        vhost.apply_policies()  # recovered exchanges
        self.vhosts[name] = vhost
        self.spills[name] = SpillLog(self._spill_dir(name))
        self.recovery_seconds[name] = time.monotonic() - started
        messages = sum(len(queue.messages) for queue in vhost.queues.values())
        log.info(
            "vhost %s: recovered %d queues, %d messages in %.3fs%s",
            name,
            len(vhost.queues),
            messages,
            time.monotonic() - started,
            (
                f" (skipped {recovered.corrupt_records} corrupt records, "
                f"cut {recovered.truncated_bytes} torn bytes)"
                if recovered.corrupt_records or recovered.truncated_bytes
                else ""
            ),
        )
        return vhost

    def _vhost_dir(self, name: str) -> Path:
        return Path(self.config.data_dir) / vhost_dir_name(name)

    def _spill_dir(self, name: str) -> Path:
        # "#" is always quoted in vhost directory names: no vhost's log can be here
        return Path(self.config.data_dir) / "#spill" / vhost_dir_name(name)

    def add_vhost(self, name: str, meta: dict[str, object]) -> bool:
        """Create a vhost (or change its metadata); True if it is new. Raises StoreFailed."""
        if name in self.vhosts:
            self.accounts.put_vhost(name, meta)
            return False
        # Files under this name can only be a deleted vhost's that a crash left behind:
        # a new vhost starts empty, as in RabbitMQ.
        self._finish_retiring(name)
        shutil.rmtree(self._vhost_dir(name), ignore_errors=True)
        self.open_vhost(name)
        self.accounts.put_vhost(name, meta)
        log.info("vhost %s: created", name)
        return True

    def delete_vhost(self, name: str) -> bool:
        """Delete a vhost as RabbitMQ does: its connections are closed (320), its queues,
        exchanges, messages and permissions removed. False if there is no such vhost."""
        vhost = self.vhosts.pop(name, None)
        if vhost is None:
            return False
        self.accounts.delete_vhost(name)
        # Its policies go with it, as in RabbitMQ.
        policies = {other: kept.policies for other, kept in self.vhosts.items()}
        policy_file.save(policy_file.policies_path(self.config.data_dir), policies)
        text = f"CONNECTION_FORCED - vhost '{name}' is deleted"
        for connection in list(self.connections):
            if connection.vhost is vhost:
                connection.force_close("vhost deleted", text)
        for queue in list(vhost.queues.values()):
            vhost.remove_queue(queue)
        store = vhost.store
        spill = self.spills.pop(name)
        self.recovery_seconds.pop(name, None)
        if isinstance(store, DurableStore):
            self._retiring[name] = (store, spill)
            task = asyncio.ensure_future(self._retire(name, vhost), loop=self.loop)
            self._retirements.add(task)  # a task nobody holds may be collected mid-way
            task.add_done_callback(self._retirements.discard)
        log.info("vhost %s: deleted", name)
        return True

    async def _retire(self, name: str, vhost: VHost, patience: float = 30.0) -> None:
        """Remove a deleted vhost's files once its closing connections are gone (they may
        still requeue or ack into it until then)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and any(
            connection.vhost is vhost for connection in self.connections
        ):
            await asyncio.sleep(0.05)
        self._finish_retiring(name)

    def _finish_retiring(self, name: str) -> None:
        retiring = self._retiring.pop(name, None)
        if retiring is None:
            return
        store, spill = retiring
        spill.close()
        try:
            store.close()
        except StoreFailed as error:
            log.error("vhost %s: store close failed: %s", name, error)
        if store in self.stores:
            self.stores.remove(store)
        shutil.rmtree(self._vhost_dir(name), ignore_errors=True)
        shutil.rmtree(self._spill_dir(name), ignore_errors=True)

    def delete_user(self, name: str) -> bool:
        """Delete a user; its open connections are closed (320) as RabbitMQ does."""
        if not self.accounts.delete_user(name):
            return False
        text = f"CONNECTION_FORCED - user '{name}' is deleted"
        for connection in list(self.connections):
            if connection.user == name:
                connection.force_close("user deleted", text)
        return True

    def close_stores(self) -> None:
        for name in list(self._retiring):
            self._finish_retiring(name)
        for spill in self.spills.values():
            spill.close()
        for store in self.stores:
            try:
                store.close()
            except StoreFailed as error:
                log.error("store close failed: %s", error)

    async def watch_disk(self, interval: float = 0.5) -> None:
        """Block publishing connections while any store cannot write for lack of space."""
        while True:
            await asyncio.sleep(interval)
            full = any(store.disk_full for store in self.stores)
            if full != self.disk_full:
                self.disk_full = full
                log.warning("disk full: blocking publishers" if full else "disk space back")
                self._alarms_changed()

    async def watch_memory(self, interval: float = 0.1) -> None:
        """Block publishing connections while memory use is at or above the watermark."""
        log.info("memory high watermark: %s", self.memory_watermark)
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            self.page_out(ticks)
            # once a second, or at every tick while the alarm blocks publishers: give memory
            # the broker no longer uses back to the system (it may be all that holds the alarm)
            if ticks % 10 == 0 or self.memory.on:
                self.trimmer.maybe_trim()
            self.check_memory(used_memory())

    def page_out(self, ticks: int) -> None:
        """Move queued bodies out of memory: persistent ones always (their records are in the
        log), transient ones to the spill files while memory use is above the paging ratio."""
        # Empty queues have nothing to page: with thousands of idle queues, skipping them here
        # keeps this pass (on the loop, every 100 ms) from adding to everyone's latency.
        queues = [
            queue
            for vhost in self.vhosts.values()
            for queue in vhost.queues.values()
            if queue.messages
        ]
        spills = self.spills
        spill_to = (lambda queue: spills.get(queue.vhost)) if self.memory.paging() else None
        self.pager.page(queues, spill_to)
        if ticks % 10 == 0:
            for store in self.stores:
                if store.reader is not None:
                    store.reader.prune()
        if ticks % 300 == 0:  # every 30 s: find spilled bodies that died unread
            for name, spill in spills.items():
                vhost = self.vhosts.get(name)
                if vhost is not None and spill.disk_bytes():
                    spill.recount(vhost.queues.values())

    def check_memory(self, used: int) -> None:
        """Record the memory in use (bytes); sets or clears the memory alarm."""
        memory = self.memory
        if memory.update(used):
            if memory.on:
                log.warning(
                    "memory alarm set: %s in use, high watermark %s: blocking publishers",
                    format_size(used),
                    format_size(memory.limit),
                )
            else:
                log.warning("memory alarm cleared: %s in use", format_size(used))
            self._alarms_changed()

    def _alarms_changed(self) -> None:
        names = {"memory": "low on memory", "disk": "low on disk"}
        self.blocked_reason = " & ".join(names[alarm] for alarm in self.alarms())
        for connection in list(self.connections):
            connection.alarms_changed(self.blocked_reason)

    def _fail(self, error: BaseException) -> None:
        log.critical("the message store failed, stopping: %s", error)
        self.fatal = error
        self.stopping.set()

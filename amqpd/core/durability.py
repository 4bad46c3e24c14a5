"""When does a reply that promises durability go out? This file answers it.

Every store append returns a ticket; the store later reports (`Durability.advance`) that
everything up to some ticket is durable. A vhost's `Durability` keeps that durable ticket
and the waiters (channels) holding replies or publisher confirms for later tickets; each
advance asks every waiter to release what is now due. A channel's `Confirms` counts its
publishes in confirm mode with the ticket each one needs, releases them strictly in publish
order (a publish never overtakes an earlier one still waiting), and hands out one basic.ack
(multiple when it covers more than one publish) per flush. Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Protocol

READY = 0  # Confirms.insert: may be acked at the next flush
WAIT_FIRST = 1  # waits for the store, and is the first to: start waiting for advances
WAIT = 2  # waits behind an earlier publish


class DurableWaiter(Protocol):
    def durable_advanced(self) -> bool:
        """The durable ticket moved: release what is due; True while still waiting."""
        ...


class Durability:
    """One vhost's durable ticket and the waiters for later ones."""

    def __init__(self) -> None:
        self.ticket = 0  # the store has made everything up to this ticket durable
        self._waiters: set[DurableWaiter] = set()

    def wait(self, waiter: DurableWaiter) -> None:
        """Call `waiter.durable_advanced()` on every advance until it returns False."""
        self._waiters.add(waiter)

    def advance(self, ticket: int) -> None:
        """The store reports everything up to `ticket` durable."""
        if ticket > self.ticket:
            self.ticket = ticket
        waiters = self._waiters
        for waiter in list(waiters):
            if not waiter.durable_advanced():
                waiters.discard(waiter)

    @property
    def waiting(self) -> int:
        return len(self._waiters)


class Confirms:
    """Publisher confirms of one channel: sequence numbers, their tickets, what to ack.

    The publishes waiting for the store are consecutive sequence numbers (once one waits,
    every later one waits behind it), so they are kept as one list of tickets, the first
    at sequence ``_base``, made non-decreasing (a publish behind a later ticket is released
    with it): no object per publish, and an advance is one bisection however many it
    releases."""

    __slots__ = ("seq", "ready", "sent", "_tickets", "_base", "_head", "_nacks")

    def __init__(self) -> None:
        self.seq = 0  # publishes counted in confirm mode (the client's delivery tags)
        self.ready = 0  # highest of them that may be acked now
        self.sent = 0  # highest of them acked on the wire
        # store tickets of the waiting publishes from _tickets[_head] on (empty: none waits);
        # _tickets[i] belongs to publish _base + i
        self._tickets: list[int] = []
        self._base = 0
        self._head = 0
        self._nacks: deque[int] = deque()  # publishes refused by a queue (reject-publish)

    def insert(self, ticket: int, durable: int, nack: bool = False) -> int:
        """Count a publish whose ack needs store `ticket` durable (0: nothing stored),
        `durable` being the current durable ticket (`nack`: answer it with a nack, in
        its turn). Returns READY, WAIT_FIRST or WAIT."""
        seq = self.seq = self.seq + 1
        if nack:
            self._nacks.append(seq)
        tickets = self._tickets
        if tickets:
            last = tickets[-1]
            tickets.append(ticket if ticket > last else last)
            return WAIT
        if ticket > durable:
            tickets.append(ticket)
            self._base = seq
            self._head = 0
            return WAIT_FIRST
        self.ready = seq
        return READY

    def advance(self, durable: int) -> bool:
        """The durable ticket is now `durable`: True if more publishes may be acked."""
        tickets = self._tickets
        head = self._head
        if not tickets or tickets[head] > durable:
            return False
        i = bisect_right(tickets, durable, head)
        self.ready = self._base + i - 1
        if i == len(tickets):
            tickets.clear()
            self._head = 0
        elif i > len(tickets) // 2:  # drop the released prefix (amortised: it is the larger)
            del tickets[:i]
            self._base += i
            self._head = 0
        else:
            self._head = i
        return True

    @property
    def pending(self) -> bool:
        """Some publish still waits for the store."""
        return bool(self._tickets)

    def take_ack(self) -> tuple[int, bool] | None:
        """The one ack to send now, as (delivery tag, multiple), or None."""
        upto = self.ready
        if upto <= self.sent:
            return None
        multiple = upto - self.sent > 1
        self.sent = upto
        return upto, multiple

    def take(self) -> list[tuple[int, bool, bool]]:
        """The confirms to send now, in order, as (delivery tag, multiple, ack): acks
        cover runs, each refused publish gets its own nack."""
        nacks = self._nacks
        if not nacks:
            ack = self.take_ack()
            return [] if ack is None else [(ack[0], ack[1], True)]
        upto = self.ready
        sent = self.sent
        out: list[tuple[int, bool, bool]] = []
        while nacks and nacks[0] <= upto:
            refused = nacks.popleft()
            if refused - 1 > sent:
                out.append((refused - 1, refused - 1 - sent > 1, True))
            out.append((refused, False, False))
            sent = refused
        if upto > sent:
            out.append((upto, upto - sent > 1, True))
        self.sent = max(sent, upto)
        return out

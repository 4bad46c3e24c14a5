"""The lifecycle of one AMQP connection: states and the transitions allowed between them.

A connection waits for the protocol header, then for start-ok, tune-ok and open (the
handshake), is OPEN until either side closes, is CLOSING while it waits for close-ok, and
ends CLOSED. `TRANSITIONS` is the whole table; `advance` is the one way to move, and refuses
anything the table does not list (a bug in the caller, never a client's fault). Any state may
end in CLOSED (the socket went away); CLOSED is final.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    AWAIT_HEADER = "awaiting protocol header"
    AWAIT_START_OK = "awaiting connection.start-ok"
    AWAIT_TUNE_OK = "awaiting connection.tune-ok"
    AWAIT_OPEN = "awaiting connection.open"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


AWAIT_HEADER = State.AWAIT_HEADER
AWAIT_START_OK = State.AWAIT_START_OK
AWAIT_TUNE_OK = State.AWAIT_TUNE_OK
AWAIT_OPEN = State.AWAIT_OPEN
OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED

HANDSHAKING = frozenset({AWAIT_HEADER, AWAIT_START_OK, AWAIT_TUNE_OK, AWAIT_OPEN})

TRANSITIONS: dict[State, frozenset[State]] = {
    AWAIT_HEADER: frozenset({AWAIT_START_OK, CLOSED}),
    AWAIT_START_OK: frozenset({AWAIT_TUNE_OK, CLOSING, CLOSED}),
    AWAIT_TUNE_OK: frozenset({AWAIT_OPEN, CLOSING, CLOSED}),
    AWAIT_OPEN: frozenset({OPEN, CLOSING, CLOSED}),
    OPEN: frozenset({CLOSING, CLOSED}),
    CLOSING: frozenset({CLOSED}),
    CLOSED: frozenset({CLOSED}),
}


class IllegalTransition(RuntimeError):
    """A move the transition table does not allow: a broker bug."""


def advance(current: State, target: State) -> State:
    """`target`, if the table allows moving there from `current`; else IllegalTransition."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"connection state {current.name} -> {target.name}")
    return target

"""`Confirms` against a plain model (sans-IO): publishes are acked strictly in publish order,
each once its store ticket is durable and every earlier one is, nacks in their turn."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from amqpd.core.durability import READY, WAIT, WAIT_FIRST, Confirms


class Model:
    def __init__(self) -> None:
        self.tickets: list[int] = []  # per publish (seq = index + 1)
        self.nacks: set[int] = set()
        self.released = 0  # highest seq releasable
        self.sent = 0

    def insert(self, ticket: int, durable: int, nack: bool) -> None:
        self.tickets.append(ticket)
        if nack:
            self.nacks.add(len(self.tickets))
        self.advance(durable)

    def advance(self, durable: int) -> None:
        while self.released < len(self.tickets) and self.tickets[self.released] <= durable:
            self.released += 1

    def take(self) -> list[tuple[int, bool, bool]]:
        out: list[tuple[int, bool, bool]] = []
        sent = self.sent
        for seq in sorted(n for n in self.nacks if sent < n <= self.released):
            if seq - 1 > sent:
                out.append((seq - 1, seq - 1 - sent > 1, True))
            out.append((seq, False, False))
            sent = seq
        if self.released > sent:
            out.append((self.released, self.released - sent > 1, True))
        self.sent = max(sent, self.released)
        return out


steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("durable"), st.integers(0, 3), st.just(False)),
        st.tuples(st.just("take"), st.just(0), st.just(False)),
    ),
    max_size=300,
)


@settings(max_examples=1000, deadline=None)
@given(steps)
def test_confirms_match_the_model(plan: list[tuple[str, int, bool]]) -> None:
    confirms, model = Confirms(), Model()
    ticket = durable = 0
    for kind, step, nack in plan:
        if kind == "publish":
            stored = ticket + 1 if step else 0  # 0: nothing stored (transient)
            ticket = max(ticket, stored)
            waiting_before = confirms.pending
            state = confirms.insert(stored, durable, nack)
            model.insert(stored, durable, nack)
            if waiting_before:
                assert state == WAIT
            elif state == READY:
                assert model.released == len(model.tickets)
            else:
                assert state == WAIT_FIRST
        elif kind == "durable":
            durable = min(ticket, durable + step)
            before = model.released
            model.advance(durable)
            assert confirms.advance(durable) == (model.released > before)
        else:
            assert confirms.take() == model.take()
        assert confirms.pending == (model.released < len(model.tickets))
        assert confirms.ready == model.released
    durable = ticket
    model.advance(durable)
    confirms.advance(durable)
    assert confirms.take() == model.take()
    assert not confirms.pending

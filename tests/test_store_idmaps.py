"""The store's compact id maps behave as the dicts they replace (sans-IO, against a dict model),
and cost a few bytes per entry once dense."""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from amqpd.store.idmaps import BLOCK, FlagMap, LocationMap

MISSING = object()

ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "pop", "get"]),
        st.integers(min_value=1, max_value=3 * BLOCK),
        st.integers(min_value=0, max_value=(1 << 80) - 1),
    ),
    max_size=400,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_location_map_matches_a_dict(steps: list[tuple[str, int, int]]) -> None:
    model: dict[int, int] = {}
    table = LocationMap()
    for kind, mid, value in steps:
        if kind == "set":
            model[mid] = value
            table[mid] = value
        elif kind == "pop":
            assert table.pop(mid, MISSING) == model.pop(mid, MISSING)
        else:
            assert table.get(mid) == model.get(mid)
        assert len(table) == len(model)
    assert dict(table.items()) == model
    assert sorted(table) == sorted(model)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_flag_map_matches_a_dict(steps: list[tuple[str, int, int]]) -> None:
    model: dict[int, bool] = {}
    table = FlagMap()
    for kind, mid, value in steps:
        if kind == "set":
            model[mid] = table[mid] = bool(value & 1)
        elif kind == "pop":
            assert table.pop(mid, MISSING) == model.pop(mid, MISSING)
        else:
            assert table.get(mid) == model.get(mid)
            assert (mid in table) == (mid in model)
        assert len(table) == len(model)
    assert dict(table.items()) == model


runs = st.lists(
    st.tuples(
        st.sampled_from(["set", "pop"]),
        st.lists(st.integers(min_value=1, max_value=3 * BLOCK), max_size=300),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(runs)
def test_run_operations_match_one_at_a_time(steps: list[tuple[str, list[int]]]) -> None:
    """The writer's batch calls (set_run / set_all / pop_run) do what a loop of single
    calls does, across sparse and dense blocks and their switches."""
    loc_model: dict[int, int] = {}
    flag_model: dict[int, bool] = {}
    locations, flags = LocationMap(), FlagMap()
    for n, (kind, mids) in enumerate(steps):
        if kind == "set":
            values = [(n << 64) | (mid << 32) | 7 for mid in mids]
            loc_model.update(zip(mids, values, strict=True))
            flag_model.update(dict.fromkeys(mids, bool(n & 1)))
            locations.set_run(mids, values)
            flags.set_all(mids, bool(n & 1))
        else:
            assert locations.pop_run(mids) == [loc_model.pop(mid, None) for mid in mids]
            assert flags.pop_run(mids) == [flag_model.pop(mid, None) for mid in mids]
        assert len(locations) == len(loc_model) and len(flags) == len(flag_model)
        assert dict(locations.items()) == loc_model
        assert dict(flags.items()) == flag_model


def test_dense_runs_of_ids_cost_a_few_bytes_each_and_are_freed_when_drained() -> None:
    count = 200_000
    order = list(range(1, count + 1))
    random.Random(1).shuffle(order)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    locations, flags = LocationMap(), FlagMap()
    for mid in range(1, count + 1):
        locations[mid] = (7 << 64) | (mid * 1100 << 32) | 1100
        flags[mid] = False
    used = tracemalloc.get_traced_memory()[0] - before
    assert used / count < 20, f"{used / count:.1f} bytes per message"
    for mid in order:
        assert locations.pop(mid) == (7 << 64) | (mid * 1100 << 32) | 1100
        assert flags.pop(mid) is False
    left = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(locations) == len(flags) == 0
    assert left < 64 * 1024  # the outer table of blocks, not the 5 MB of entries

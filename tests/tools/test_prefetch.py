"""prefetch: a bounded read-ahead thread that keeps order, errors and early stops as plain iteration has them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from revseg.tools.prefetch import prefetch


def test_items_come_out_in_order_and_all_of_them() -> None:
    assert list(prefetch(range(1000), 4)) == list(range(1000))


def test_depth_zero_is_plain_iteration_on_this_thread() -> None:
    threads: list[str] = []

    def source() -> Iterator[int]:
        for i in range(3):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), 0)) == [0, 1, 2]
    assert set(threads) == {threading.current_thread().name}


def test_the_source_runs_on_another_thread_ahead_of_the_consumer() -> None:
    produced: list[int] = []
    names: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(20):
            names.add(threading.current_thread().name)
            produced.append(i)
            yield i

    items = prefetch(source(), 3)
    assert next(items) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    # one taken, three queued, one more made and waiting for room: never further ahead than that
    assert len(produced) == 5
    assert names == {"revseg-prefetch"}
    assert list(items) == list(range(1, 20))


def test_an_error_in_the_source_comes_out_where_its_item_would_have() -> None:
    def source() -> Iterator[int]:
        yield 0
        yield 1
        raise ValueError("frame 2 is corrupt")

    got: list[int] = []
    with pytest.raises(ValueError, match="frame 2 is corrupt"):
        for item in prefetch(source(), 4):
            got.append(item)
    assert got == [0, 1]


def test_closing_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = {t.ident for t in threading.enumerate()}
    items = prefetch(endless(), 2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # type: ignore[attr-defined]  # prefetch returns a generator when depth >= 1
    assert closed.is_set(), "the source generator must be closed before close() returns"
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "revseg-prefetch"]

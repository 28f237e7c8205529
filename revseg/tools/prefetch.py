"""Run an iterator a few items ahead on a thread, so decoding overlaps the GPU's work.

A tracker on a GPU spends each frame's time in two places: the CPU decodes and
preprocesses the next frame, then the GPU tracks it. Done one after the other the CPU
part adds to every frame; run ahead on a thread (JPEG and video decoders release the
GIL) it hides behind the GPU's. The queue is bounded, so at most ``depth`` items are
held: memory stays flat in the video's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")


class _Raised:
    """An exception the producer thread hit, carried to the consumer to be raised there."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Prefetcher(Generic[T]):
    def __init__(self, items: Iterable[T], depth: int) -> None:
        self._items = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="revseg-prefetch", daemon=True)

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless the consumer has gone; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        iterator = iter(self._items)
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - every failure belongs to the consumer
            self._put(_Raised(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, _Raised):
                    raise item.error
                yield item  # type: ignore[misc]  # everything else on the queue came from self._items
        finally:
            self._stop.set()  # the consumer stopped early, or the items ended: release the producer
            self._thread.join()


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` on a thread, holding at most ``depth`` ready ahead; ``depth < 1`` is plain iteration.

    Items come out in order; an exception the iteration raises comes out where its item
    would have. Closing the returned iterator early stops the thread (and closes the
    source iterator) before it returns.
    """
    if depth < 1:
        return iter(items)
    return iter(_Prefetcher(items, depth))

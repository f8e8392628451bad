"""A bounded hand-over queue between pipeline threads: on a live camera the newest frame wins, so inference works
on the freshest picture; on a file every frame matters, so a full queue makes the producer wait."""

from __future__ import annotations

import collections
import threading
from typing import Any

CLOSED = object()  # returned by get() once the queue is closed and empty


class FrameQueue:
    """Bounded queue with a newest-wins or a blocking policy."""

    def __init__(self, maxsize: int = 2, drop_oldest: bool = False) -> None:
        if maxsize < 1:  # a blocking put() would wait forever
            raise ValueError("maxsize must be at least 1")
        self.drop_oldest = drop_oldest
        self.dropped = 0  # items thrown away to make room for newer ones
        self._items: collections.deque[Any] = collections.deque(maxlen=maxsize)
        self._closed = False
        self._condition = threading.Condition()

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Add ``item``; False if the queue closed (or ``timeout`` passed) before there was room."""
        with self._condition:
            has_room = self.drop_oldest or self._condition.wait_for(  # a file: wait for room
                lambda: self._closed or len(self._items) < self._items.maxlen, timeout=timeout)
            if self._closed or not has_room:
                return False
            if len(self._items) == self._items.maxlen:  # a live source: the newest wins, the deque drops the oldest
                self.dropped += 1
            self._items.append(item)
            self._condition.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; ``CLOSED`` once closed and drained; None if ``timeout`` passed first."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._items or self._closed, timeout=timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._condition.notify_all()
                return item
            return CLOSED

    def close(self) -> None:
        """No more puts; the consumer drains what is left, then gets ``CLOSED``."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

"""Threads and bounded queues that stop together.

Every stage runs in its own thread and talks to its neighbours through bounded queues with
`put`/`get` that time out and look at a shared stop event, so that no thread stays blocked
on a full or empty queue once any stage has failed (supervision's `process_video` deadlocked
exactly there before its PR #2022). The first error is kept and re-raised in the main thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from workers.errors import Cancelled

#: Put after the last item of a stream.
END = object()

_POLL_SECONDS = 0.05


@dataclass
class StageClock:
    """How a stage spent its time.

    Attributes:
        busy: Seconds spent working.
        waiting: Seconds spent waiting on its input or output queue.
        items: Items the stage finished.
        last_progress: When the stage last finished an item (monotonic seconds).
        computing: The stage is inside a long computation (a model batch): not a stall, however
            long it takes; the stall watch is for processes that stop answering.
    """

    busy: float = 0.0
    waiting: float = 0.0
    items: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    computing: bool = False

    @contextmanager
    def working(self, long: bool = False) -> Iterator[None]:
        """Count the time inside as busy; `long` also marks it as a long computation (a model
        batch, the whole-video analysis), which the stall watch waits for."""
        start = time.perf_counter()
        self.computing = self.computing or long
        try:
            yield
        finally:
            if long:
                self.computing = False
            self.busy += time.perf_counter() - start

    def finished_item(self) -> None:
        """One more item done: counted, and progress for the stall watch."""
        self.items += 1
        self.last_progress = time.monotonic()


class StageGroup:
    """A set of stage threads with one stop event and one first error."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.clocks: dict[str, StageClock] = {}
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Set by each stage as it ends. The main thread waits on these, never on
        # Thread.join: a Ctrl-C that lands inside join() on Python 3.11 can leave the
        # thread marked as finished while it still runs (the interpreter then exits under a
        # running torch call and aborts).
        self._done: list[threading.Event] = []
        self._on_stop: list[Callable[[], None]] = []

    @property
    def error(self) -> BaseException | None:
        return self._error

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the main thread) when the group stops early."""
        self._on_stop.append(callback)

    def fail(self, error: BaseException) -> None:
        """Record `error` if it is the first, and ask every stage to stop."""
        with self._lock:
            if self._error is None:
                self._error = error
        self.stop.set()

    def spawn(self, name: str, target: Callable[[StageClock], None]) -> None:
        """Start `target(clock)` in a thread; an exception from it fails the group."""
        clock = self.clocks.setdefault(name, StageClock())
        done = threading.Event()
        self._done.append(done)

        def run() -> None:
            try:
                target(clock)
            except Cancelled:
                pass
            except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
                self.fail(error)
            finally:
                done.set()

        thread = threading.Thread(target=run, name=f"stage-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def put(self, q: queue.Queue, item: Any, clock: StageClock) -> None:
        """Put `item`, waiting for room; raise Cancelled if the group stops meanwhile."""
        start = time.perf_counter()
        try:
            while True:
                if self.stop.is_set():
                    raise Cancelled
                try:
                    q.put(item, timeout=_POLL_SECONDS)
                    return
                except queue.Full:
                    continue
        finally:
            clock.waiting += time.perf_counter() - start

    def get(self, q: queue.Queue, clock: StageClock) -> Any:
        """Get the next item, waiting for one; raise Cancelled if the group stops meanwhile."""
        start = time.perf_counter()
        try:
            while True:
                if self.stop.is_set():
                    raise Cancelled
                try:
                    return q.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
        finally:
            clock.waiting += time.perf_counter() - start

    def drain(self, q: queue.Queue, clock: StageClock) -> Iterator[Any]:
        """The items of `q` up to `END` (not included), as `get` gives them."""
        while (item := self.get(q, clock)) is not END:
            yield item

    def alive(self) -> bool:
        """Whether any stage is still running."""
        return not all(done.is_set() for done in self._done)

    def _wait_done(self, timeout: float) -> None:
        """Wait until every stage has ended, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for done in self._done:
            done.wait(max(0.0, deadline - time.monotonic()))

    def wait(self, stall_timeout: float, on_tick: Callable[[], None] | None = None) -> None:
        """Block until every stage has ended; stop them all on the first error or a stall.

        Args:
            stall_timeout: Seconds without progress in any stage before the run is stopped.
            on_tick: Called every poll from this (the main) thread, e.g. for progress.

        Raises:
            The first error of any stage; StageError on a stall; KeyboardInterrupt as is
            (after the stages were stopped).
        """
        from workers.errors import StageError

        stopped = False
        try:
            while self.alive():
                pending = [done for done in self._done if not done.is_set()]
                if pending:
                    pending[0].wait(_POLL_SECONDS)
                if on_tick is not None:
                    on_tick()
                clocks = self.clocks.values()
                last = time.monotonic() if any(c.computing for c in clocks) else max(
                    (clock.last_progress for clock in clocks), default=time.monotonic()
                )
                if not self.stop.is_set() and time.monotonic() - last > stall_timeout:
                    self.fail(StageError(f"no progress for {stall_timeout:.0f} s; the run was stopped"))
                if self.stop.is_set() and not stopped:
                    stopped = True
                    self._run_stop_callbacks()
        except BaseException as error:
            self.fail(error)
            if not stopped:
                self._run_stop_callbacks()
            self._wait_done(timeout=10)
            raise
        if on_tick is not None:
            on_tick()
        if self._error is not None:
            raise self._error

    def _run_stop_callbacks(self) -> None:
        for callback in self._on_stop:
            try:
                callback()
            except Exception:  # noqa: BLE001 - stopping must go on
                pass

"""One thread owns the model and runs continuous batching for requests from any thread.

That thread also loads the model: every torch call of the process then runs in
one thread. Measured on a 2-core CPU: a bf16 decode step took 153 ms in a
thread other than the one that loaded the model, against 133 ms in the same
thread. Two threads make two OpenMP pools; the timings match libgomp's rule
that idle workers stop spinning once it has more threads than cores, so every
op waits for its workers to wake (OMP_WAIT_POLICY=passive is as slow).

Each loop iteration admits whatever is waiting (up to the free batch slots)
and runs one Generator.step, so a new request joins at the next decode step
and a finished one leaves at once. Callers get a Sequence whose on_token /
on_finish callbacks fire in the scheduler thread; they must be quick (the
HTTP layer only hands them to its event loop).

Keep-alive (Ollama's meaning): after `keep_alive` seconds with nothing to do
the thread frees the model's memory (0: after every request; None: never);
`unload()` asks for it now. Requests in flight finish first; the next one
loads the model again.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable, List, Optional

from .generator import Batch, GenerationError, GenerationRequest, Generator, Sequence


class QueueFull(RuntimeError):
    """More requests are waiting than --max-waiting allows (HTTP 503)."""


class Scheduler:
    def __init__(self, load: Callable[[], Generator], max_waiting: int = 1024, keep_alive: Optional[float] = None):
        """Start the thread, which calls `load()` (model and Generator); returns once it has, or raises what
        `load()` raised."""
        self.max_waiting = max_waiting
        self.keep_alive = keep_alive  # idle seconds before the model is freed; None: never
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._running = 0
        self._last_busy = time.monotonic()
        self._unload_asked: List[threading.Event] = []
        self.generator: Generator  # set by the thread, before `ready`
        self._load_error: Optional[BaseException] = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(load, ready), name="batch-scheduler", daemon=True)
        self._thread.start()
        ready.wait()
        if self._load_error is not None:
            self._thread.join()  # it has ended: nothing of it outlives the failed constructor
            raise self._load_error

    def submit(self, request: GenerationRequest, *, on_token: Optional[Callable[[Sequence], None]] = None,
               on_finish: Optional[Callable[[Sequence], None]] = None) -> Sequence:
        """Queue a request; GenerationError if its grammar cannot start, QueueFull when busy."""
        seq = self.generator.new_sequence(request, on_token=on_token, on_finish=on_finish)
        with self._wake:
            if self._closed:
                raise GenerationError("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting; retry later")
            self._waiting.append(seq)
            self._wake.notify()
        return seq

    @staticmethod
    def cancel(seq: Sequence) -> None:
        """The client went away: the sequence leaves the batch at the next step (or is never started)."""
        seq.cancelled = True

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def unload(self, timeout: Optional[float] = None) -> bool:
        """Free the model's memory once the requests in flight are done; True when it happened in time."""
        done = threading.Event()
        with self._wake:
            if self._closed:
                return False
            self._unload_asked.append(done)
            self._wake.notify()
        return done.wait(timeout)

    def _unload_due(self) -> bool:
        if self._unload_asked:
            return True
        return (self.keep_alive is not None and self._unloadable()
                and time.monotonic() - self._last_busy >= self.keep_alive)

    def _unloadable(self) -> bool:
        loaded = self.generator.loaded
        return loaded.is_loaded and loaded.load_weights is not None

    def _idle_wait(self) -> Optional[float]:
        if self.keep_alive is None or not self._unloadable():
            return None
        return max(0.0, self._last_busy + self.keep_alive - time.monotonic())

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _run(self, load: Callable[[], Generator], ready: threading.Event) -> None:
        try:
            self.generator = load()
            self._last_busy = time.monotonic()  # keep-alive's idle time starts after the load
        except BaseException as exc:  # handed to the constructor, which raises it in the caller's thread
            self._load_error = exc
            return
        finally:
            ready.set()
        self._loop()

    def _loop(self) -> None:
        batch = Batch()
        while True:
            with self._wake:
                while not self._waiting and not batch.seqs and not self._closed and not self._unload_due():
                    self._wake.wait(self._idle_wait())
                unload: List[threading.Event] = []
                if not self._waiting and not batch.seqs and not self._closed:  # idle and the unload is due
                    unload, self._unload_asked = self._unload_asked, []
                    waiting = []
                elif self._closed:
                    waiting, self._waiting = list(self._waiting), collections.deque()
                else:
                    free = self.generator.max_batch_size - len(batch)
                    waiting = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            if not self._closed and not waiting and not batch.seqs:
                self.generator.unload()
                for asked in unload:
                    asked.set()
                continue
            if self._closed:
                for asked in self._unload_asked:
                    asked.set()
                for seq in batch.seqs:
                    seq.cancelled = True
                self.generator.step(batch, [])  # reports the running ones as aborted
            new = []
            for seq in waiting:
                if seq.cancelled or self._closed:  # never started: report it without touching the model
                    seq.finish_reason = "abort"
                    self.generator.finish(seq)
                else:
                    new.append(seq)
            if self._closed:
                return
            try:
                self._running = len(batch) + len(new)
                self.generator.step(batch, new)
            except Exception as exc:  # a bug, not a request's fault: fail who is involved, keep serving
                for seq in new + batch.seqs:
                    if not seq.done:
                        self.generator.fail(seq, GenerationError(f"engine error: {type(exc).__name__}: {exc}"))
                batch = Batch()
            self._running = len(batch)
            self._last_busy = time.monotonic()

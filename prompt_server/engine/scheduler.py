"""One thread owns the model and runs continuous batching for requests from any thread.

Each loop iteration admits whatever is waiting (up to the free batch slots)
and runs one Generator.step, so a new request joins at the next decode step
and a finished one leaves at once. Callers get a Sequence whose on_token /
on_finish callbacks fire in the scheduler thread; they must be quick (the
HTTP layer only hands them to its event loop).
"""
from __future__ import annotations

import collections
import threading
from typing import Callable, Optional

from .generator import Batch, GenerationError, GenerationRequest, Generator, Sequence


class QueueFull(RuntimeError):
    """More requests are waiting than --max-waiting allows (HTTP 503)."""


class Scheduler:
    def __init__(self, generator: Generator, max_waiting: int = 1024):
        self.generator = generator
        self.max_waiting = max_waiting
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

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

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        batch = Batch()
        while True:
            with self._wake:
                while not self._waiting and not batch.seqs and not self._closed:
                    self._wake.wait()
                if self._closed:
                    waiting, self._waiting = list(self._waiting), collections.deque()
                else:
                    free = self.generator.max_batch_size - len(batch)
                    waiting = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            if self._closed:
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
                self.generator.step(batch, new)
            except Exception as exc:  # a bug, not a request's fault: fail who is involved, keep serving
                for seq in new + batch.seqs:
                    if not seq.done:
                        self.generator.fail(seq, GenerationError(f"engine error: {type(exc).__name__}: {exc}"))
                batch = Batch()

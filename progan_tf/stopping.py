"""When a run stops early: SIGINT/SIGTERM, the time limit, and the multi-worker vote.

``StopControl`` is a context manager around the training loop. Inside it the first
SIGINT or SIGTERM is recorded (the loop then writes a checkpoint and stops); a second
one gives up at once. ``check()`` returns why the run should stop at this step, or
None; with several workers they vote, so that all stop at the same step.
"""

from __future__ import annotations

import signal
import time
from typing import Optional

import tensorflow as tf
from absl import logging

SIGNAL, TIME_LIMIT, OTHER_WORKER = "signal", "time limit", "another worker"


class StopControl:
    def __init__(self, strategy: tf.distribute.Strategy, num_workers: int, max_time_minutes: float):
        self.strategy, self.num_workers = strategy, int(num_workers)
        self.max_seconds = float(max_time_minutes) * 60
        self.signum: Optional[int] = None
        self._deadline: Optional[float] = None
        self._previous = {}
        self._vote = None

    def __enter__(self) -> "StopControl":
        self._deadline = time.time() + self.max_seconds if self.max_seconds > 0 else None
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.signum is not None:   # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("signal %d received: writing a checkpoint and stopping", signum)

    def _local_reason(self) -> Optional[str]:
        if self.signum is not None:
            return SIGNAL
        if self._deadline is not None and time.time() >= self._deadline:
            return TIME_LIMIT
        return None

    def check(self) -> Optional[str]:
        """Why the run stops after this step (``signal``, ``time limit``, ``another worker``), or None."""
        reason = self._local_reason()
        if self.num_workers == 1 or not self._any_worker(reason is not None):
            return reason
        return reason or OTHER_WORKER

    def _any_worker(self, local_stop: bool) -> bool:
        """Whether any worker wants to stop: all must stop at the same step (a collective)."""
        if self._vote is None:
            strategy = self.strategy

            @tf.function
            def any_stop(flag):
                per_replica = strategy.run(lambda: tf.identity(flag))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self._vote = any_stop
        return bool(self._vote(tf.constant(1.0 if local_stop else 0.0)).numpy() > 0)

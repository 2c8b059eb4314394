"""What a training run reports: log.txt, the tick statistics, TensorBoard and a progress bar.

``RunLog`` holds messages until the run directory is opened, so that constructing a
trainer writes nothing to disk. ``TickStats`` gathers a tick's step statistics;
``report_tick`` writes the tick line (its format belongs to ``progan_tf.rundir``) and
the TensorBoard scalars.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import List, Optional

import tensorflow as tf
from absl import logging
from tqdm import tqdm

from progan_tf import rundir
from progan_tf.schedule import Schedule
from progan_tf.steps import SKIPPED_PREFIX


class RunLog:
    """Messages to absl logging at once, and to the run's log.txt once it is opened."""

    def __init__(self, path: str):
        self.path = path
        self._file = None
        self._held: List[str] = []

    def open(self):
        if self._file is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            for message in self._held:
                self._write(message)
            self._held = []

    def __call__(self, message: str, level: int = logging.INFO):
        logging.log(level, message)
        if self._file is None:
            self._held.append(message)
        else:
            self._write(message)

    def warning(self, message: str):
        self(message, logging.WARNING)

    def _write(self, message: str):
        self._file.write(message + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclasses.dataclass
class TickStats:
    """Running means of the step statistics over one tick, and the updates skipped in it.

    ``Skipped/D`` and ``Skipped/G`` are 1 for a step whose update was skipped for
    non-finite gradients; they are summed, not averaged. Non-finite values of the other
    statistics (a skipped step's losses) are left out of the means.
    """
    sums: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=lambda: {"D": 0, "G": 0})
    updates: dict = dataclasses.field(default_factory=lambda: {"D": 0, "G": 0})

    def add(self, values: dict):
        for key, value in values.items():
            value = float(value)
            if key.startswith(SKIPPED_PREFIX):
                net = key[len(SKIPPED_PREFIX):]
                self.updates[net] += 1
                self.skipped[net] += int(round(value))
            elif math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    @property
    def all_skipped(self) -> bool:
        """Whether the tick had updates and every one of them was skipped."""
        total = sum(self.updates.values())
        return total > 0 and sum(self.skipped.values()) == total

    def means(self) -> dict:
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        means.update({f"{SKIPPED_PREFIX}{net}": float(n) for net, n in self.skipped.items()})
        return means


@dataclasses.dataclass
class TickTiming:
    """When and where a tick ended: its images, its seconds and the maintenance before it."""
    tick: int
    nimg: int
    total_time: float
    tick_time: float
    tick_kimg: float
    maintenance: float

    @property
    def sec_per_kimg(self) -> float:
        return self.tick_time / max(self.tick_kimg, 1e-9)


def report_tick(log: RunLog, writer, timing: TickTiming, sched: Schedule, stats: TickStats):
    """The tick line in log.txt and the tick's scalars (statistics, progress, rates, timing)."""
    means = stats.means()
    log(rundir.format_tick(timing.tick, timing.nimg / 1000, sched.lod, sched.minibatch, timing.total_time,
                           timing.tick_time, timing.sec_per_kimg, timing.maintenance, stats.skipped))
    with writer.as_default(step=timing.nimg // 1000):
        for key, value in means.items():
            tf.summary.scalar(key, value)
        for key, value in (("Progress/tick", timing.tick), ("Progress/kimg", timing.nimg / 1000),
                           ("Progress/lod", sched.lod), ("Progress/minibatch", sched.minibatch),
                           ("Progress/alpha", sched.alpha), ("LearningRate/G", sched.G_lrate),
                           ("LearningRate/D", sched.D_lrate), ("Timing/total_sec", timing.total_time),
                           ("Timing/sec_per_tick", timing.tick_time), ("Timing/sec_per_kimg", timing.sec_per_kimg),
                           ("Timing/maintenance_sec", timing.maintenance)):
            tf.summary.scalar(key, value)
    writer.flush()


class ProgressBar:
    """A tqdm bar of images shown, refreshed between iterations; silent when stderr is not a terminal."""

    def __init__(self, total: int, initial: int):
        self._bar = tqdm(total=total, initial=initial, unit="img", unit_scale=True, dynamic_ncols=True,
                         disable=None, leave=False, desc="training")

    def update(self, n: int, sched: Optional[Schedule]):
        self._bar.update(n)
        if sched is not None:
            self._bar.set_postfix_str(f"{sched.resolution}x{sched.resolution} lod {sched.lod:.2f}", refresh=False)

    def clear(self):
        self._bar.clear()

    def close(self):
        self._bar.close()

"""The original's training schedule (docs/method.md): everything that depends on kimg.

``training_schedule(cur_nimg, resolution_log2, sched, num_replicas)`` mirrors
the original ``TrainingSchedule``: the level of detail ``lod`` follows from the
images shown so far, the working resolution from ``floor(lod)``, and the
minibatch, learning rates and tick length from per-resolution dicts with a
default. Dict keys are resolutions in pixels (ints, or strings such as
``"128"`` as config files may hold them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping


@dataclasses.dataclass(frozen=True)
class Schedule:
    kimg: float
    lod: float
    res: int            # log2 of the working resolution
    resolution: int     # pixels
    alpha: float        # fade-in of the block at ``res``: 1 - frac(lod)
    minibatch: int      # global minibatch
    G_lrate: float
    D_lrate: float
    tick_kimg: float


def _lookup(table: Mapping | None, resolution: int, default):
    for key, value in (table or {}).items():
        if int(key) == resolution:
            return value
    return default


def training_schedule(cur_nimg: int, resolution_log2: int, sched, num_replicas: int = 1) -> Schedule:
    """The schedule at ``cur_nimg`` real images shown.

    ``sched`` is a mapping (or ConfigDict) with the original's fields:
    lod_initial_resolution, lod_training_kimg, lod_transition_kimg,
    minibatch_base, minibatch_dict, max_minibatch_per_replica, G_lrate_base,
    G_lrate_dict, D_lrate_base, D_lrate_dict, tick_kimg_base, tick_kimg_dict.
    """
    kimg = cur_nimg / 1000.0
    phase_dur = sched["lod_training_kimg"] + sched["lod_transition_kimg"]
    phase_idx = int(math.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur

    lod = float(resolution_log2)
    lod -= math.floor(math.log2(sched["lod_initial_resolution"]))
    lod -= phase_idx
    if sched["lod_transition_kimg"] > 0:
        lod -= max(phase_kimg - sched["lod_training_kimg"], 0.0) / sched["lod_transition_kimg"]
    lod = max(lod, 0.0)
    res = resolution_log2 - int(math.floor(lod))
    resolution = 2 ** res

    minibatch = int(_lookup(sched["minibatch_dict"], resolution, sched["minibatch_base"]))
    minibatch -= minibatch % num_replicas
    per_replica_max = _lookup(sched["max_minibatch_per_replica"], resolution, None)
    if per_replica_max is not None:
        minibatch = min(minibatch, int(per_replica_max) * num_replicas)
    if minibatch < num_replicas:
        raise ValueError(f"minibatch {minibatch} at {resolution}x{resolution} is smaller than the "
                         f"{num_replicas} replicas; raise sched.minibatch_base/minibatch_dict")

    return Schedule(
        kimg=kimg, lod=lod, res=res, resolution=resolution, alpha=1.0 - (lod - math.floor(lod)),
        minibatch=minibatch,
        G_lrate=float(_lookup(sched["G_lrate_dict"], resolution, sched["G_lrate_base"])),
        D_lrate=float(_lookup(sched["D_lrate_dict"], resolution, sched["D_lrate_base"])),
        tick_kimg=float(_lookup(sched["tick_kimg_dict"], resolution, sched["tick_kimg_base"])))


def new_block_started(lod: float, prev_lod: float | None) -> bool:
    """True when a block is introduced or its fade-in ends (the original resets Adam then)."""
    if prev_lod is None:
        return True
    return math.floor(lod) != math.floor(prev_lod) or math.ceil(lod) != math.ceil(prev_lod)

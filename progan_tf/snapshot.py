"""Loading a trained generator from a run directory or a checkpoint (for export, metrics, generation).

A run directory holds ``networks.json`` (the G and D configurations) and
``checkpoints/ckpt-<images shown>``; ``load_snapshot`` rebuilds the networks
from the former and restores the chosen checkpoint's weights into them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from progan_tf import checkpoints, rundir
from progan_tf.networks import Discriminator, Generator


class SnapshotError(ValueError):
    """A run directory or checkpoint that cannot be loaded; the message names it."""


class DamagedSnapshotError(SnapshotError):
    """The checkpoint's files are damaged or unreadable (not: written for other networks)."""


@dataclasses.dataclass
class Snapshot:
    Gs: Generator                 # the moving average: what is shown, evaluated and exported
    G: Generator
    D: Optional[Discriminator]
    checkpoint: str               # the checkpoint prefix that was read
    run_dir: str
    nimg: int                     # real images shown when it was written
    networks: dict                # the content of networks.json

    @property
    def kimg(self) -> float:
        return self.nimg / 1000.0


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """``(checkpoint prefix, run directory)`` for a run directory, its checkpoints/ or a prefix."""
    try:
        found = rundir.resolve_checkpoint(path)
    except rundir.RunDirError as e:
        raise SnapshotError(str(e)) from None
    return found.checkpoint, found.run_dir


def load_snapshot(path: str, with_discriminator: bool = False) -> Snapshot:
    """Rebuilds G, Gs (and D) of a run and restores a checkpoint's weights into them.

    For a run directory, a damaged latest checkpoint is reported (absl warning) and the newest
    older one that restores is used; a damaged checkpoint named by its prefix is an error
    (see progan_tf.checkpoints).
    """
    try:
        resolved = rundir.resolve_checkpoint(path)
    except rundir.RunDirError as e:
        raise SnapshotError(str(e)) from None
    run_dir = resolved.run_dir
    networks_path = os.path.join(run_dir, rundir.NETWORKS_FILE)
    try:
        networks = rundir.read_json(networks_path)
    except (OSError, ValueError) as e:
        raise SnapshotError(f"{networks_path}: cannot read the network configuration ({e})") from None
    G = Generator.from_config(networks["G"])
    Gs = Generator.from_config(networks["G"])
    D = Discriminator.from_config(networks["D"]) if with_discriminator else None
    nimg = tf.Variable(0, dtype=tf.int64)
    objects = dict(G=G, Gs=Gs, nimg=nimg, **({"D": D} if D is not None else {}))
    try:
        restored = checkpoints.restore_resolved(tf.train.Checkpoint(**objects), resolved, partial=True,
                                                into=f"the networks of {networks_path}")
    except checkpoints.DamagedCheckpoint as e:
        raise DamagedSnapshotError(str(e)) from None
    except checkpoints.CheckpointError as e:
        raise SnapshotError(str(e)) from None
    return Snapshot(Gs=Gs, G=G, D=D, checkpoint=restored.checkpoint, run_dir=run_dir, nimg=int(nimg.numpy()),
                    networks=networks)

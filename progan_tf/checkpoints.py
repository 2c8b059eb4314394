"""Restoring checkpoints, in one place for progan-train --resume, progan-generate, progan-export and
progan-metrics.

A checkpoint that does not restore is one of two things, and the message says which:

- **damaged**: its files are missing, truncated, unreadable or fail their checksums
  (``IndexError: Read less bytes than requested``, ``DataLossError``, ``Checksum does not
  match``, ``not an sstable``, ``OSError`` ...). Nothing about the networks is wrong.
- **mismatched**: it reads, but its variable names or shapes disagree with the objects
  restored into: it was written for other networks. Only then do we ask whether it comes
  from another config or dataset.

`restore_resolved` restores the checkpoint a `rundir.Resolved` names. When that was a run
directory's *latest* checkpoint (not one the user named), a damaged one is reported by name
and the newest older checkpoint that restores is used instead; a checkpoint the user named
is never silently replaced. `forget_checkpoints` takes the damaged ones out of the checkpoint
manager's ``checkpoint`` state file after a resume fell back (their files are left in place).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, List, Optional, Sequence

import tensorflow as tf
from absl import logging

from progan_tf import rundir

_MISMATCH_HINT = "is it from another config or dataset?"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored; the message names it."""

    def __init__(self, message: str, prefix: str):
        super().__init__(message)
        self.prefix = prefix


class DamagedCheckpoint(CheckpointError):
    """Its files are missing, truncated, unreadable or fail their checksums."""

    def __init__(self, prefix: str, reason: str):
        super().__init__(f"cannot restore checkpoint {prefix}: it is damaged or unreadable ({reason})", prefix)
        self.reason = reason


class MismatchedCheckpoint(CheckpointError):
    """It reads, but its variable names or shapes disagree with the objects restored into."""


class NoCheckpointRestores(DamagedCheckpoint):
    """A run directory's latest checkpoint and every older one are damaged."""

    def __init__(self, tried: Sequence[DamagedCheckpoint]):
        directory = os.path.dirname(tried[0].prefix)
        names = "; ".join(f"{os.path.basename(e.prefix)} ({e.reason})" for e in tried)
        CheckpointError.__init__(self, f"cannot restore any checkpoint in {directory}: each is damaged or "
                                       f"unreadable: {names}", tried[0].prefix)
        self.reason, self.tried = "no checkpoint restores", list(tried)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_mismatch(error: BaseException) -> bool:
    """Whether a failed read says that names or shapes disagree (not that the files are bad)."""
    if isinstance(error, AssertionError):   # assert_existing_objects_matched: objects the checkpoint lacks
        return True
    text = str(error)
    if isinstance(error, ValueError):       # "Received incompatible tensor with shape (8,) when attempting
        return "incompatible" in text or "shape" in text   # to restore variable with shape (16,) ..."
    return isinstance(error, tf.errors.NotFoundError) and "not found in checkpoint" in text


def classify(prefix: str, error: BaseException, into: str) -> CheckpointError:
    """The `DamagedCheckpoint` or `MismatchedCheckpoint` that a failed read of ``prefix`` means.

    ``into`` describes what was restored into ("the networks of .../networks.json").
    """
    if _is_mismatch(error):
        return MismatchedCheckpoint(f"cannot restore checkpoint {prefix} into {into}: {_first_line(error)} "
                                    f"({_MISMATCH_HINT})", prefix)
    if isinstance(error, IndexError):   # the bundle reader on a truncated .data file
        return DamagedCheckpoint(prefix, f"truncated file: {_first_line(error)}")
    return DamagedCheckpoint(prefix, _first_line(error))


# What a failed tf.train.Checkpoint.read raises: OpError (DataLoss, NotFound, the checksum's
# Unknown ...), IndexError (truncation), OSError, ValueError/AssertionError (mismatches).
_READ_ERRORS = (tf.errors.OpError, IndexError, OSError, EOFError, ValueError, AssertionError)


def restore(checkpoint: tf.train.Checkpoint, prefix: str, into: str, partial: bool = False) -> None:
    """Reads ``prefix`` into ``checkpoint``'s objects, each of which must get a value.

    ``partial``: the checkpoint may hold more than the objects (a generator out of a training
    checkpoint). Raises `DamagedCheckpoint` or `MismatchedCheckpoint`.
    """
    if not rundir.checkpoint_exists(prefix):
        raise DamagedCheckpoint(prefix, f"{prefix}.index is missing")
    try:
        status = checkpoint.read(prefix)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except _READ_ERRORS as e:
        raise classify(prefix, e, into) from None


@dataclasses.dataclass(frozen=True)
class Restored:
    checkpoint: str                                  # the prefix that was restored
    run_dir: str
    damaged: tuple = ()                              # DamagedCheckpoint of newer ones skipped, newest first


def restore_resolved(checkpoint: tf.train.Checkpoint, resolved: rundir.Resolved, into: str,
                     partial: bool = False, fallback: bool = True,
                     warn: Callable[[str], None] = logging.warning) -> Restored:
    """Restores the checkpoint ``resolved`` names; falls back to older ones if it was a latest.

    With ``fallback`` and ``resolved.latest``, a damaged checkpoint is reported through ``warn``
    ("<prefix> is damaged (...); using ckpt-<n>") and the newest older one that restores is
    used; `NoCheckpointRestores` lists what was tried when none does (or, with no older one, the
    `DamagedCheckpoint` itself). A mismatch is raised at
    once: older checkpoints of the same run would not fit either.
    """
    prefix = resolved.checkpoint
    if not (fallback and resolved.latest):
        restore(checkpoint, prefix, into, partial)
        return Restored(prefix, resolved.run_dir)
    damaged: List[DamagedCheckpoint] = []
    for candidate in [prefix] + rundir.older_checkpoints(prefix):
        try:
            restore(checkpoint, candidate, into, partial)
        except DamagedCheckpoint as e:
            damaged.append(e)
            continue
        except MismatchedCheckpoint:
            for e in damaged:
                warn(f"checkpoint {e.prefix} is damaged ({e.reason})")
            raise
        for e in damaged:
            warn(f"checkpoint {e.prefix} is damaged ({e.reason}); using {os.path.basename(candidate)}")
        return Restored(candidate, resolved.run_dir, tuple(damaged))
    raise damaged[0] if len(damaged) == 1 else NoCheckpointRestores(damaged)


def forget_checkpoints(directory: str, restored: str) -> None:
    """Makes ``restored`` the latest checkpoint of ``directory``'s ``checkpoint`` state file,
    dropping every newer entry (the damaged checkpoints a resume skipped).

    tf.train.CheckpointManager reads this file when it is created: without this, it would
    report a damaged checkpoint as the latest and keep it in its list. The damaged files
    themselves stay where they are (for inspection); the manager no longer counts or prunes
    them, and a later checkpoint at the same images shown replaces them.
    """
    directory = os.path.abspath(directory)
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return
    limit = rundir.checkpoint_nimg(restored)
    paths, timestamps = list(state.all_model_checkpoint_paths), list(state.all_model_checkpoint_timestamps)
    if len(timestamps) != len(paths):
        timestamps = [None] * len(paths)
    kept = [(path, t) for path, t in zip(paths, timestamps) if _fewer_images(path, limit)]
    kept.append((os.path.abspath(restored), os.path.getmtime(restored + ".index")))
    stamps = [t for _, t in kept] if all(t is not None for _, t in kept) else None
    # What CheckpointManager itself calls (relative paths, written atomically); the public v1
    # tf.compat.v1.train.update_checkpoint_state logs a deprecation warning.
    tf.__internal__.train.update_checkpoint_state(
        directory, kept[-1][0], all_model_checkpoint_paths=[p for p, _ in kept], save_relative_paths=True,
        all_model_checkpoint_timestamps=stamps, last_preserved_timestamp=state.last_preserved_timestamp or None)


def _fewer_images(prefix: str, nimg: Optional[int]) -> bool:
    n = rundir.checkpoint_nimg(prefix)
    return n is not None and nimg is not None and n < nimg


def older_names(prefix: str, limit: int = 3) -> Optional[str]:
    """``ckpt-64, ckpt-32`` of the checkpoints older than ``prefix`` (None when there is none)."""
    older = [os.path.basename(p) for p in rundir.older_checkpoints(prefix)]
    if not older:
        return None
    return ", ".join(older[:limit]) + (f" and {len(older) - limit} more" if len(older) > limit else "")

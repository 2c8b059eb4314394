"""The run directory: every file name in it, run creation, checkpoint resolution and the tick log.

A run directory, as ``progan-train`` writes it::

    <result_dir>/NNNNN-<desc>/
        config.json         the full training config
        run.json            dataset directory, creation time, command line, TensorFlow version
        networks.json       the G and D configurations (rebuilds the networks without the dataset)
        log.txt             one line per tick (see format_tick) and a few messages
        summary.json        where and why training stopped
        reals.png           a grid of training images
        fakesKKKKKK.png     Gs's images after KKKKKK whole kimg
        checkpoints/        ckpt-<images shown>.{index,data-*} and, beside each, ckpt-<n>.json
                            (lod, resolution and kimg, see CheckpointInfo)
        events.out.tfevents.*  TensorBoard

This is the lowest layer above the config: it imports nothing else of the
package, and not TensorFlow (the command-line tools read run directories
before, or without, loading TensorFlow). Only `checkpoint_info` of a
checkpoint written before the per-checkpoint JSON existed reads the checkpoint.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
from typing import Dict, List, Optional

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run.json"
NETWORKS_FILE = "networks.json"
LOG_FILE = "log.txt"
SUMMARY_FILE = "summary.json"
REALS_FILE = "reals.png"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"            # checkpoints are <CHECKPOINT_DIR>/ckpt-<images shown>
EXPORT_METADATA_FILE = "progan_metadata.json"   # a progan-export SavedModel's assets/ file

_RUN_NAME_RE = re.compile(r"^(\d+)-")
_FAKES_RE = re.compile(r"^fakes(\d+)\.png$")
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_NAME}-(\d+)$")
# The prev_lod variable of the trainer's tf.train.Checkpoint (older checkpoints have no JSON beside them).
_LOD_KEY = "prev_lod/.ATTRIBUTES/VARIABLE_VALUE"


class RunDirError(ValueError):
    """A path that is not the run directory or checkpoint it should be; the message names the path."""


# --- files -----------------------------------------------------------------------------------

def fakes_file(kimg: int) -> str:
    """``fakes%06d.png`` of the snapshot after ``kimg`` whole kimg, as the original names them."""
    return f"fakes{int(kimg):06d}.png"


def list_fakes(run_dir: str) -> dict:
    """``{whole kimg: path}`` of the run's fakes*.png."""
    names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
    return {int(m.group(1)): os.path.join(run_dir, name) for name in names if (m := _FAKES_RE.match(name))}


def export_metadata_path(export_dir: str) -> str:
    return os.path.join(export_dir, "assets", EXPORT_METADATA_FILE)


def is_saved_model(path: str) -> bool:
    """Whether ``path`` is a SavedModel directory (holds saved_model.pb or .pbtxt)."""
    return any(os.path.isfile(os.path.join(path, name)) for name in ("saved_model.pb", "saved_model.pbtxt"))


def read_json(path: str):
    """The content of a JSON file (OSError when unreadable, ValueError when not JSON)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, content, **dump_options) -> None:
    """Writes ``content`` as indented JSON atomically: a reader sees the old file or the new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, **dump_options)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    """Writes ``text`` atomically (for config.json, which the config serialises itself)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_run_info(run_dir: str) -> dict:
    """``run.json`` ({} when the run has none); ValueError/OSError when it exists but cannot be read."""
    path = os.path.join(run_dir, RUN_INFO_FILE)
    return read_json(path) if os.path.isfile(path) else {}


# --- creation --------------------------------------------------------------------------------

def create_run(result_dir: str, desc: str) -> str:
    """``<result_dir>/NNNNN-<desc>`` with the next free run number (one more than the highest)."""
    os.makedirs(result_dir, exist_ok=True)
    ids = [int(m.group(1)) for name in os.listdir(result_dir) if (m := _RUN_NAME_RE.match(name))]
    path = os.path.join(result_dir, f"{max(ids, default=-1) + 1:05d}-{desc}")
    os.makedirs(path)
    return path


# --- checkpoints -----------------------------------------------------------------------------

def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINT_DIR)


def checkpoint_exists(prefix: str) -> bool:
    return os.path.isfile(prefix + ".index")


def checkpoint_nimg(prefix: str) -> Optional[int]:
    """Images shown, from a ``ckpt-<n>`` name (None for a prefix named otherwise)."""
    m = _CHECKPOINT_RE.match(os.path.basename(prefix))
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: str) -> List[str]:
    """Every ``checkpoints/ckpt-<n>`` prefix of a run, oldest (fewest images shown) first."""
    return _checkpoints_in(checkpoint_dir(run_dir))


def _checkpoints_in(directory: str) -> List[str]:
    names = os.listdir(directory) if os.path.isdir(directory) else []
    prefixes = [os.path.join(directory, n[:-len(".index")]) for n in names if n.endswith(".index")]
    return sorted((p for p in prefixes if checkpoint_nimg(p) is not None), key=checkpoint_nimg)


def older_checkpoints(prefix: str) -> List[str]:
    """The ``ckpt-<n>`` beside ``prefix`` with fewer images shown, newest first (what to fall back to)."""
    nimg = checkpoint_nimg(prefix)
    if nimg is None:
        return []
    return [p for p in reversed(_checkpoints_in(os.path.dirname(prefix))) if checkpoint_nimg(p) < nimg]


def latest_checkpoint(directory: str) -> Optional[str]:
    """The newest checkpoint recorded in ``directory``'s ``checkpoint`` file, as ``tf.train.latest_checkpoint``.

    None when there is no such file or the checkpoint it names is gone.
    """
    try:
        with open(os.path.join(directory, "checkpoint"), encoding="utf-8") as f:
            m = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.MULTILINE)
    except OSError:
        return None
    if not m:
        return None
    prefix = m.group(1)
    if "\\" in prefix:   # a text-format proto string: C escapes of the path's UTF-8 bytes
        prefix = codecs.escape_decode(prefix.encode("utf-8"))[0].decode("utf-8")
    prefix = prefix if os.path.isabs(prefix) else os.path.join(directory, prefix)
    return prefix if checkpoint_exists(prefix) else None


def run_dir_of(path: str) -> str:
    """The run directory that a run directory, its checkpoints/ or one of its checkpoints belongs to.

    A checkpoint outside any checkpoints/ directory belongs to the directory it is in.
    """
    path = os.path.normpath(path)
    if os.path.isdir(path):
        return os.path.dirname(path) if os.path.basename(path) == CHECKPOINT_DIR else path
    parent = os.path.dirname(path)
    return os.path.dirname(parent) if os.path.basename(parent) == CHECKPOINT_DIR else parent


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A checkpoint and the run directory it belongs to."""
    checkpoint: str   # the prefix (``.../checkpoints/ckpt-<n>``)
    run_dir: str
    # Chosen as a directory's latest (not named by the user): an older one may stand in for it.
    latest: bool = dataclasses.field(default=False, compare=False)


def resolve_checkpoint(path: str, name: Optional[str] = None) -> Resolved:
    """The checkpoint that ``path`` means, with its run directory.

    ``path`` is a run directory or its checkpoints/ (the latest checkpoint, or
    the one called ``name``: ``ckpt-<n>`` or just ``<n>``), a directory holding
    checkpoint files directly, or a checkpoint prefix. RunDirError names the path.
    """
    path = os.path.normpath(path)
    if not os.path.exists(path) and not checkpoint_exists(path):
        raise RunDirError(f"{path}: no such run directory or checkpoint")
    if not os.path.isdir(path):
        if name is not None:
            raise RunDirError(f"{path}: a checkpoint name ({name}) needs a run directory, not a checkpoint")
        if not checkpoint_exists(path):
            raise RunDirError(f"{path}: neither a run directory nor a checkpoint (no {path}.index)")
        return Resolved(path, run_dir_of(path))
    run_dir = run_dir_of(path)
    directory = checkpoint_dir(run_dir) if os.path.isdir(checkpoint_dir(run_dir)) else path
    if name is None:
        prefix = latest_checkpoint(directory)
        if prefix is None:
            raise RunDirError(f"{path}: no checkpoint in {directory}")
        return Resolved(prefix, run_dir, latest=True)
    prefix = os.path.join(directory, name if name.startswith(CHECKPOINT_NAME + "-") else f"{CHECKPOINT_NAME}-{name}")
    if not checkpoint_exists(prefix):
        known = ", ".join(os.path.basename(p) for p in list_checkpoints(run_dir)) or "none"
        raise RunDirError(f"{path}: no checkpoint {os.path.basename(prefix)} in {directory} (there are: {known})")
    return Resolved(prefix, run_dir)


# --- what each checkpoint was written at ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """Training state of a checkpoint, kept beside it so that export needs no checkpoint internals."""
    nimg: Optional[int]
    lod: Optional[float]          # level of detail of the last iteration (None: unknown or before the first)
    resolution: Optional[int]     # pixels of the stage being trained (None: unknown)

    @property
    def kimg(self) -> Optional[float]:
        return None if self.nimg is None else self.nimg / 1000.0


def _info_path(prefix: str) -> str:
    return prefix + ".json"


def write_checkpoint_info(prefix: str, info: CheckpointInfo) -> None:
    write_json(_info_path(prefix), {"nimg": info.nimg, "kimg": info.kimg, "lod": info.lod,
                                    "resolution": info.resolution})


def prune_checkpoint_info(directory: str) -> None:
    """Removes the ``ckpt-<n>.json`` of checkpoints the checkpoint manager has deleted."""
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.endswith(".json") and _CHECKPOINT_RE.match(name[:-len(".json")]):
            if not checkpoint_exists(os.path.join(directory, name[:-len(".json")])):
                os.remove(os.path.join(directory, name))


def checkpoint_info(prefix: str) -> CheckpointInfo:
    """What ``write_checkpoint_info`` stored beside the checkpoint; for older checkpoints, read from it."""
    try:
        content = read_json(_info_path(prefix))
    except OSError:
        return CheckpointInfo(checkpoint_nimg(prefix), _read_checkpoint_lod(prefix), None)
    return CheckpointInfo(content.get("nimg"), content.get("lod"), content.get("resolution"))


def _read_checkpoint_lod(prefix: str) -> Optional[float]:
    """The trainer's ``prev_lod`` variable read out of the checkpoint itself (None if absent)."""
    import tensorflow as tf   # only checkpoints written before ckpt-<n>.json need it: kept off the import path

    try:
        lod = float(tf.train.load_checkpoint(prefix).get_tensor(_LOD_KEY))
    except (tf.errors.OpError, ValueError, KeyError):
        return None
    return lod if lod >= 0 else None


# --- the tick log ----------------------------------------------------------------------------

def format_time(seconds: float) -> str:
    """``12s``, ``3m 05s``, ``1h 02m 03s``, ``2d 03h 04m``: the original's format_time."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


def parse_time(text: str) -> int:
    """Seconds of a `format_time` string."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(v) * units[u] for v, u in re.findall(r"(\d+)([dhms])", text))


@dataclasses.dataclass(frozen=True)
class Tick:
    """One tick line of log.txt. The fields after ``time_s`` may be missing (None) in hand-written logs."""
    tick: int
    kimg: float
    lod: float
    minibatch: Optional[int]
    time_s: int                       # training time so far, whole seconds
    sec_per_tick: Optional[float] = None
    sec_per_kimg: Optional[float] = None
    maintenance: Optional[float] = None
    skipped: Dict[str, int] = dataclasses.field(default_factory=dict)   # updates skipped, by network


def format_tick(tick: int, kimg: float, lod: float, minibatch: int, time_s: float, sec_per_tick: float,
                sec_per_kimg: float, maintenance: float, skipped: Optional[Dict[str, int]] = None) -> str:
    """The tick line of log.txt, in the original's columns, then ``skipped D <n> G <n>`` when any
    update of the tick was skipped for non-finite gradients (docs/method.md#non-finite)."""
    line = (f"tick {tick:<5d} kimg {kimg:<8.1f} lod {lod:<5.2f} minibatch {minibatch:<4d} "
            f"time {format_time(time_s):<12s} sec/tick {sec_per_tick:<7.1f} "
            f"sec/kimg {sec_per_kimg:<7.2f} maintenance {maintenance:.1f}")
    if skipped and any(skipped.values()):
        line += " skipped " + " ".join(f"{net} {n}" for net, n in sorted(skipped.items()))
    return line


_NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)"
_TICK_RE = re.compile(r"^tick (\d+)\s+kimg ([\d.]+)\s+lod ([\d.]+)(?:\s+minibatch (\d+))?\s+"
                      r"time ((?:\d+[dhms] ?)+)")
_TAIL_RE = {name: re.compile(rf"{re.escape(label)} {_NUMBER}")
            for name, label in (("sec_per_tick", "sec/tick"), ("sec_per_kimg", "sec/kimg"),
                                ("maintenance", "maintenance"))}


_SKIPPED_RE = re.compile(r"([A-Za-z]+) (\d+)")


def parse_tick(line: str) -> Optional[Tick]:
    """The `Tick` of a log.txt line, or None for any other line."""
    m = _TICK_RE.match(line.strip())
    if not m:
        return None
    rest = line[m.end():]
    tail = {name: float(t.group(1)) if (t := regex.search(rest)) else None for name, regex in _TAIL_RE.items()}
    skipped = {net: int(n) for net, n in _SKIPPED_RE.findall(rest.split(" skipped ", 1)[1])} if " skipped " in rest else {}
    return Tick(int(m.group(1)), float(m.group(2)), float(m.group(3)),
                int(m.group(4)) if m.group(4) is not None else None, parse_time(m.group(5)), **tail, skipped=skipped)


def read_ticks(run_dir: str) -> List[Tick]:
    """The tick lines of the run's log.txt, in file order ([] without a log)."""
    try:
        with open(os.path.join(run_dir, LOG_FILE), encoding="utf-8") as f:
            return [t for line in f if (t := parse_tick(line)) is not None]
    except OSError:
        return []

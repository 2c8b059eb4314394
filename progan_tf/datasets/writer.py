"""Writing a dataset: the original's TFRecordExporter, made atomic, sharded and threaded.

:func:`write_dataset` takes the items of any source (``load(i)`` -> CHW uint8), writes them
in the seeded shuffled order into a temporary directory next to the target and renames it
into place, so an interrupted or failed run never leaves anything that reads as a dataset.
The bytes are the original tool's (the format: see ``fileformat``).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import re
import shutil
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
from absl import logging

try:
    import fcntl
except ImportError:   # not POSIX: no locks, so leftovers of killed writes are left alone
    fcntl = None

from progan_tf.datasets import fileformat
from progan_tf.datasets.errors import SkipImage, ToolError


@dataclasses.dataclass
class WriteOptions:
    """How to write: order, how many, shards, threads, error handling, replacing."""

    shuffle: bool = True
    seed: int = 123
    max_images: Optional[int] = None
    shards: int = 1
    num_workers: int = 0
    strict: bool = False
    overwrite: bool = False
    progress: bool = False

    def validate(self):
        if self.shards < 1:
            raise ToolError(f"--shards must be >= 1, got {self.shards}")
        if self.max_images is not None and self.max_images < 1:
            raise ToolError(f"--max_images must be >= 1, got {self.max_images}")
        if self.num_workers < 0:
            raise ToolError(f"--num_workers must be >= 0, got {self.num_workers}")


class Source(NamedTuple):
    """The items of one input, as the ``open_*`` function of each source family gives them."""

    num_images: int
    load: Callable[[int], np.ndarray]    # item i -> CHW uint8 (raises on bad input)
    describe: Callable[[int], str]       # item i -> its name in messages
    labels: Optional[np.ndarray] = None  # float32 [num_images, L], or None


@dataclasses.dataclass
class Summary:
    """What a write did; ``report()`` is the text ``progan-dataset`` prints."""

    path: str
    written: int = 0
    skipped: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    shape: Optional[tuple] = None
    label_size: int = 0

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def report(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        lines = [f"Wrote {self.written} images {self.shape} (C,H,W) to {self.path}: "
                 f"{self.bytes / 2**20:.1f} MiB in {self.seconds:.1f} s ({rate:.0f} images/s); "
                 f"label size {self.label_size}; skipped {self.num_skipped}."]
        for reason, items in sorted(self.skipped.items()):
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            lines.append(f"  skipped {len(items)} ({reason}): {', '.join(items[:5])}{more}")
        return "\n".join(lines)


def shuffled_order(n: int, shuffle: bool = True, seed: int = 123) -> np.ndarray:
    """The order records are written in: the original's np.random.RandomState(seed).shuffle."""
    order = np.arange(n)
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    return order


def _dataset_like_entries(path: str) -> List[str]:
    return [f for f in os.listdir(path) if f.endswith(".tfrecords") or f.endswith(".labels")]


def check_output_dir(path: str, overwrite: bool):
    """Refuses an output path that already holds something, unless --overwrite
    and it holds only a dataset (we never delete files we did not write)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ToolError(f"output path exists and is not a directory: {path}")
    if not os.path.isdir(path) or not os.listdir(path):
        return
    entries = os.listdir(path)
    ours = _dataset_like_entries(path)
    if not overwrite:
        if ours:
            raise ToolError(f"{path} already holds a dataset ({sorted(ours)[0]}, ...); "
                            "pass --overwrite to replace it")
        raise ToolError(f"output directory is not empty: {path}")
    others = sorted(set(entries) - set(ours))
    if others:
        raise ToolError(f"--overwrite: {path} holds files that are not dataset files "
                        f"({', '.join(others[:3])}); refusing to delete them")


INCOMPLETE = ".{name}.incomplete-"   # + tempfile.mkdtemp's 8 random characters


def _lock(directory: str) -> Optional[int]:
    """An open descriptor holding an exclusive flock on ``directory``, or None when it is taken
    by another process (or the file system cannot lock). The lock ends with the process, also
    on SIGKILL: an unlocked temporary directory is one whose writer is gone."""
    if fcntl is None:
        return None
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def remove_stale_incomplete(final_dir: str) -> List[str]:
    """Removes the ``.<name>.incomplete-XXXXXXXX`` directories that killed writes of ``final_dir``
    left beside it; returns their names. Only directories that hold nothing but dataset files
    (``*.partial``, ``*.tfrecords``, ``*.labels``) and that no live writer holds (see `_lock`)."""
    parent, name = os.path.split(os.path.abspath(final_dir))
    pattern = re.compile(re.escape(INCOMPLETE.format(name=name)) + r"[a-z0-9_]{8}$")
    removed = []
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        path = os.path.join(parent, entry)
        if not pattern.match(entry) or os.path.islink(path) or not os.path.isdir(path):
            continue
        files = os.listdir(path)
        if not all(f.endswith((".partial", ".tfrecords", ".labels")) and os.path.isfile(os.path.join(path, f))
                   for f in files):
            continue
        fd = _lock(path)
        if fd is None:   # being written now (or no locks here: cannot tell)
            continue
        try:
            shutil.rmtree(path)
            removed.append(entry)
        finally:
            os.close(fd)
    if removed:
        logging.info("Removed %d unfinished write(s) of %s: %s", len(removed), final_dir, ", ".join(removed))
    return removed


class DatasetWriter:
    """The original TFRecordExporter, writing into a temporary directory.

    Files are written as ``*.partial`` inside ``.<name>.incomplete-XXXX`` next to
    the target and renamed into place by :meth:`commit`, so an interrupted or
    failed run never leaves anything that reads as a dataset.
    """

    def __init__(self, tfrecord_dir: str, planned: int, shards: int = 1,
                 overwrite: bool = False):
        import tensorflow as tf  # deferred: `progan-dataset --help` should not pay for TF
        self._tf = tf
        self.final_dir = os.path.abspath(tfrecord_dir)
        self.name = os.path.basename(self.final_dir.rstrip(os.sep))
        if not self.name:
            raise ToolError(f"bad output directory: {tfrecord_dir}")
        check_output_dir(self.final_dir, overwrite)
        self.overwrite = overwrite
        parent = os.path.dirname(self.final_dir)
        os.makedirs(parent, exist_ok=True)
        remove_stale_incomplete(self.final_dir)
        self.tmp_dir = tempfile.mkdtemp(prefix=INCOMPLETE.format(name=self.name), dir=parent)
        self._lock_fd = _lock(self.tmp_dir)   # held until commit or abort, or until this process ends
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would stick to the dataset
        self.planned = max(1, planned)
        self.shards = shards
        self.per_shard = -(-self.planned // shards)
        self.shape = None
        self.count = 0
        self._writers: List[list] = []  # [level][shard] -> TFRecordWriter

    def _open(self, shape):
        c, h, w = shape
        if c not in (1, 3) or h != w or not fileformat.is_power_of_two(h) or h < 4:
            raise ToolError(f"images must be [1 or 3, R, R] with R a power of two >= 4; "
                            f"got {shape} (C, H, W)")
        self.shape = tuple(shape)
        top = int(np.log2(h))
        for res_log2 in range(top, 1, -1):
            paths = [os.path.join(self.tmp_dir, fileformat.tfrecord_file_name(
                self.name, res_log2, s, self.shards) + ".partial") for s in range(self.shards)]
            self._writers.append([self._tf.io.TFRecordWriter(p) for p in paths])

    def add_image(self, levels: Sequence[np.ndarray]):
        """Adds one image given its pyramid (see fileformat.build_pyramid), top level first."""
        if self.shape is None:
            self._open(levels[0].shape)
        shard = min(self.count // self.per_shard, self.shards - 1)
        for writers, level in zip(self._writers, levels):
            writers[shard].write(fileformat.serialize_example(level))
        self.count += 1

    def add_labels(self, labels: np.ndarray):
        if labels.shape[0] != self.count:
            raise ToolError(f"internal: {labels.shape[0]} labels for {self.count} images")
        path = os.path.join(self.tmp_dir, fileformat.labels_file_name(self.name) + ".partial")
        with open(path, "wb") as f:
            fileformat.write_labels(f, labels)

    def _close_writers(self):
        for writers in self._writers:
            for w in writers:
                w.close()
        self._writers = []

    def commit(self) -> int:
        """Renames everything into place; returns the dataset's size in bytes."""
        self._close_writers()
        if self.count == 0:
            raise ToolError(f"no images were written to {self.final_dir}")
        total = 0
        for fn in os.listdir(self.tmp_dir):
            if fn.endswith(".partial"):
                src = os.path.join(self.tmp_dir, fn)
                total += os.path.getsize(src)
                os.rename(src, os.path.join(self.tmp_dir, fn[:-len(".partial")]))
        old = None
        if os.path.isdir(self.final_dir):
            if os.listdir(self.final_dir):
                check_output_dir(self.final_dir, self.overwrite)  # still ours to replace?
                old = self.final_dir + f".old-{os.getpid()}"
                os.rename(self.final_dir, old)
            else:
                os.rmdir(self.final_dir)
        os.rename(self.tmp_dir, self.final_dir)
        self._unlock()
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return total

    def _unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abort(self):
        try:
            self._close_writers()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self._unlock()


def _prepare(load: Callable[[int], np.ndarray], i: int):
    """Worker: load item i (CHW uint8) and build its pyramid. Errors are returned."""
    try:
        img = load(i)
        if img.ndim != 3 or img.shape[0] not in (1, 3):
            raise SkipImage(f"not a 1- or 3-channel image: shape {img.shape}")
        if img.dtype != np.uint8:
            img = np.rint(img).clip(0, 255).astype(np.uint8)
        c, h, w = img.shape
        if h != w or not fileformat.is_power_of_two(h) or h < 4:
            return img.shape, None
        return img.shape, fileformat.build_pyramid(img)
    except ToolError:
        raise
    except Exception as e:  # any decode failure of user data
        return None, e


def _ordered_parallel(fn: Callable[[int], object], items: Sequence[int], num_workers: int):
    """Yields (item, fn(item)) in order with at most ~4*num_workers in flight."""
    if num_workers <= 0:
        for it in items:
            yield it, fn(it)
        return
    window = 4 * num_workers
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        pending = collections.deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= window:
                break
        while pending:
            item, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            yield item, fut.result()


def _check_prepared(writer: DatasetWriter, name: str, shape, pyramid) -> None:
    """Stops the run when an image's size or channels do not fit the dataset being written."""
    if writer.shape is None:
        if pyramid is None:
            raise ToolError(
                f"{name}: image is {shape[2]}x{shape[1]}; images must be "
                "square with a power-of-two size >= 4 (use --resolution to crop "
                "and resize)")
    elif tuple(shape) != writer.shape:
        raise ToolError(
            f"{name}: shape {tuple(shape)} (C,H,W) differs from the first "
            f"image's {writer.shape}; mixed sizes or channel counts (use "
            "--resolution and/or --channels to convert)")


def write_dataset(tfrecord_dir: str, num_items: int, load: Callable[[int], np.ndarray],
                  describe: Callable[[int], str], labels: Optional[np.ndarray],
                  opts: WriteOptions) -> Summary:
    """Writes items 0..num_items-1 (in the shuffled order) as a dataset.

    ``load(i)`` returns item i as a CHW uint8 array (or raises on bad input);
    ``describe(i)`` names it in messages; ``labels`` holds one row per item (or
    None). Bad items are skipped with a warning (or, with opts.strict, stop the
    run); a size or channel mismatch always stops it.
    """
    opts.validate()
    if num_items == 0:
        raise ToolError(f"no input images for {tfrecord_dir}")
    import tensorflow  # noqa: F401  (imported here so its start-up is not in the timing)
    from tqdm import tqdm
    start = time.time()
    order = shuffled_order(num_items, opts.shuffle, opts.seed)
    target = num_items if opts.max_images is None else min(num_items, opts.max_images)
    summary = Summary(path=os.path.abspath(tfrecord_dir))
    writer = DatasetWriter(tfrecord_dir, target, opts.shards, opts.overwrite)
    kept = []
    try:
        bar = tqdm(total=target, unit="img", desc=os.path.basename(summary.path),
                   disable=None if opts.progress else True)
        with bar:
            for i, (shape, result) in _ordered_parallel(lambda j: _prepare(load, j), order,
                                                       opts.num_workers):
                if shape is None:  # unreadable or unusable
                    kind = "rejected" if isinstance(result, SkipImage) else "unreadable"
                    reason = f"{type(result).__name__}: {result}"
                    if opts.strict:
                        raise ToolError(f"cannot read {describe(i)}: {reason}")
                    logging.warning("skipping %s: %s", describe(i), reason)
                    summary.skipped.setdefault(kind, []).append(describe(i))
                    continue
                _check_prepared(writer, describe(i), shape, result)
                writer.add_image(result)
                kept.append(i)
                bar.update(1)
                if writer.count >= target:
                    break
        if labels is not None:
            writer.add_labels(np.asarray(labels, np.float32)[np.asarray(kept, np.int64)])
            summary.label_size = int(labels.shape[1])
        summary.shape = writer.shape
        summary.written = writer.count
        summary.bytes = writer.commit()
    except BaseException:
        writer.abort()
        raise
    summary.seconds = time.time() - start
    return summary


def write_source(tfrecord_dir: str, source: Source, opts: WriteOptions) -> Summary:
    """Writes every item of ``source`` (see :func:`write_dataset`)."""
    return write_dataset(tfrecord_dir, source.num_images, source.load, source.describe,
                         source.labels, opts)

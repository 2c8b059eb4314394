"""progan-dataset: create and inspect ProGAN multi-resolution TFRecord datasets.

Writes the original NVIDIA ``dataset_tool.py`` format byte for byte (SPEC.md
section 5): one ``<name>-rNN.tfrecords`` per level 2..log2(resolution), each
record a ``tf.train.Example`` {data: raw uint8 C,H,W bytes, shape: [C, H, W]},
lower levels the 2x2 box average of the unrounded level above (rounded with
``np.rint`` only when stored), records in a seeded shuffled order (seed 123) and
``<name>-rxx.labels`` (``np.save`` of float32 [N, L]) in the same order.

Usage: ``progan-dataset <command> <args...> [--flags]``; ``progan-dataset --help``
lists the commands, ``progan-dataset <command> --help`` explains one.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import gzip
import io
import os
import pickle
import shutil
import struct
import sys
import tempfile
import textwrap
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import PIL.Image
from absl import flags, logging

from progan_tf import toolflags

# --------------------------------------------------------------------------------------
# Flags (shared by all sub-commands; `progan-dataset <command> --help` lists the ones
# each command uses). They live in their own FlagValues, not absl's global FLAGS, so
# importing this module next to other CLIs (train, metrics) cannot clash on names.

FLAGS = flags.FlagValues()
_DEFINE_bool = functools.partial(flags.DEFINE_bool, flag_values=FLAGS)
_DEFINE_integer = functools.partial(flags.DEFINE_integer, flag_values=FLAGS)
_DEFINE_string = functools.partial(flags.DEFINE_string, flag_values=FLAGS)

_DEFINE_bool("shuffle", None, "Write images in a shuffled order (the original's "
                  "np.random.RandomState(seed).shuffle); --noshuffle keeps source order. Default: "
                  "shuffled, except create_lsun, which keeps the LMDB's cursor order as the original does.")
_DEFINE_integer("seed", 123, "Seed of the shuffled order (the original uses 123).")
_DEFINE_integer("max_images", None, "Write at most this many images (the first ones "
                     "of the shuffled order; for create_from_tfds the first ones of the "
                     "split). For extract/display: read at most this many.")
_DEFINE_integer("shards", 1, "Split each resolution level over this many files "
                     "<name>-rNN-SSSSS-of-TTTTT.tfrecords (1 = the original's single file).")
_DEFINE_integer("num_workers", min(8, os.cpu_count() or 1),
                     "Threads decoding/resizing images in parallel (0 = in the main thread).")
_DEFINE_bool("strict", False, "Stop with an error at the first unreadable image "
                  "instead of skipping it with a warning.")
_DEFINE_bool("overwrite", False, "Replace an existing dataset (or extract directory) "
                  "at the output path.")
_DEFINE_bool("progress", True, "Show a progress bar (only on a terminal).")
_DEFINE_integer("expected_images", -1, "Image count the source must hold: -1 = the "
                     "standard download's count (CIFAR 50000, SVHN train 73257, CelebA "
                     "202599), 0 = do not check.")
_DEFINE_integer("resolution", None, "Output resolution (power of two >= 4). Images "
                     "are centre-cropped to a square and resized (Lanczos) to it. Without it, "
                     "create_from_images/create_from_tfds need square power-of-two images of "
                     "one size; create_lsun defaults to 256.")
_DEFINE_integer("channels", 0, "Force 1 (grayscale) or 3 (RGB) channels; 0 = take them "
                     "from the first image (mixed channel counts are then an error).")
_DEFINE_bool("recursive", False, "create_from_images: also read images in "
                  "sub-directories.")
_DEFINE_bool("labels_from_subdirs", False, "create_from_images: one-hot labels from the "
                  "name of each image's top-level sub-folder (classes sorted by name; "
                  "implies --recursive).")
_DEFINE_string("split", "train", "create_mnist: train, test or all (train then test); "
                    "create_svhn: train, test or extra; create_from_tfds: a TFDS split "
                    "(e.g. train, test[:1000]).")
_DEFINE_integer("cx", 89, "create_celeba: crop centre x.")
_DEFINE_integer("cy", 121, "create_celeba: crop centre y.")
_DEFINE_string("image_key", "image", "create_from_tfds: feature holding the image.")
_DEFINE_string("label_key", "label", "create_from_tfds: ClassLabel feature for one-hot "
                    "labels ('' = no labels; ignored when the dataset has no such feature).")
_DEFINE_string("data_dir", None, "create_from_tfds: TFDS data directory holding the "
                    "prepared dataset (default: TFDS's own, ~/tensorflow_datasets).")
_DEFINE_bool("download", False, "create_from_tfds: let TFDS download and prepare the "
                  "dataset if it is not in --data_dir (needs internet).")
_DEFINE_integer("num", 64, "display: number of images in the grid.")
_DEFINE_integer("level", None, "display/extract/compare: resolution level as log2 "
                     "(e.g. 5 for 32x32); default: the top level.")
_DEFINE_bool("ignore_labels", False, "compare: only compare images.")
_DEFINE_bool("verify", False, "info: also read and check every record of every level "
                  "(CRC, shape) and report a corrupt file by name.")


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
STANDARD_COUNTS = {"cifar10": 50000, "cifar100": 50000, "svhn_train": 73257,
                   "svhn_test": 26032, "svhn_extra": 531131, "celeba": 202599}


class ToolError(Exception):
    """A user-facing error: printed as one line, exit status 1, no traceback."""


class SkipImage(Exception):
    """An input image that cannot be used (unreadable, wrong shape)."""


# --------------------------------------------------------------------------------------
# Record format.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def serialize_example(chw: np.ndarray) -> bytes:
    """Serializes one level exactly as the original: Example{data, shape}.

    Hand-built rather than via tf.train.Example so the bytes do not depend on
    protobuf's map ordering; the map entries are in sorted key order ('data',
    'shape'), which is what TF's (deterministic) serializer produced for the
    original's files. tests/test_dataset_tool.py checks both.
    """
    data = _field(1, _field(1, chw.tobytes()))                        # bytes_list.value
    shape = _field(3, _field(1, b"".join(_varint(int(d)) for d in chw.shape)))  # int64_list
    features = (_field(1, _field(1, b"data") + _field(2, data))
                + _field(1, _field(1, b"shape") + _field(2, shape)))
    return _field(1, features)


def build_pyramid(chw: np.ndarray) -> List[np.ndarray]:
    """Levels top (the image) to 4x4 as stored: float32 2x2 means of the unrounded
    level above, np.rint + clip only for the stored copy (the original's exporter)."""
    top = chw if chw.dtype == np.uint8 else np.rint(chw).clip(0, 255).astype(np.uint8)
    levels = [top]
    x = chw.astype(np.float32)
    while x.shape[1] > 4:
        x = (x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) * 0.25
        # Means of values in [0, 255] stay in [0, 255]: no clip needed before the cast.
        levels.append(np.rint(x).astype(np.uint8))
    return levels


def shuffled_order(n: int, shuffle: bool = True, seed: int = 123) -> np.ndarray:
    order = np.arange(n)
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    return order


def onehot(labels: np.ndarray) -> np.ndarray:
    """The original's one-hot: max(label)+1 columns, float32."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    out = np.zeros((labels.size, int(labels.max()) + 1), np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


# --------------------------------------------------------------------------------------
# Writing.

@dataclasses.dataclass
class WriteOptions:
    shuffle: bool = True
    seed: int = 123
    max_images: Optional[int] = None
    shards: int = 1
    num_workers: int = 0
    strict: bool = False
    overwrite: bool = False
    progress: bool = False

    @classmethod
    def from_flags(cls, shuffle_by_default: bool = True) -> "WriteOptions":
        shuffle = shuffle_by_default if FLAGS.shuffle is None else FLAGS.shuffle
        return cls(shuffle=shuffle, seed=FLAGS.seed, max_images=FLAGS.max_images,
                   shards=FLAGS.shards, num_workers=FLAGS.num_workers, strict=FLAGS.strict,
                   overwrite=FLAGS.overwrite, progress=FLAGS.progress)

    def validate(self):
        if self.shards < 1:
            raise ToolError(f"--shards must be >= 1, got {self.shards}")
        if self.max_images is not None and self.max_images < 1:
            raise ToolError(f"--max_images must be >= 1, got {self.max_images}")
        if self.num_workers < 0:
            raise ToolError(f"--num_workers must be >= 0, got {self.num_workers}")


@dataclasses.dataclass
class Summary:
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


class DatasetWriter:
    """The original TFRecordExporter, writing into a temporary directory.

    Files are written as ``*.partial`` inside ``.<name>.incomplete-XXXX`` next to
    the target and renamed into place by :meth:`commit`, so an interrupted or
    failed run never leaves anything that reads as a dataset.
    """

    def __init__(self, tfrecord_dir: str, planned: int, shards: int = 1,
                 overwrite: bool = False):
        import tensorflow as tf  # deferred: `--help` should not pay for TF
        self._tf = tf
        self.final_dir = os.path.abspath(tfrecord_dir)
        self.name = os.path.basename(self.final_dir.rstrip(os.sep))
        if not self.name:
            raise ToolError(f"bad output directory: {tfrecord_dir}")
        check_output_dir(self.final_dir, overwrite)
        self.overwrite = overwrite
        parent = os.path.dirname(self.final_dir)
        os.makedirs(parent, exist_ok=True)
        self.tmp_dir = tempfile.mkdtemp(prefix=f".{self.name}.incomplete-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would stick to the dataset
        self.planned = max(1, planned)
        self.shards = shards
        self.per_shard = -(-self.planned // shards)
        self.shape = None
        self.count = 0
        self._writers: List[list] = []  # [level][shard] -> TFRecordWriter
        self._paths: List[list] = []
        self._labels_written = False

    def _file_name(self, res_log2: int, shard: int) -> str:
        if self.shards == 1:
            return f"{self.name}-r{res_log2:02d}.tfrecords"
        return f"{self.name}-r{res_log2:02d}-{shard:05d}-of-{self.shards:05d}.tfrecords"

    def _open(self, shape):
        c, h, w = shape
        if c not in (1, 3) or h != w or not _is_pow2(h) or h < 4:
            raise ToolError(f"images must be [1 or 3, R, R] with R a power of two >= 4; "
                            f"got {shape} (C, H, W)")
        self.shape = tuple(shape)
        top = int(np.log2(h))
        for res in range(top, 1, -1):
            paths = [os.path.join(self.tmp_dir, self._file_name(res, s) + ".partial")
                     for s in range(self.shards)]
            self._paths.append(paths)
            self._writers.append([self._tf.io.TFRecordWriter(p) for p in paths])

    def add_image(self, levels: Sequence[np.ndarray]):
        """Adds one image given its pyramid (see build_pyramid), top level first."""
        if self.shape is None:
            self._open(levels[0].shape)
        shard = min(self.count // self.per_shard, self.shards - 1)
        for writers, level in zip(self._writers, levels):
            writers[shard].write(serialize_example(level))
        self.count += 1

    def add_labels(self, labels: np.ndarray):
        if labels.shape[0] != self.count:
            raise ToolError(f"internal: {labels.shape[0]} labels for {self.count} images")
        with open(os.path.join(self.tmp_dir, f"{self.name}-rxx.labels.partial"), "wb") as f:
            np.save(f, labels.astype(np.float32))
        self._labels_written = True

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
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return total

    def abort(self):
        try:
            self._close_writers()
        finally:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _prepare(load: Callable[[int], np.ndarray], i: int):
    """Worker: load item i (CHW uint8) and build its pyramid. Errors are returned."""
    try:
        img = load(i)
        if img.ndim != 3 or img.shape[0] not in (1, 3):
            raise SkipImage(f"not a 1- or 3-channel image: shape {img.shape}")
        if img.dtype != np.uint8:
            img = np.rint(img).clip(0, 255).astype(np.uint8)
        c, h, w = img.shape
        if h != w or not _is_pow2(h) or h < 4:
            return img.shape, None
        return img.shape, build_pyramid(img)
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
    start = time.time()
    order = shuffled_order(num_items, opts.shuffle, opts.seed)
    target = num_items if opts.max_images is None else min(num_items, opts.max_images)
    summary = Summary(path=os.path.abspath(tfrecord_dir))
    writer = DatasetWriter(tfrecord_dir, target, opts.shards, opts.overwrite)
    kept = []
    try:
        from tqdm import tqdm
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
                if writer.shape is None:
                    if result is None:
                        raise ToolError(
                            f"{describe(i)}: image is {shape[2]}x{shape[1]}; images must be "
                            "square with a power-of-two size >= 4 (use --resolution to crop "
                            "and resize)")
                elif tuple(shape) != writer.shape:
                    raise ToolError(
                        f"{describe(i)}: shape {tuple(shape)} (C,H,W) differs from the first "
                        f"image's {writer.shape}; mixed sizes or channel counts (use "
                        "--resolution and/or --channels to convert)")
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


# --------------------------------------------------------------------------------------
# Image helpers.

def pil_to_array(img: PIL.Image.Image, channels: int = 0) -> np.ndarray:
    """PIL image -> HWC uint8 with 1 or 3 channels (RGBA/palette/CMYK -> RGB,
    LA/1 -> L, 16-bit grayscale -> 8-bit). ``channels`` forces 1 or 3."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.uint32)
        arr = (arr >> 8 if arr.max() > 255 else arr).clip(0, 255).astype(np.uint8)
        img = PIL.Image.fromarray(arr, "L")
    elif mode in ("1", "LA", "F"):
        img = img.convert("L")
    elif mode not in ("L", "RGB"):
        img = img.convert("RGB")  # RGBA, P, PA, CMYK, YCbCr, ...
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def crop_resize(hwc: np.ndarray, resolution: Optional[int]) -> np.ndarray:
    """Centre-crops to a square and resizes (Lanczos) to resolution; as-is if the
    image already has that size or no resolution is given."""
    if resolution is None or hwc.shape[:2] == (resolution, resolution):
        return hwc
    h, w = hwc.shape[:2]
    s = min(h, w)
    hwc = hwc[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    if s != resolution:
        mode = "L" if hwc.shape[2] == 1 else "RGB"
        img = PIL.Image.fromarray(hwc[:, :, 0] if mode == "L" else hwc, mode)
        img = img.resize((resolution, resolution), PIL.Image.LANCZOS)
        hwc = np.asarray(img)
        hwc = hwc[:, :, None] if hwc.ndim == 2 else hwc
    return hwc


def load_image_file(path: str, resolution: Optional[int] = None, channels: int = 0) -> np.ndarray:
    """Reads an image file to CHW uint8 (converted, cropped/resized as asked)."""
    with PIL.Image.open(path) as img:
        img.load()  # force full decode so truncated files fail here
        arr = pil_to_array(img, channels)
    return crop_resize(arr, resolution).transpose(2, 0, 1)


def _check_resolution(resolution: Optional[int], flag: str = "--resolution"):
    if resolution is not None and (not _is_pow2(resolution) or resolution < 4):
        raise ToolError(f"{flag}={resolution} is not a power of two >= 4")


def _check_count(n: int, expected: int, standard: int, what: str):
    want = standard if expected == -1 else expected
    if want and n != want:
        raise ToolError(f"{what}: expected {want} images, found {n} (incomplete download? "
                        "--expected_images=0 disables this check)")


def _require_file(path: str, hint: str = "") -> str:
    if not os.path.isfile(path):
        raise ToolError(f"file not found: {path}{' (' + hint + ')' if hint else ''}")
    return path


def _require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ToolError(f"{what} not found: {path}")
    return path


# --------------------------------------------------------------------------------------
# Sources.

def _read_idx(path: str, magic: int) -> np.ndarray:
    """Reads an IDX file (gzipped or not) and checks its header against its size."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise ToolError(f"cannot read {path}: {e}") from e
    ndim = magic & 0xFF
    if len(buf) < 4 + 4 * ndim or struct.unpack(">I", buf[:4])[0] != magic:
        raise ToolError(f"{path}: not an IDX file with magic {magic}")
    dims = struct.unpack(f">{ndim}I", buf[4:4 + 4 * ndim])
    data = np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ToolError(f"{path}: header says {dims} but holds {data.size} bytes (truncated?)")
    return data.reshape(dims)


def _idx_path(mnist_dir: str, stem: str) -> str:
    for cand in (stem + ".gz", stem):
        if os.path.isfile(os.path.join(mnist_dir, cand)):
            return os.path.join(mnist_dir, cand)
    raise ToolError(f"file not found: {os.path.join(mnist_dir, stem + '.gz')} (MNIST/Fashion-"
                    "MNIST IDX files expected)")


def load_mnist(mnist_dir: str, split: str = "train"):
    """Images [N, 1, 32, 32] (zero-padded from 28) and integer labels [N]."""
    _require_dir(mnist_dir, "MNIST directory")
    prefixes = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}
    if split not in prefixes:
        raise ToolError(f"--split={split}: create_mnist accepts train, test or all")
    images, labels = [], []
    for p in prefixes[split]:
        img_path = _idx_path(mnist_dir, f"{p}-images-idx3-ubyte")
        lab_path = _idx_path(mnist_dir, f"{p}-labels-idx1-ubyte")
        x = _read_idx(img_path, 2051)
        y = _read_idx(lab_path, 2049)
        if x.shape[1:] != (28, 28):
            raise ToolError(f"{img_path}: images are {x.shape[1:]}, expected 28x28")
        if x.shape[0] != y.shape[0]:
            raise ToolError(f"{img_path} holds {x.shape[0]} images but {lab_path} holds "
                            f"{y.shape[0]} labels")
        images.append(x)
        labels.append(y)
    images = np.concatenate(images)[:, None]
    images = np.pad(images, [(0, 0), (0, 0), (2, 2), (2, 2)], "constant", constant_values=0)
    return images, np.concatenate(labels)


def create_mnist(tfrecord_dir: str, mnist_dir: str, opts: WriteOptions, split: str = "train",
                 expected_images: int = 0) -> Summary:
    images, labels = load_mnist(mnist_dir, split)
    _check_count(images.shape[0], expected_images, 0, mnist_dir)
    return write_dataset(tfrecord_dir, images.shape[0], lambda i: images[i],
                         lambda i: f"{mnist_dir} image #{i}", onehot(labels), opts)


def _unpickle(path: str):
    _require_file(path)
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:
        raise ToolError(f"cannot read {path}: {e}") from e


def _cifar_images(data: dict, path: str) -> np.ndarray:
    x = np.asarray(data["data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ToolError(f"{path}: 'data' has shape {x.shape}, expected [N, 3072]")
    return x.reshape(-1, 3, 32, 32)


def create_cifar10(tfrecord_dir: str, cifar10_dir: str, opts: WriteOptions,
                   expected_images: int = -1) -> Summary:
    _require_dir(cifar10_dir, "CIFAR-10 directory")
    images, labels = [], []
    for batch in range(1, 6):
        path = os.path.join(cifar10_dir, f"data_batch_{batch}")
        data = _unpickle(path)
        images.append(_cifar_images(data, path))
        labels.append(np.asarray(data["labels"]))
    images, labels = np.concatenate(images), np.concatenate(labels)
    _check_count(images.shape[0], expected_images, STANDARD_COUNTS["cifar10"], cifar10_dir)
    return write_dataset(tfrecord_dir, images.shape[0], lambda i: images[i],
                         lambda i: f"{cifar10_dir} image #{i}", onehot(labels), opts)


def create_cifar100(tfrecord_dir: str, cifar100_dir: str, opts: WriteOptions,
                    expected_images: int = -1) -> Summary:
    _require_dir(cifar100_dir, "CIFAR-100 directory")
    path = os.path.join(cifar100_dir, "train")
    data = _unpickle(path)
    images, labels = _cifar_images(data, path), np.asarray(data["fine_labels"])
    _check_count(images.shape[0], expected_images, STANDARD_COUNTS["cifar100"], cifar100_dir)
    return write_dataset(tfrecord_dir, images.shape[0], lambda i: images[i],
                         lambda i: f"{cifar100_dir} image #{i}", onehot(labels), opts)


def _svhn_mat(path: str):
    """<split>_32x32.mat: X [32, 32, 3, N], y [N, 1] in 1..10 (10 = digit 0)."""
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
        x, y = mat["X"], np.asarray(mat["y"]).ravel()
    except Exception as e:
        raise ToolError(f"cannot read {path}: {e}") from e
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.size:
        raise ToolError(f"{path}: X has shape {x.shape} and y {y.size} entries; expected "
                        "X [32, 32, 3, N] and N labels")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), np.where(y == 10, 0, y)


def _svhn_pickles(paths: List[str]):
    """The original's input: train_1..3.pkl, each (images uint8 [N, 3, 32, 32], labels [N] in 0..9)."""
    images, labels = [], []
    for path in paths:
        data = _unpickle(path)
        try:
            x, y = np.asarray(data[0]), np.asarray(data[1]).ravel()
        except (TypeError, IndexError, KeyError) as e:
            raise ToolError(f"{path}: expected a pickled (images, labels) pair ({e})") from e
        if x.ndim != 4 or x.shape[1:] != (3, 32, 32) or x.dtype != np.uint8 or len(y) != len(x):
            raise ToolError(f"{path}: images {x.shape} {x.dtype} and {len(y)} labels; expected "
                            "uint8 [N, 3, 32, 32] and N labels")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ToolError(f"{path}: labels must be digits 0..9, found {y.min()}..{y.max()}")
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def create_svhn(tfrecord_dir: str, svhn_dir: str, opts: WriteOptions, split: str = "train",
                expected_images: int = -1) -> Summary:
    """SVHN cropped digits: <split>_32x32.mat (the official download), or for the train
    split the original tool's train_1.pkl .. train_3.pkl when there is no .mat file."""
    _require_dir(svhn_dir, "SVHN directory")
    if split not in ("train", "test", "extra"):
        raise ToolError(f"--split={split}: create_svhn accepts train, test or extra")
    path = os.path.join(svhn_dir, f"{split}_32x32.mat")
    pickles = [os.path.join(svhn_dir, f"train_{b}.pkl") for b in (1, 2, 3)]
    if not os.path.isfile(path) and split == "train" and all(os.path.isfile(p) for p in pickles):
        (images, labels), path = _svhn_pickles(pickles), svhn_dir
    else:
        hint = "the cropped-digits .mat file" + (", or the original's train_1..3.pkl" if split == "train" else "")
        images, labels = _svhn_mat(_require_file(path, hint))
    _check_count(images.shape[0], expected_images, STANDARD_COUNTS[f"svhn_{split}"], path)
    return write_dataset(tfrecord_dir, images.shape[0], lambda i: images[i],
                         lambda i: f"{path} image #{i}", onehot(labels), opts)


def _find_celeba_images(celeba_dir: str) -> List[str]:
    _require_dir(celeba_dir, "CelebA directory")
    for sub, exts in (("img_align_celeba_png", (".png",)), ("img_align_celeba", (".jpg", ".png")),
                      ("", (".jpg", ".png"))):
        d = os.path.join(celeba_dir, sub)
        if os.path.isdir(d):
            files = sorted(os.path.join(d, f) for f in os.listdir(d)
                           if f.lower().endswith(exts))
            if files:
                return files
    raise ToolError(f"no aligned CelebA images in {celeba_dir} (looked in "
                    "img_align_celeba_png/*.png, img_align_celeba/*.jpg and the directory)")


def create_celeba(tfrecord_dir: str, celeba_dir: str, opts: WriteOptions, cx: int = 89,
                  cy: int = 121, expected_images: int = -1) -> Summary:
    """128x128 crop centred at (cx, cy) of the aligned 178x218 images."""
    files = _find_celeba_images(celeba_dir)
    _check_count(len(files), expected_images, STANDARD_COUNTS["celeba"], celeba_dir)

    def load(i):
        with PIL.Image.open(files[i]) as im:
            img = np.asarray(im.convert("RGB"))
        if img.shape != (218, 178, 3):
            raise SkipImage(f"size {img.shape[1]}x{img.shape[0]}, expected aligned 178x218")
        return img[cy - 64:cy + 64, cx - 64:cx + 64].transpose(2, 0, 1)

    return write_dataset(tfrecord_dir, len(files), load, lambda i: files[i], None, opts)


def create_lsun(tfrecord_dir: str, lmdb_dir: str, opts: WriteOptions,
                resolution: int = 256) -> Summary:
    """An LSUN LMDB export (key -> encoded image): centre crop, Lanczos resize."""
    import lmdb
    _check_resolution(resolution)
    _require_dir(lmdb_dir, "LSUN LMDB directory")
    try:
        env = lmdb.open(lmdb_dir, readonly=True, lock=False, readahead=False, max_readers=256)
    except lmdb.Error as e:
        raise ToolError(f"cannot open LMDB {lmdb_dir}: {e}") from e
    with env:
        with env.begin(write=False) as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        if not keys:
            raise ToolError(f"LMDB {lmdb_dir} holds no entries")

        def load(i):
            with env.begin(write=False) as txn:
                value = txn.get(keys[i])
            with PIL.Image.open(io.BytesIO(value)) as im:
                im.load()
                arr = pil_to_array(im, 3)
            return crop_resize(arr, resolution).transpose(2, 0, 1)

        return write_dataset(tfrecord_dir, len(keys), load,
                             lambda i: f"{lmdb_dir} key {keys[i].decode(errors='replace')}",
                             None, opts)


def list_image_files(image_dir: str, recursive: bool) -> List[str]:
    _require_dir(image_dir, "image directory")
    if recursive:
        found = [os.path.join(root, f) for root, _, fs in os.walk(image_dir) for f in fs]
    else:
        found = [os.path.join(image_dir, f) for f in os.listdir(image_dir)]
    files = sorted(f for f in found if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(f))
    if not files:
        raise ToolError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in {image_dir}"
                        f"{'' if recursive else ' (not recursive; see --recursive)'}")
    return files


def labels_from_subdirs(image_dir: str, files: List[str]):
    """Class index of each file from its top-level sub-folder (classes sorted)."""
    names = []
    for f in files:
        rel = os.path.relpath(f, image_dir).split(os.sep)
        if len(rel) < 2:
            raise ToolError(f"--labels_from_subdirs: {f} is not inside a class sub-folder "
                            f"of {image_dir}")
        names.append(rel[0])
    classes = sorted(set(names))
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[n] for n in names]), classes


def create_from_images(tfrecord_dir: str, image_dir: str, opts: WriteOptions,
                       resolution: Optional[int] = None, recursive: bool = False,
                       with_labels: bool = False, channels: int = 0) -> Summary:
    _check_resolution(resolution)
    if channels not in (0, 1, 3):
        raise ToolError(f"--channels={channels}: must be 0, 1 or 3")
    files = list_image_files(image_dir, recursive or with_labels)
    labels = None
    if with_labels:
        idx, classes = labels_from_subdirs(image_dir, files)
        labels = np.zeros((len(files), len(classes)), np.float32)
        labels[np.arange(len(files)), idx] = 1.0
        logging.info("%d classes: %s", len(classes), ", ".join(classes))
    return write_dataset(tfrecord_dir, len(files),
                         lambda i: load_image_file(files[i], resolution, channels),
                         lambda i: files[i], labels, opts)


def _tfds_builder(name: str, data_dir: Optional[str], download: bool):
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends
        raise ToolError(f"TFDS dataset {name!r} not found (data_dir={data_dir or 'default'}): "
                        f"{str(e).splitlines()[0]}") from e
    if not builder.is_prepared():
        if not download:
            raise ToolError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; run once with "
                "--download on a machine with internet access, or point --data_dir at a "
                "directory holding the prepared dataset")
        try:
            builder.download_and_prepare()
        except Exception as e:
            raise ToolError(f"TFDS could not download/prepare {name!r}: "
                            f"{str(e).splitlines()[0]}") from e
    return builder


def create_from_tfds(tfrecord_dir: str, name: str, opts: WriteOptions, split: str = "train",
                     image_key: str = "image", label_key: str = "label",
                     data_dir: Optional[str] = None, resolution: Optional[int] = None,
                     channels: int = 0, download: bool = False) -> Summary:
    """Any TFDS image dataset. The split is first converted into a temporary
    uint8 memmap next to the output (so shuffling needs no RAM), then written."""
    import tensorflow_datasets as tfds
    _check_resolution(resolution)
    builder = _tfds_builder(name, data_dir, download)
    features = builder.info.features
    if image_key not in features:
        raise ToolError(f"--image_key={image_key!r}: {name} has features {sorted(features)}")
    use_labels = bool(label_key) and label_key in features
    num_classes = getattr(features[label_key], "num_classes", None) if use_labels else None
    if use_labels and not num_classes:
        raise ToolError(f"--label_key={label_key!r} is not a ClassLabel feature of {name}")
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        n = int(builder.info.splits[split].num_examples)
    except Exception as e:
        raise ToolError(f"--split={split!r}: {str(e).splitlines()[0]}") from e
    if opts.max_images is not None:
        n = min(n, opts.max_images)
        ds = ds.take(n)
    check_output_dir(os.path.abspath(tfrecord_dir), opts.overwrite)
    parent = os.path.dirname(os.path.abspath(tfrecord_dir))
    os.makedirs(parent, exist_ok=True)
    spool_dir = tempfile.mkdtemp(prefix=".tfds-spool-", dir=parent)
    try:
        images, labels = None, np.zeros(n, np.int64)
        count = 0
        for ex in tfds.as_numpy(ds):
            arr = np.asarray(ex[image_key])
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if channels and arr.shape[2] != channels:
                arr = pil_to_array(PIL.Image.fromarray(arr.squeeze(-1) if arr.shape[2] == 1
                                                       else arr), channels)
            elif arr.shape[2] == 4:
                arr = arr[:, :, :3]
            arr = crop_resize(arr, resolution).transpose(2, 0, 1)
            if images is None:
                images = np.lib.format.open_memmap(os.path.join(spool_dir, "images.npy"), "w+",
                                                   np.uint8, (n,) + arr.shape)
            if arr.shape != images.shape[1:]:
                raise ToolError(f"{name}[{split}] example #{count}: shape {arr.shape} (C,H,W) "
                                f"differs from the first's {images.shape[1:]} (use "
                                "--resolution/--channels)")
            images[count] = arr
            if use_labels:
                labels[count] = int(ex[label_key])
            count += 1
        if count == 0:
            raise ToolError(f"{name}[{split}] holds no examples")
        lab = None
        if use_labels:
            lab = np.zeros((count, num_classes), np.float32)
            lab[np.arange(count), labels[:count]] = 1.0
        sub = dataclasses.replace(opts, max_images=None)
        return write_dataset(tfrecord_dir, count, lambda i: images[i],
                             lambda i: f"{name}[{split}] example #{i}", lab, sub)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Inspection.

def _label_text(row: np.ndarray) -> str:
    if row.size == 0:
        return ""
    if np.all((row == 0) | (row == 1)) and row.sum() == 1:
        return str(int(np.argmax(row)))
    return ",".join(f"{v:g}" for v in row[:4]) + ("..." if row.size > 4 else "")


def display(tfrecord_dir: str, output_png: Optional[str] = None, num: int = 64,
            level: Optional[int] = None) -> str:
    """Saves a grid PNG of the first `num` images with their labels; returns its path."""
    from PIL import ImageDraw
    info = _info_or_error(tfrecord_dir)
    images, labels = _read_all(info, level, num)
    n, h, w, c = images.shape
    scale = max(1, 64 // w)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    text_h = 12 if labels.shape[1] else 0
    cell_w, cell_h = w * scale + 2, h * scale + 2 + text_h
    grid = PIL.Image.new("RGB", (cols * cell_w, rows * cell_h), (0, 0, 0))
    draw = ImageDraw.Draw(grid)
    for k in range(n):
        img = images[k]
        im = PIL.Image.fromarray(img[:, :, 0] if c == 1 else img, "L" if c == 1 else "RGB")
        im = im.resize((w * scale, h * scale), PIL.Image.NEAREST).convert("RGB")
        x0, y0 = (k % cols) * cell_w + 1, (k // cols) * cell_h + 1
        grid.paste(im, (x0, y0))
        if text_h:
            draw.text((x0, y0 + h * scale), _label_text(labels[k]), fill=(255, 255, 0))
    output_png = output_png or f"{info.name}-display.png"
    grid.save(output_png)
    return output_png


def _info_or_error(path: str):
    from progan_tf import data
    try:
        return data.read_dataset_info(path)
    except data.DatasetError as e:
        raise ToolError(str(e)) from e


def _read_all(info, level, max_images):
    from progan_tf import data
    images, labels = [], []
    try:
        for x, y in data.iterate_images(info, level, max_images=max_images):
            images.append(x)
            labels.append(y)
    except data.DatasetError as e:
        raise ToolError(str(e)) from e
    return np.concatenate(images), np.concatenate(labels)


def extract(tfrecord_dir: str, output_dir: str, level: Optional[int] = None,
            max_images: Optional[int] = None, overwrite: bool = False) -> int:
    """Writes img%08d.png per image (file order), and labels.npy if there are labels."""
    from progan_tf import data
    info = _info_or_error(tfrecord_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ToolError(f"output directory is not empty: {output_dir} (pass --overwrite)")
    os.makedirs(output_dir, exist_ok=True)
    idx = 0
    all_labels = []
    try:
        for images, labels in data.iterate_images(info, level, max_images=max_images):
            for img in images:
                mode = "L" if img.shape[2] == 1 else "RGB"
                PIL.Image.fromarray(img[:, :, 0] if mode == "L" else img, mode).save(
                    os.path.join(output_dir, f"img{idx:08d}.png"))
                idx += 1
            all_labels.append(labels)
    except data.DatasetError as e:
        raise ToolError(str(e)) from e
    if info.label_size:
        np.save(os.path.join(output_dir, "labels.npy"), np.concatenate(all_labels))
    return idx


def compare(dir_a: str, dir_b: str, ignore_labels: bool = False,
            level: Optional[int] = None) -> dict:
    """Image-by-image (and label-by-label) comparison in file order."""
    from progan_tf import data
    a, b = _info_or_error(dir_a), _info_or_error(dir_b)
    result = {"count_a": a.num_images, "count_b": b.num_images, "images": 0, "identical_images": 0,
              "identical_labels": 0, "different_images": [], "different_labels": []}
    try:
        it_a = data.iterate_images(a, level)
        it_b = data.iterate_images(b, level)
        buf_a = buf_b = None
        idx = 0
        while True:
            if buf_a is None or not len(buf_a[0]):
                buf_a = next(it_a, None)
            if buf_b is None or not len(buf_b[0]):
                buf_b = next(it_b, None)
            if buf_a is None or buf_b is None:
                break
            k = min(len(buf_a[0]), len(buf_b[0]))
            xa, ya = buf_a[0][:k], buf_a[1][:k]
            xb, yb = buf_b[0][:k], buf_b[1][:k]
            for j in range(k):
                if xa[j].shape == xb[j].shape and np.array_equal(xa[j], xb[j]):
                    result["identical_images"] += 1
                else:
                    result["different_images"].append(idx + j)
                if ya[j].shape == yb[j].shape and np.array_equal(ya[j], yb[j]):
                    result["identical_labels"] += 1
                else:
                    result["different_labels"].append(idx + j)
            idx += k
            buf_a = (buf_a[0][k:], buf_a[1][k:])
            buf_b = (buf_b[0][k:], buf_b[1][k:])
        result["images"] = idx
    except data.DatasetError as e:
        raise ToolError(str(e)) from e
    n = max(a.num_images, b.num_images)
    result["equal"] = (a.num_images == b.num_images
                       and result["identical_images"] == n
                       and (ignore_labels or (result["identical_labels"] == n
                                              and a.label_size == b.label_size)))
    return result


def verify(tfrecord_dir: str) -> int:
    """Reads every record of every level (CRCs, shapes); returns the records read.

    make_dataset's tf.data errors do not name the file; this does."""
    info = _info_or_error(tfrecord_dir)
    total = 0
    for res in info.levels:
        total += sum(len(x) for x, _ in _iterate_or_error(info, res))
    return total


def _iterate_or_error(info, res_log2):
    from progan_tf import data
    try:
        yield from data.iterate_images(info, res_log2, batch_size=1024)
    except data.DatasetError as e:
        raise ToolError(str(e)) from e


def info_text(tfrecord_dir: str) -> str:
    info = _info_or_error(tfrecord_dir)
    total = 0
    lines = [f"dataset      {info.path}", f"name         {info.name}",
             f"resolution   {info.resolution}x{info.resolution} (levels r02..r"
             f"{info.resolution_log2:02d})", f"channels     {info.channels}",
             f"images       {info.num_images}",
             f"label size   {info.label_size}" + ("" if info.labels_path else " (no labels)")]
    for res in info.levels:
        b = info.level_bytes(res)
        total += b
        lines.append(f"  r{res:02d} {2**res:5d}x{2**res:<5d} {len(info.files[res])} file(s) "
                     f"{b / 2**20:10.2f} MiB")
    if info.labels_path:
        total += os.path.getsize(info.labels_path)
    lines.append(f"total        {total / 2**20:.2f} MiB ({total} bytes)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Command line.

_WRITE_FLAGS = ["shuffle", "seed", "max_images", "shards", "num_workers", "strict",
                "overwrite", "progress"]


@dataclasses.dataclass
class Command:
    fn: Callable
    args: List[str]  # positional names; a trailing "?" marks an optional one
    flags: List[str]
    doc: str


def _cmd_create_mnist(tfrecord_dir, mnist_dir=None):
    mnist_dir = mnist_dir or "/usr/share/datasets/fashion-mnist"
    return create_mnist(tfrecord_dir, mnist_dir, WriteOptions.from_flags(), FLAGS.split,
                        max(FLAGS.expected_images, 0))


def _cmd_create_from_images(tfrecord_dir, image_dir):
    return create_from_images(tfrecord_dir, image_dir, WriteOptions.from_flags(),
                              FLAGS.resolution, FLAGS.recursive, FLAGS.labels_from_subdirs,
                              FLAGS.channels)


def _cmd_create_cifar10(tfrecord_dir, cifar10_dir):
    return create_cifar10(tfrecord_dir, cifar10_dir, WriteOptions.from_flags(),
                          FLAGS.expected_images)


def _cmd_create_cifar100(tfrecord_dir, cifar100_dir):
    return create_cifar100(tfrecord_dir, cifar100_dir, WriteOptions.from_flags(),
                           FLAGS.expected_images)


def _cmd_create_svhn(tfrecord_dir, svhn_dir):
    return create_svhn(tfrecord_dir, svhn_dir, WriteOptions.from_flags(), FLAGS.split,
                       FLAGS.expected_images)


def _cmd_create_celeba(tfrecord_dir, celeba_dir):
    return create_celeba(tfrecord_dir, celeba_dir, WriteOptions.from_flags(), FLAGS.cx,
                         FLAGS.cy, FLAGS.expected_images)


def _cmd_create_lsun(tfrecord_dir, lmdb_dir):
    # The original writes LSUN in cursor order (and --max_images takes the first ones).
    return create_lsun(tfrecord_dir, lmdb_dir, WriteOptions.from_flags(shuffle_by_default=False),
                       FLAGS.resolution or 256)


def _cmd_create_from_tfds(tfrecord_dir, tfds_name):
    return create_from_tfds(tfrecord_dir, tfds_name, WriteOptions.from_flags(), FLAGS.split,
                            FLAGS.image_key, FLAGS.label_key, FLAGS.data_dir, FLAGS.resolution,
                            FLAGS.channels, FLAGS.download)


def _cmd_display(tfrecord_dir, output_png=None):
    path = display(tfrecord_dir, output_png, FLAGS.num, FLAGS.level)
    print(f"Wrote {path}")
    return 0


def _cmd_extract(tfrecord_dir, output_dir):
    n = extract(tfrecord_dir, output_dir, FLAGS.level, FLAGS.max_images, FLAGS.overwrite)
    print(f"Extracted {n} images to {output_dir}")
    return 0


def _cmd_compare(dir_a, dir_b):
    r = compare(dir_a, dir_b, FLAGS.ignore_labels, FLAGS.level)
    print(f"Images: {r['count_a']} vs {r['count_b']}")
    print(f"Identical images: {r['identical_images']} / {r['images']}")
    if r["different_images"]:
        print(f"  different images at {r['different_images'][:20]}")
    if not FLAGS.ignore_labels:
        print(f"Identical labels: {r['identical_labels']} / {r['images']}")
        if r["different_labels"]:
            print(f"  different labels at {r['different_labels'][:20]}")
    print("EQUAL" if r["equal"] else "DIFFERENT")
    return 0 if r["equal"] else 1


def _cmd_info(tfrecord_dir):
    print(info_text(tfrecord_dir))
    if FLAGS.verify:
        print(f"verified     {verify(tfrecord_dir)} records: all readable")
    return 0


COMMANDS: Dict[str, Command] = {
    "create_mnist": Command(_cmd_create_mnist, ["tfrecord_dir", "mnist_dir?"],
                            _WRITE_FLAGS + ["split", "expected_images"],
                            "MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, "
                            "train-labels-idx1-ubyte.gz; t10k-* for --split=test), padded "
                            "28->32 with zeros, 10-class one-hot labels. mnist_dir defaults to "
                            "/usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)."),
    "create_from_images": Command(_cmd_create_from_images, ["tfrecord_dir", "image_dir"],
                                  _WRITE_FLAGS + ["resolution", "recursive",
                                                  "labels_from_subdirs", "channels"],
                                  "A directory of PNG/JPEG/WebP/BMP images. Grayscale or RGB "
                                  "(RGBA, palette etc. converted to RGB). Without --resolution "
                                  "all must be square, power-of-two and one size; with it they "
                                  "are centre-cropped and resized. Optional one-hot labels from "
                                  "sub-folder names."),
    "create_cifar10": Command(_cmd_create_cifar10, ["tfrecord_dir", "cifar10_dir"],
                              _WRITE_FLAGS + ["expected_images"],
                              "CIFAR-10 python version (cifar-10-batches-py: data_batch_1..5), "
                              "50,000 32x32 RGB images, 10-class one-hot labels."),
    "create_cifar100": Command(_cmd_create_cifar100, ["tfrecord_dir", "cifar100_dir"],
                               _WRITE_FLAGS + ["expected_images"],
                               "CIFAR-100 python version (cifar-100-python/train), 50,000 "
                               "images, one-hot fine labels (100 classes)."),
    "create_svhn": Command(_cmd_create_svhn, ["tfrecord_dir", "svhn_dir"],
                           _WRITE_FLAGS + ["split", "expected_images"],
                           "SVHN cropped digits (<split>_32x32.mat, or the original's train_1..3.pkl; "
                           "train = 73,257 images), one-hot labels with the .mat's label 10 mapped to digit 0."),
    "create_celeba": Command(_cmd_create_celeba, ["tfrecord_dir", "celeba_dir"],
                             _WRITE_FLAGS + ["cx", "cy", "expected_images"],
                             "Aligned CelebA (img_align_celeba_png/*.png or "
                             "img_align_celeba/*.jpg, 202,599 images of 178x218): the original's "
                             "128x128 crop centred at (89, 121). No labels."),
    "create_lsun": Command(_cmd_create_lsun, ["tfrecord_dir", "lmdb_dir"],
                           _WRITE_FLAGS + ["resolution"],
                           "An LSUN category LMDB export (key -> encoded image): centre crop "
                           "to a square, Lanczos resize to --resolution (default 256). No "
                           "labels."),
    "create_from_tfds": Command(_cmd_create_from_tfds, ["tfrecord_dir", "tfds_name"],
                                _WRITE_FLAGS + ["split", "image_key", "label_key", "data_dir",
                                                "download", "resolution", "channels"],
                                "Any tensorflow-datasets image dataset (e.g. mnist, "
                                "cifar10, celeb_a), read from a prepared --data_dir when "
                                "offline. ClassLabel --label_key gives one-hot labels."),
    "display": Command(_cmd_display, ["tfrecord_dir", "output_png?"], ["num", "level"],
                       "Save a grid PNG of the first --num images with their labels "
                       "(default output: ./<name>-display.png)."),
    "extract": Command(_cmd_extract, ["tfrecord_dir", "output_dir"],
                       ["level", "max_images", "overwrite"],
                       "Write every image as output_dir/img%08d.png in file order (plus "
                       "labels.npy when the dataset has labels)."),
    "compare": Command(_cmd_compare, ["dataset_dir_a", "dataset_dir_b"],
                       ["ignore_labels", "level"],
                       "Compare two datasets image by image and label by label; exit status "
                       "1 if they differ."),
    "info": Command(_cmd_info, ["tfrecord_dir"], ["verify"],
                    "Print resolutions, image count, channels, label size and bytes per level. "
                    "The directory is always checked (levels, shards, counts, labels, truncated "
                    "records); --verify also reads every record."),
}


_SUMMARIES = {
    "create_mnist": "MNIST/Fashion-MNIST IDX files -> 32x32x1 pyramid with labels",
    "create_from_images": "a directory of image files (optional labels from sub-folders)",
    "create_cifar10": "CIFAR-10 python pickles -> 32x32x3 with labels",
    "create_cifar100": "CIFAR-100 python pickle -> 32x32x3 with fine labels",
    "create_svhn": "SVHN cropped digits (.mat or the original's .pkl) -> 32x32x3 with labels",
    "create_celeba": "aligned CelebA -> 128x128x3 (the original's crop)",
    "create_lsun": "an LSUN LMDB export -> 256x256x3 (centre crop, resize)",
    "create_from_tfds": "any tensorflow-datasets image dataset (local --data_dir offline)",
    "display": "grid PNG of the first images with their labels",
    "extract": "dataset -> PNG files (and labels.npy)",
    "compare": "are two datasets equal, image by image and label by label",
    "info": "resolutions, counts, channels, label size, bytes",
}


def _usage_line(name: str) -> str:
    args = " ".join(f"[<{a[:-1]}>]" if a.endswith("?") else f"<{a}>"
                    for a in COMMANDS[name].args)
    return f"progan-dataset {name} {args} [--flags]"


def overview_help() -> str:
    lines = ["progan-dataset: create and inspect ProGAN multi-resolution TFRecord datasets",
             "(the original NVIDIA dataset_tool.py format; see datasets/README.md).", "",
             "Usage: progan-dataset <command> <args> [--flags]", "", "Commands:"]
    for name in COMMANDS:
        lines.append(f"  {name:20s}{_SUMMARIES[name]}")
    lines += ["", "progan-dataset <command> --help explains a command and its flags;",
              "progan-dataset --helpfull lists every flag (absl's own: --helpshort)."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    cmd = COMMANDS[name]
    lines = [f"Usage: {_usage_line(name)}", "", textwrap.fill(cmd.doc, 88), ""]
    if cmd.flags:
        lines.append("Flags:")
        lines += command_help_flags(cmd.flags)
    return "\n".join(lines)


def command_help_flags(names: Sequence[str]) -> List[str]:
    lines = []
    for f in names:
        flag = FLAGS[f]
        default = flag.default_as_str if flag.default is not None else "none"
        lines.append(f"  --{f} (default {default})")
        lines.append(textwrap.fill(flag.help, 88, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6))
    return lines


def main(argv: Sequence[str]) -> int:
    """Dispatches `progan-dataset <command> <args>` (flags already parsed)."""
    if len(argv) < 2:
        print(overview_help())
        return 2
    name, args = argv[1], list(argv[2:])
    if name not in COMMANDS:
        print(f"progan-dataset: error: unknown command {name!r}; one of: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    cmd = COMMANDS[name]
    required = [a for a in cmd.args if not a.endswith("?")]
    if not len(required) <= len(args) <= len(cmd.args):
        print(f"progan-dataset: error: {name} takes {len(required)}"
              f"{'' if len(required) == len(cmd.args) else '-' + str(len(cmd.args))} "
              f"arguments, got {len(args)}: {args}\nUsage: {_usage_line(name)}", file=sys.stderr)
        return 2
    try:
        result = cmd.fn(*args)
    except ToolError as e:
        print(f"progan-dataset {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"progan-dataset {name}: interrupted; nothing was written", file=sys.stderr)
        return 130
    if isinstance(result, Summary):
        print(result.report())
        return 0
    return int(result or 0)



def cli(argv) -> int:
    """Parses ``argv`` from the flag defaults and runs ``main`` (for tests and embedding)."""
    return toolflags.run_cli("progan-dataset", FLAGS, main, argv)


def _help_requested(argv: Sequence[str]) -> Optional[str]:
    """Returns the help text to print for -h/--help/help requests, or None."""
    rest = list(argv[1:])
    if "--helpfull" in rest:
        return overview_help() + "\n\nAll flags:\n" + "\n".join(
            command_help_flags(sorted(FLAGS)))
    if not rest or rest[0] in ("-h", "--help", "--helpshort", "help", "-help"):
        if len(rest) >= 2 and rest[0] == "help" and rest[1] in COMMANDS:
            return command_help(rest[1])
        return overview_help()
    if rest[0] in COMMANDS and any(a in ("-h", "--help", "-help", "--helpshort") for a in rest):
        return command_help(rest[0])
    return None


def run():
    """Console-script entry point (``progan-dataset``)."""
    toolflags.run_app("progan-dataset", FLAGS, main, _help_requested)


if __name__ == "__main__":
    run()

"""Reader for ProGAN multi-resolution TFRecord datasets (SPEC.md section 5).

A dataset directory holds one TFRecord file per resolution level,
``<name>-rNN.tfrecords`` (NN = log2 of the resolution, 02 .. max), optionally
sharded as ``<name>-rNN-SSSSS-of-TTTTT.tfrecords``, plus ``<name>-rxx.labels``
(a NumPy ``.npy`` array, float32 [N, L]) when there are labels. Each record is a
``tf.train.Example`` with ``shape`` = [C, H, W] (int64) and ``data`` = the raw
uint8 image in C, H, W order. Records of every level and the label rows share
one order, so labels are joined to records by their position in file order.

Public API: :class:`DatasetInfo`, :func:`read_dataset_info`, :func:`load_labels`,
:func:`make_dataset`, :func:`iterate_images`, :func:`to_float`,
:func:`mirror_augment`, :func:`fade_lod`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import struct
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "read_dataset_info",
    "load_labels",
    "make_dataset",
    "iterate_images",
    "to_float",
    "mirror_augment",
    "fade_lod",
    "parse_tfrecord_name",
]

# <name>-rNN.tfrecords (original) or <name>-rNN-SSSSS-of-TTTTT.tfrecords (sharded).
_TFRECORD_RE = re.compile(
    r"^(?P<name>.+)-r(?P<res>\d{2})(?:-(?P<shard>\d{5})-of-(?P<total>\d{5}))?\.tfrecords$")
_LABELS_SUFFIX = "-rxx.labels"


class DatasetError(ValueError):
    """A dataset directory or one of its files is missing, inconsistent or corrupt."""


@dataclasses.dataclass
class DatasetInfo:
    """What a dataset directory holds; produced by :func:`read_dataset_info`."""

    path: str
    name: str
    resolution: int
    resolution_log2: int
    channels: int
    num_images: int
    label_size: int
    files: Dict[int, List[str]]
    labels_path: Optional[str]
    # Records per file (same keys/order as ``files``); lets readers compute the
    # global index of each record without reading the files again.
    file_counts: Dict[int, List[int]] = dataclasses.field(default_factory=dict)

    @property
    def levels(self) -> List[int]:
        """Available res_log2 values, ascending (2 .. resolution_log2)."""
        return sorted(self.files)

    def shape(self, res_log2: Optional[int] = None) -> Tuple[int, int, int]:
        """HWC shape of one image at ``res_log2`` (default: top level)."""
        r = 2 ** (self.resolution_log2 if res_log2 is None else res_log2)
        return (r, r, self.channels)

    def level_bytes(self, res_log2: int) -> int:
        return sum(os.path.getsize(f) for f in self.files[res_log2])


def parse_tfrecord_name(filename: str):
    """Returns (name, res_log2, shard, num_shards) for a dataset file name, or None.

    Unsharded original files give shard=0, num_shards=1.
    """
    m = _TFRECORD_RE.match(os.path.basename(filename))
    if not m:
        return None
    shard = int(m.group("shard")) if m.group("shard") else 0
    total = int(m.group("total")) if m.group("total") else 1
    return m.group("name"), int(m.group("res")), shard, total


def _count_records(path: str) -> int:
    """Counts TFRecord records by walking the length headers (no payload read).

    Raises DatasetError naming the file when a record is truncated.
    """
    size = os.path.getsize(path)
    count = 0
    pos = 0
    with open(path, "rb") as f:
        while pos < size:
            header = f.read(12)
            if len(header) < 12:
                raise DatasetError(f"{path}: truncated record header at byte {pos}")
            (length,) = struct.unpack("<Q", header[:8])
            end = pos + 12 + length + 4
            if end > size:
                raise DatasetError(
                    f"{path}: truncated or corrupt record {count} at byte {pos} "
                    f"(claims {length} bytes, file has {size - pos - 16})")
            f.seek(end)
            pos = end
            count += 1
    return count


def _first_record_shape(path: str) -> Optional[List[int]]:
    """Reads the `shape` feature of the first record of a file (None if empty)."""
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12:
            return None
        (length,) = struct.unpack("<Q", header[:8])
        payload = f.read(length)
    try:
        ex = tf.train.Example.FromString(payload)
        shape = list(ex.features.feature["shape"].int64_list.value)
        data = ex.features.feature["data"].bytes_list.value
    except Exception as e:  # protobuf DecodeError and friends
        raise DatasetError(f"{path}: first record is not a valid tf.train.Example ({e})") from e
    if len(shape) != 3 or len(data) != 1 or len(data[0]) != int(np.prod(shape)):
        raise DatasetError(
            f"{path}: first record does not hold a [C, H, W] 'shape' and matching 'data' "
            f"(shape={shape})")
    return shape


def _group_files(dataset_dir: str, names: List[str]) -> Tuple[str, Dict[int, List[str]]]:
    """Groups *.tfrecords file names by level and checks shard completeness."""
    by_level: Dict[int, Dict[int, Tuple[int, str]]] = {}
    prefixes = set()
    for fn in names:
        parsed = parse_tfrecord_name(fn)
        if parsed is None:
            raise DatasetError(
                f"{os.path.join(dataset_dir, fn)}: unexpected file name; expected "
                "<name>-rNN.tfrecords or <name>-rNN-SSSSS-of-TTTTT.tfrecords")
        prefix, res, shard, total = parsed
        prefixes.add(prefix)
        level = by_level.setdefault(res, {})
        if shard in level:
            raise DatasetError(f"{dataset_dir}: level r{res:02d} has two files for shard {shard}")
        level[shard] = (total, os.path.join(dataset_dir, fn))
    if len(prefixes) != 1:
        raise DatasetError(f"{dataset_dir}: files of more than one dataset: {sorted(prefixes)}")
    files: Dict[int, List[str]] = {}
    for res, shards in sorted(by_level.items()):
        totals = {t for t, _ in shards.values()}
        if len(totals) != 1 or sorted(shards) != list(range(totals.pop())):
            raise DatasetError(
                f"{dataset_dir}: level r{res:02d} has an incomplete or inconsistent set of "
                f"shards: {sorted(os.path.basename(p) for _, p in shards.values())}")
        files[res] = [shards[s][1] for s in sorted(shards)]
    return prefixes.pop(), files


def read_dataset_info(dataset_dir: str) -> DatasetInfo:
    """Scans and validates a dataset directory.

    Checks that levels 2..max are all present, every shard set is complete, the
    record counts of all levels (and the label rows) agree, shapes match the file
    names, and no record is truncated. Errors name the offending file or directory.
    """
    if isinstance(dataset_dir, DatasetInfo):
        return dataset_dir
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise DatasetError(f"dataset directory not found: {dataset_dir}")
    names = sorted(fn for fn in os.listdir(dataset_dir) if fn.endswith(".tfrecords"))
    if not names:
        raise DatasetError(f"{dataset_dir}: no *.tfrecords files (not a dataset directory)")
    name, files = _group_files(dataset_dir, names)
    top = max(files)
    missing = [r for r in range(2, top + 1) if r not in files]
    if missing or min(files) < 2:
        raise DatasetError(
            f"{dataset_dir}: missing resolution levels "
            f"{', '.join(f'r{r:02d}' for r in missing) or '(levels below r02 present)'}; "
            f"expected r02..r{top:02d}")

    file_counts: Dict[int, List[int]] = {}
    channels = None
    num_images = None
    for res in range(2, top + 1):
        counts = [_count_records(p) for p in files[res]]
        file_counts[res] = counts
        n = sum(counts)
        if num_images is None:
            num_images = n
        elif n != num_images:
            raise DatasetError(
                f"{files[res][0]}: level r{res:02d} holds {n} records but level r02 holds "
                f"{num_images}")
        for p, c in zip(files[res], counts):
            if c == 0:
                continue
            shape = _first_record_shape(p)
            if shape[1] != 2 ** res or shape[2] != 2 ** res or shape[0] not in (1, 3):
                raise DatasetError(
                    f"{p}: records have shape {shape} (C, H, W); expected [1 or 3, {2**res}, "
                    f"{2**res}] for level r{res:02d}")
            if channels is None:
                channels = shape[0]
            elif shape[0] != channels:
                raise DatasetError(f"{p}: {shape[0]} channels, other files have {channels}")
            break  # one record per level is enough; shards were written together
    if not num_images:
        raise DatasetError(f"{dataset_dir}: the dataset holds no images")

    labels_path = os.path.join(dataset_dir, name + _LABELS_SUFFIX)
    label_size = 0
    if os.path.isfile(labels_path):
        labels = _read_labels_file(labels_path)
        if labels.shape[0] != num_images:
            raise DatasetError(
                f"{labels_path}: {labels.shape[0]} label rows but {num_images} images")
        label_size = int(labels.shape[1])
    else:
        labels_path = None
    return DatasetInfo(
        path=dataset_dir, name=name, resolution=2 ** top, resolution_log2=top,
        channels=int(channels), num_images=int(num_images), label_size=label_size,
        files=files, labels_path=labels_path, file_counts=file_counts)


def _read_labels_file(path: str) -> np.ndarray:
    try:
        labels = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable NumPy labels file ({e})") from e
    if labels.ndim == 1:  # tolerate a vector of scalar labels
        labels = labels[:, None]
    if labels.ndim != 2:
        raise DatasetError(f"{path}: labels must be 2-D [N, L], got shape {labels.shape}")
    return labels.astype(np.float32)


def load_labels(info: Union[str, DatasetInfo]) -> np.ndarray:
    """Returns the labels as float32 [N, L]; shape [N, 0] when there are none."""
    info = read_dataset_info(info)
    if info.labels_path is None:
        return np.zeros([info.num_images, 0], np.float32)
    return _read_labels_file(info.labels_path)


def _resolve_level(info: DatasetInfo, res_log2: Optional[int]) -> int:
    res_log2 = info.resolution_log2 if res_log2 is None else int(res_log2)
    if res_log2 not in info.files:
        raise DatasetError(
            f"{info.path}: no level r{res_log2:02d}; available r02..r{info.resolution_log2:02d}")
    return res_log2


def _parse_batch(serialized, shape_chw):
    """Parses a vector of serialized Examples to a uint8 NHWC batch."""
    feats = tf.io.parse_example(serialized, {
        "shape": tf.io.FixedLenFeature([3], tf.int64),
        "data": tf.io.FixedLenFeature([], tf.string)})
    data = tf.io.decode_raw(feats["data"], tf.uint8)
    c, h, w = shape_chw
    data = tf.reshape(data, [-1, c, h, w])
    return tf.transpose(data, [0, 2, 3, 1])


def make_dataset(dataset_dir_or_info, res_log2: int, batch_size: int, *, shuffle_mb: int = 4096,
                 repeat: bool = True, prefetch=tf.data.AUTOTUNE, seed: Optional[int] = None,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 drop_remainder: bool = True) -> tf.data.Dataset:
    """A tf.data pipeline of ``(images uint8 [B,H,W,C], labels float32 [B,L])`` at one level.

    Records are read in file order and each gets its label row by its global
    index, then (optionally) shuffled with a buffer of ``shuffle_mb`` megabytes of
    images at this resolution (the original's sizing), repeated, batched and
    prefetched. With ``input_context`` the input is sharded per input pipeline
    (by file when there are at least as many files as pipelines, else by record)
    and batches are per replica.

    The directory is validated first (see read_dataset_info); a CRC error inside
    a record only shows up while reading, as TF's DataLossError, which does not
    name the file: ``progan-dataset info --verify`` finds it.
    """
    info = read_dataset_info(dataset_dir_or_info)
    res_log2 = _resolve_level(info, res_log2)
    files = info.files[res_log2]
    counts = info.file_counts.get(res_log2) or [_count_records(p) for p in files]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    labels = tf.constant(load_labels(info))
    r = 2 ** res_log2
    shape_chw = (info.channels, r, r)

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
    else:
        num_pipelines, pipeline_id = 1, 0
    shard_by_file = num_pipelines > 1 and len(files) >= num_pipelines

    file_ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files), tf.constant(offsets), tf.constant(np.asarray(counts, np.int64))))
    if shard_by_file:
        file_ds = file_ds.shard(num_pipelines, pipeline_id)

    def records_of(path, offset, count):
        idx = tf.data.Dataset.range(offset, offset + count)
        return tf.data.Dataset.zip((tf.data.TFRecordDataset(path, buffer_size=1 << 20), idx))

    shuffle = shuffle_mb > 0
    if shuffle and len(files) > 1:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = file_ds.interleave(records_of, cycle_length=min(len(files), 8),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    else:
        ds = file_ds.flat_map(records_of)
    if num_pipelines > 1 and not shard_by_file:
        ds = ds.shard(num_pipelines, pipeline_id)
    if shuffle:
        bytes_per_item = int(np.prod(shape_chw))
        buffer = ((shuffle_mb << 20) - 1) // bytes_per_item + 1
        ds = ds.shuffle(min(buffer, info.num_images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def parse(serialized, idx):
        return _parse_batch(serialized, shape_chw), tf.gather(labels, idx)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


def _iterate_file_batches(info: DatasetInfo, res_log2: int, batch_size: int, limit: int):
    """Yields uint8 NHWC batches file by file (a batch never spans two files)."""
    r = 2 ** res_log2
    shape_chw = (info.channels, r, r)
    done = 0
    for path in info.files[res_log2]:
        if done >= limit:
            return
        ds = tf.data.TFRecordDataset(path).take(limit - done).batch(batch_size)
        try:
            for serialized in ds:
                try:
                    images = _parse_batch(serialized, shape_chw).numpy()
                except tf.errors.InvalidArgumentError as e:
                    raise DatasetError(
                        f"{path}: corrupt record near index {done} ({e.message.splitlines()[0]})"
                    ) from e
                done += images.shape[0]
                yield images
        except tf.errors.DataLossError as e:
            raise DatasetError(f"{path}: corrupt record ({e.message.splitlines()[0]})") from e


def iterate_images(dataset_dir_or_info, res_log2: Optional[int] = None, batch_size: int = 256,
                   max_images: Optional[int] = None
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yields ``(uint8 NHWC, float32 labels)`` NumPy batches in file order, once.

    For display/extract/compare/metrics. Every batch but the last has exactly
    ``batch_size`` images, also for sharded datasets. A corrupt record raises
    DatasetError naming its file. ``res_log2=None`` reads the top level.
    """
    info = read_dataset_info(dataset_dir_or_info)
    res_log2 = _resolve_level(info, res_log2)
    labels = load_labels(info)
    limit = info.num_images if max_images is None else min(int(max_images), info.num_images)
    pending: List[np.ndarray] = []
    pending_n = 0
    done = 0
    for images in _iterate_file_batches(info, res_log2, batch_size, limit):
        pending.append(images)
        pending_n += images.shape[0]
        while pending_n >= batch_size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            out, rest = joined[:batch_size], joined[batch_size:]
            pending, pending_n = ([rest] if len(rest) else []), len(rest)
            yield out, labels[done:done + batch_size]
            done += batch_size
    if pending_n:
        out = np.concatenate(pending)
        yield out, labels[done:done + pending_n]


def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1], linearly (x / 127.5 - 1)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def mirror_augment(images, seed=None):
    """Flips each NHWC image horizontally with probability 1/2.

    ``seed`` (an int or a shape-[2] int tensor) makes the flips deterministic via
    stateless RNG; without it a fresh random draw is made on every call.
    """
    images = tf.convert_to_tensor(images)
    shape = [tf.shape(images)[0], 1, 1, 1]
    if seed is None:
        u = tf.random.uniform(shape)
    else:
        s = tf.convert_to_tensor(seed, tf.int64)
        if s.shape.rank == 0:
            s = tf.stack([s, tf.constant(0, tf.int64)])
        u = tf.random.stateless_uniform(shape, seed=s)
    return tf.where(u < 0.5, images, tf.reverse(images, axis=[2]))


def fade_lod(images, frac):
    """Cross-fades reals towards the previous level: lerp(x, up2x(avgpool2x2(x)), frac).

    SPEC.md section 2: ``frac`` = frac(lod) in [0, 1] (may be a tensor). uint8
    inputs are cast to float32 (values unchanged); H and W must be even.
    """
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    s = tf.shape(x)
    y = tf.reshape(x, [-1, s[1] // 2, 2, s[2] // 2, 2, s[3]])
    y = tf.reduce_mean(y, axis=[2, 4], keepdims=True)
    y = tf.tile(y, [1, 1, 2, 1, 2, 1])
    y = tf.reshape(y, s)
    frac = tf.cast(frac, x.dtype)
    return x + (y - x) * frac

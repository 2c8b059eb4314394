"""Reading ProGAN multi-resolution TFRecord datasets (the format: see ``fileformat``).

Public API: :class:`DatasetInfo`, :func:`read_dataset_info`, :func:`load_labels`,
:func:`make_dataset`, :func:`iterate_images`, :func:`stage_input` (the trainer's input of one
stage), :func:`describe_read_error` (the file and record behind a tf.data error), and the
training-side transforms :func:`to_float`, :func:`mirror`, :func:`fade_lod`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging

from progan_tf.datasets import fileformat
from progan_tf.datasets.errors import DatasetError

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "read_dataset_info",
    "load_labels",
    "make_dataset",
    "iterate_images",
    "stage_input",
    "describe_read_error",
    "to_float",
    "mirror",
    "fade_lod",
]


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


# --- scanning and validating a directory -------------------------------------------------

def _first_record_shape(path: str) -> Optional[List[int]]:
    """Reads the `shape` feature of the first record of a file (None if empty)."""
    payload = fileformat.first_record_payload(path)
    if payload is None:
        return None
    try:
        ex = tf.train.Example.FromString(payload)
        shape = list(ex.features.feature[fileformat.SHAPE_KEY].int64_list.value)
        data = ex.features.feature[fileformat.DATA_KEY].bytes_list.value
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
        parsed = fileformat.parse_tfrecord_name(fn)
        if parsed is None:
            raise DatasetError(
                f"{os.path.join(dataset_dir, fn)}: unexpected file name; expected "
                "<name>-rNN.tfrecords or <name>-rNN-SSSSS-of-TTTTT.tfrecords")
        prefix, res_log2, shard, total = parsed
        prefixes.add(prefix)
        level = by_level.setdefault(res_log2, {})
        if shard in level:
            raise DatasetError(
                f"{dataset_dir}: level r{res_log2:02d} has two files for shard {shard}")
        level[shard] = (total, os.path.join(dataset_dir, fn))
    if len(prefixes) != 1:
        raise DatasetError(f"{dataset_dir}: files of more than one dataset: {sorted(prefixes)}")
    files: Dict[int, List[str]] = {}
    for res_log2, shards in sorted(by_level.items()):
        totals = {t for t, _ in shards.values()}
        if len(totals) != 1 or sorted(shards) != list(range(totals.pop())):
            raise DatasetError(
                f"{dataset_dir}: level r{res_log2:02d} has an incomplete or inconsistent set of "
                f"shards: {sorted(os.path.basename(p) for _, p in shards.values())}")
        files[res_log2] = [shards[s][1] for s in sorted(shards)]
    return prefixes.pop(), files


def _check_levels(dataset_dir: str, files: Dict[int, List[str]]) -> int:
    """Checks that levels r02..top are all present; returns top."""
    top = max(files)
    missing = [r for r in range(2, top + 1) if r not in files]
    if missing or min(files) < 2:
        raise DatasetError(
            f"{dataset_dir}: missing resolution levels "
            f"{', '.join(f'r{r:02d}' for r in missing) or '(levels below r02 present)'}; "
            f"expected r02..r{top:02d}")
    return top


def _level_channels(res_log2: int, paths: List[str], counts: List[int]):
    """(file, channel count) of a level's first non-empty file; None if the level is empty."""
    for p, c in zip(paths, counts):
        if c == 0:
            continue
        shape = _first_record_shape(p)
        r = 2 ** res_log2
        if shape[1] != r or shape[2] != r or shape[0] not in (1, 3):
            raise DatasetError(
                f"{p}: records have shape {shape} (C, H, W); expected [1 or 3, {r}, "
                f"{r}] for level r{res_log2:02d}")
        return p, shape[0]  # one record per level is enough; shards were written together
    return None


def _count_and_check_levels(files: Dict[int, List[str]]):
    """Record counts per file, the image count and the channel count; all levels must agree."""
    file_counts: Dict[int, List[int]] = {}
    channels = None
    num_images = None
    for res_log2 in sorted(files):
        counts = [fileformat.count_records(p) for p in files[res_log2]]
        file_counts[res_log2] = counts
        n = sum(counts)
        if num_images is None:
            num_images = n
        elif n != num_images:
            raise DatasetError(
                f"{files[res_log2][0]}: level r{res_log2:02d} holds {n} records but level r02 "
                f"holds {num_images}")
        found = _level_channels(res_log2, files[res_log2], counts)
        if found is None:
            continue
        path, level_channels = found
        if channels is None:
            channels = level_channels
        elif level_channels != channels:
            raise DatasetError(f"{path}: {level_channels} channels, other files have {channels}")
    return file_counts, num_images, channels


def read_dataset_info(dataset_dir: Union[str, DatasetInfo]) -> DatasetInfo:
    """Scans and validates a dataset directory (a DatasetInfo is returned as is).

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
    top = _check_levels(dataset_dir, files)
    file_counts, num_images, channels = _count_and_check_levels(files)
    if not num_images:
        raise DatasetError(f"{dataset_dir}: the dataset holds no images")

    labels_path = os.path.join(dataset_dir, fileformat.labels_file_name(name))
    label_size = 0
    if os.path.isfile(labels_path):
        labels = fileformat.read_labels(labels_path)
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


def load_labels(info: Union[str, DatasetInfo]) -> np.ndarray:
    """Returns the labels as float32 [N, L]; shape [N, 0] when there are none."""
    info = read_dataset_info(info)
    if info.labels_path is None:
        return np.zeros([info.num_images, 0], np.float32)
    return fileformat.read_labels(info.labels_path)


def _resolve_level(info: DatasetInfo, res_log2: Optional[int]) -> int:
    res_log2 = info.resolution_log2 if res_log2 is None else int(res_log2)
    if res_log2 not in info.files:
        raise DatasetError(
            f"{info.path}: no level r{res_log2:02d}; available r02..r{info.resolution_log2:02d}")
    return res_log2


# The marker of the pipeline's record check (see _parse_batch), found again in the error it raises.
_BAD_RECORD = "progan_tf: bad dataset record"


def _check_records(feats, shape_chw, index):
    """An assertion that every record's ``data`` length and ``shape`` fit the level; when one does
    not, its error names the record's global ``index``, data length and shape (read back by
    describe_read_error)."""
    lengths = tf.strings.length(feats[fileformat.DATA_KEY])
    shapes = feats[fileformat.SHAPE_KEY]
    ok = tf.logical_and(tf.equal(lengths, int(np.prod(shape_chw))),
                        tf.reduce_all(tf.equal(shapes, tf.constant(shape_chw, tf.int64)), axis=1))
    first = tf.argmin(tf.cast(ok, tf.int32))
    return tf.debugging.Assert(tf.reduce_all(ok), [_BAD_RECORD, tf.gather(index, first), tf.gather(lengths, first),
                                                   tf.gather(shapes, first)], summarize=3)


def _parse_batch(serialized, shape_chw, index=None):
    """Parses a vector of serialized Examples to a uint8 NHWC batch.

    With ``index`` (the records' global indices), a record whose data length or shape does not
    fit the level fails with an error naming it, instead of DecodeRaw's, which names none.
    """
    feats = tf.io.parse_example(serialized, {
        fileformat.SHAPE_KEY: tf.io.FixedLenFeature([3], tf.int64),
        fileformat.DATA_KEY: tf.io.FixedLenFeature([], tf.string)})
    checks = [] if index is None else [_check_records(feats, shape_chw, index)]
    with tf.control_dependencies(checks):
        data = tf.io.decode_raw(feats[fileformat.DATA_KEY], tf.uint8)
    c, h, w = shape_chw
    if c == 1:                       # CHW and HWC are the same bytes
        return tf.reshape(data, [-1, h, w, 1])
    # NCHW -> NHWC by stacking the channel planes: the same result as a transpose, without
    # oneDNN's uint8 transpose, which prints an error-looking log line in every run.
    return tf.stack(tf.unstack(tf.reshape(data, [-1, c, h, w]), num=c, axis=1), axis=-1)


# --- tf.data input -----------------------------------------------------------------------

def _records_with_index(files: List[str], counts: List[int], num_pipelines: int,
                        pipeline_id: int, shuffle: bool, seed: Optional[int]) -> tf.data.Dataset:
    """(serialized record, global index) pairs of one input pipeline's share of a level.

    Sharded by file when there are at least as many files as pipelines, else by record; with
    ``shuffle`` the files are read in a shuffled order, interleaved.
    """
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    shard_by_file = num_pipelines > 1 and len(files) >= num_pipelines
    file_ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files), tf.constant(offsets), tf.constant(np.asarray(counts, np.int64))))
    if shard_by_file:
        file_ds = file_ds.shard(num_pipelines, pipeline_id)

    def records_of(path, offset, count):
        idx = tf.data.Dataset.range(offset, offset + count)
        return tf.data.Dataset.zip((tf.data.TFRecordDataset(path, buffer_size=1 << 20), idx))

    if shuffle and len(files) > 1:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = file_ds.interleave(records_of, cycle_length=min(len(files), 8),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    else:
        ds = file_ds.flat_map(records_of)
    if num_pipelines > 1 and not shard_by_file:
        ds = ds.shard(num_pipelines, pipeline_id)
    return ds


def _shuffle_buffer(shuffle_mb: int, shape_chw, num_images: int) -> int:
    """The original's sizing: ``shuffle_mb`` megabytes of images at this level, at most all."""
    bytes_per_item = int(np.prod(shape_chw))
    return min(((shuffle_mb << 20) - 1) // bytes_per_item + 1, num_images)


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

    The directory is validated first (see read_dataset_info), which reads only the
    first record of each level; a damaged record further on shows up while reading, as
    an InvalidArgumentError naming its index (a data length or shape that does not fit
    the level) or TF's DataLossError (a CRC error, naming a byte offset).
    :func:`describe_read_error` turns either into the file and record.
    """
    info = read_dataset_info(dataset_dir_or_info)
    res_log2 = _resolve_level(info, res_log2)
    files = info.files[res_log2]
    counts = info.file_counts.get(res_log2) or [fileformat.count_records(p) for p in files]
    labels = tf.constant(load_labels(info))
    resolution = 2 ** res_log2
    shape_chw = (info.channels, resolution, resolution)

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_pipelines = input_context.num_input_pipelines
        pipeline_id = input_context.input_pipeline_id
    else:
        num_pipelines, pipeline_id = 1, 0
    shuffle = shuffle_mb > 0
    ds = _records_with_index(files, counts, num_pipelines, pipeline_id, shuffle, seed)
    if shuffle:
        ds = ds.shuffle(_shuffle_buffer(shuffle_mb, shape_chw, info.num_images), seed=seed,
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def parse(serialized, idx):
        return _parse_batch(serialized, shape_chw, idx), tf.gather(labels, idx)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


# --- the trainer's input of one stage ----------------------------------------------------

def stage_input(info: DatasetInfo, res_log2: int, minibatch: int, strategy: tf.distribute.Strategy,
                *, seed: int, shuffle_mb: int, skip_images: int = 0,
                max_resume_skip: Optional[int] = None, num_workers: int = 1,
                log: Callable[[str], None] = logging.info):
    """The global-batch input stream of one training stage, as a distributed iterator.

    Each stage reads its own stream seeded ``seed + res_log2``, so a run resumed
    ``skip_images`` into a stage skips what the stage already consumed and sees exactly
    the images an uninterrupted run sees. Skipping reads the skipped records; beyond
    ``max_resume_skip`` images (None: no limit) a freshly seeded stream is used instead
    (the order then differs) and ``log`` says so.

    Batches are arranged so that replica k of ``strategy`` gets ``x[k::R]`` of the global
    batch; with ``num_workers`` > 1 each worker reads its own shard (see ``_worker_input``).
    """
    stage_seed = seed + res_log2
    if max_resume_skip is not None and skip_images > max_resume_skip:
        log(f"Resuming mid-stage after {skip_images} images: reshuffling instead of skipping "
            f"(dataset.max_resume_skip={max_resume_skip})")
        stage_seed, skip_images = stage_seed + 1000 * (skip_images // minibatch), 0
    if num_workers > 1:
        return _worker_input(info, res_log2, minibatch, strategy, stage_seed, shuffle_mb,
                             skip_images)
    ds = make_dataset(info, res_log2, minibatch, shuffle_mb=shuffle_mb, seed=stage_seed,
                      prefetch=None)
    if skip_images:
        ds = ds.skip(skip_images // minibatch)
    num_replicas = strategy.num_replicas_in_sync
    if num_replicas > 1:
        order = tf.constant(np.concatenate([np.arange(k, minibatch, num_replicas)
                                            for k in range(num_replicas)]), tf.int32)
        ds = ds.map(lambda x, y: (tf.gather(x, order), tf.gather(y, order)))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return iter(strategy.experimental_distribute_dataset(ds))


def _worker_input(info: DatasetInfo, res_log2: int, minibatch: int,
                  strategy: tf.distribute.Strategy, seed: int, shuffle_mb: int, skip_images: int):
    """Several workers: each reads its own shard (by file, or every W-th record) in per-replica
    batches.

    Without shuffling, worker k reads records k, k+W, ... which is exactly the strided
    share ``x[k::R]`` one device would give replica k (one replica per worker).
    """
    steps_done = skip_images // minibatch

    def dataset_fn(ctx: tf.distribute.InputContext):
        ds = make_dataset(info, res_log2, minibatch, shuffle_mb=shuffle_mb, seed=seed,
                          prefetch=None, input_context=ctx)
        local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        if steps_done:
            ds = ds.skip(steps_done * local_replicas)
        return ds.prefetch(tf.data.AUTOTUNE)

    return iter(strategy.distribute_datasets_from_function(dataset_fn))


# --- naming a damaged record ---------------------------------------------------------------
# tf.data's errors name no file: DecodeRaw's names a position in a (shuffled) batch, the
# reader's CRC error a byte offset. These turn them into the file and the record's index in it.

_BAD_RECORD_RE = re.compile(re.escape(_BAD_RECORD) + r"\] \[(\d+)\] \[(-?\d+)\] \[([-\d ]*)\]")
_RECORD_AT_RE = re.compile(r"(?:corrupted|truncated) record at (\d+)")


def _tf_message(error: Exception) -> str:
    """The first line of a TensorFlow error, without its function, iterator and op decorations."""
    lines = str(getattr(error, "message", None) or error).strip().splitlines()
    text = lines[0] if lines else ""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"^Error in user-defined function passed to .*? transformation with iterator: \S+: ", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text)
    return text.strip() or type(error).__name__


def _mismatch(length: int, shape, shape_chw) -> str:
    return (f"{length} data bytes for shape {list(shape)} (the level's images are {list(shape_chw)}, "
            f"{int(np.prod(shape_chw))} bytes)")


def _record_problem(payload: bytes, shape_chw) -> Optional[str]:
    """Why one serialized record is not an image of a level of ``shape_chw`` (None if it is one)."""
    try:
        feature = tf.train.Example.FromString(payload).features.feature
    except Exception as e:  # noqa: BLE001  (protobuf's DecodeError and friends)
        return f"not a tf.train.Example ({e})"
    shape = list(feature[fileformat.SHAPE_KEY].int64_list.value)
    data = feature[fileformat.DATA_KEY].bytes_list.value
    if len(data) != 1:
        return f"{len(data)} 'data' values (expected one)"
    if shape != list(shape_chw) or len(data[0]) != int(np.prod(shape_chw)):
        return _mismatch(len(data[0]), shape, shape_chw)
    return None


def _first_bad_record(serialized, shape_chw, first_index: int, error: Exception) -> str:
    """``corrupt record <index>: <why>`` for the first bad record of a batch that failed to parse."""
    for j, payload in enumerate(serialized):
        problem = _record_problem(payload, shape_chw)
        if problem:
            return f"corrupt record {first_index + j}: {problem}"
    return (f"corrupt record among {first_index}..{first_index + len(serialized) - 1} "
            f"({_tf_message(error)})")


def _readable_records(path: str) -> int:
    """How many records of a file read back before the first unreadable one (its index)."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError:
        pass
    return count


def _record_is_intact(framed: bytes) -> bool:
    """Whether one framed record (header, payload, footer) passes TensorFlow's own CRC checks."""
    with tempfile.TemporaryDirectory(prefix="progan-record-") as tmp:
        path = os.path.join(tmp, "record.tfrecords")
        with open(path, "wb") as f:
            f.write(framed)
        return _readable_records(path) == 1


def _records_at_offset(files: List[str], offset: int) -> List[Tuple[str, Optional[int], Optional[int]]]:
    """``(file, index, start byte)`` of the level's records that hold byte ``offset`` and so could be
    the one a reader's "corrupted record at <offset>" means: of several (shards), those whose CRCs fail."""
    found = []
    for path in files:
        try:
            at = fileformat.record_containing(path, offset)
        except (DatasetError, OSError):     # a file truncated or gone since the scan: a candidate too
            found.append((path, None, None, b""))
            continue
        if at is not None:
            found.append((path, *at))
    if len(found) > 1:
        damaged = [f for f in found if f[1] is None or not _record_is_intact(f[3])]
        found = damaged or found
    return [f[:3] for f in found]


def _global_to_file_index(info: DatasetInfo, res_log2: int, index: int) -> Tuple[str, int]:
    """The file of a level and the index in it of the level's record ``index`` (in file order)."""
    files = info.files[res_log2]
    counts = info.file_counts.get(res_log2) or [fileformat.count_records(p) for p in files]
    for path, count in zip(files, counts):
        if index < count:
            return path, index
        index -= count
    return files[-1], index + counts[-1]


def describe_read_error(info: DatasetInfo, res_log2: int, error: Exception) -> str:
    """What a tf.data error met while reading level ``res_log2`` (of :func:`make_dataset`) means,
    naming the dataset, the level file and, where the error tells, the record and its offset."""
    files = info.files[res_log2]
    text = _tf_message(error)
    level = f"dataset {info.path}, level r{res_log2:02d} ({2 ** res_log2}x{2 ** res_log2})"
    bad = _BAD_RECORD_RE.search(text)
    if bad:
        path, index = _global_to_file_index(info, res_log2, int(bad.group(1)))
        shape_chw = (info.channels, 2 ** res_log2, 2 ** res_log2)
        problem = _mismatch(int(bad.group(2)), [int(v) for v in bad.group(3).split()], shape_chw)
        return f"{level}: {os.path.basename(path)}: corrupt record {index}: {problem}"
    at = _RECORD_AT_RE.search(text)
    if at:
        offset = int(at.group(1))
        found = _records_at_offset(files, offset)
        if len(found) == 1 and found[0][1] is not None:
            path, index, start = found[0]
            return f"{level}: {os.path.basename(path)}: corrupt record {index} at byte {start} ({text})"
        names = ", ".join(os.path.basename(f[0]) for f in found) or ", ".join(os.path.basename(p) for p in files)
        return f"{level}: {names}: a record at byte {offset} is damaged ({text})"
    names = ", ".join(os.path.basename(p) for p in files)
    return f"{level}: {names}: {type(error).__name__}: {text}"


# --- in-order NumPy reading --------------------------------------------------------------

def _iterate_file_batches(info: DatasetInfo, res_log2: int, batch_size: int, limit: int):
    """Yields uint8 NHWC batches file by file (a batch never spans two files).

    A damaged record raises DatasetError naming its file and its exact index in the file.
    """
    resolution = 2 ** res_log2
    shape_chw = (info.channels, resolution, resolution)
    done = 0
    for path in info.files[res_log2]:
        if done >= limit:
            return
        ds = tf.data.TFRecordDataset(path).take(limit - done).batch(batch_size)
        in_file = 0
        try:
            for serialized in ds:
                try:
                    # With indices, a wrong data length that happens to fill whole images still fails.
                    images = _parse_batch(serialized, shape_chw, tf.range(tf.size(serialized))).numpy()
                except tf.errors.InvalidArgumentError as e:
                    raise DatasetError(f"{path}: {_first_bad_record(serialized.numpy(), shape_chw, in_file, e)}"
                                       ) from None
                done += images.shape[0]
                in_file += images.shape[0]
                yield images
        except tf.errors.DataLossError as e:
            index = _readable_records(path)
            raise DatasetError(f"{path}: corrupt record {index} at byte {fileformat.record_offset(path, index)} "
                               f"({_tf_message(e)})") from None


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


# --- training-side transforms ------------------------------------------------------------

def to_float(images):
    """uint8 [0, 255] -> float32 [-1, 1], linearly (x / 127.5 - 1)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def mirror(images, seed, batch_size: int, indices=None):
    """Flips NHWC images horizontally where a stateless uniform draw is below 1/2.

    The draws are ``tf.random.stateless_uniform([batch_size], seed)``, one per image of
    a global batch; ``images`` are its rows ``indices`` (one replica's share; default:
    all rows), so however the batch is split over replicas the same images flip.
    """
    draws = tf.random.stateless_uniform([batch_size], seed)
    if indices is not None:
        draws = tf.gather(draws, indices)
    return tf.where(draws[:, None, None, None] < 0.5, tf.reverse(images, axis=[2]), images)


def fade_lod(images, frac):
    """Cross-fades reals towards the previous level: lerp(x, up2x(avgpool2x2(x)), frac).

    ``frac`` = frac(lod) in [0, 1] (may be a tensor; docs/method.md). uint8
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

"""The on-disk format of a ProGAN dataset, shared by the reader and the writer.

The original NVIDIA ``dataset_tool.py`` format (docs/method.md#dataset-format):

- one TFRecord file per resolution level, ``<name>-rNN.tfrecords`` with NN = log2 of the
  resolution, 02 .. top; optionally sharded as ``<name>-rNN-SSSSS-of-TTTTT.tfrecords``;
- each record a ``tf.train.Example`` with ``shape`` = [C, H, W] (int64) and ``data`` = the raw
  uint8 image in C, H, W order;
- each lower level the 2x2 box mean of the unrounded float32 level above, rounded with
  ``np.rint`` only for the stored copy;
- ``<name>-rxx.labels``, when there are labels: ``np.save`` of float32 [N, L];
- the records of every level and the label rows in one order, so a record's label is the row
  at its position in file order.

Nothing here imports TensorFlow (``progan-dataset --help`` should not pay for it).
"""
from __future__ import annotations

import os
import re
import struct
from typing import BinaryIO, Iterator, List, Optional, Tuple

import numpy as np

from progan_tf.datasets.errors import DatasetError

SHAPE_KEY = "shape"
DATA_KEY = "data"
LABELS_SUFFIX = "-rxx.labels"
_TFRECORD_RE = re.compile(
    r"^(?P<name>.+)-r(?P<res_log2>\d{2})(?:-(?P<shard>\d{5})-of-(?P<total>\d{5}))?\.tfrecords$")
_RECORD_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
_RECORD_FOOTER_BYTES = 4   # uint32 masked CRC of the payload


# --- file names --------------------------------------------------------------------------

def tfrecord_file_name(name: str, res_log2: int, shard: int = 0, num_shards: int = 1) -> str:
    """``<name>-rNN.tfrecords``, or ``<name>-rNN-SSSSS-of-TTTTT.tfrecords`` when sharded."""
    if num_shards == 1:
        return f"{name}-r{res_log2:02d}.tfrecords"
    return f"{name}-r{res_log2:02d}-{shard:05d}-of-{num_shards:05d}.tfrecords"


def labels_file_name(name: str) -> str:
    return name + LABELS_SUFFIX


def parse_tfrecord_name(filename: str) -> Optional[Tuple[str, int, int, int]]:
    """Returns (name, res_log2, shard, num_shards) for a dataset file name, or None.

    Unsharded original files give shard=0, num_shards=1.
    """
    m = _TFRECORD_RE.match(os.path.basename(filename))
    if not m:
        return None
    shard = int(m.group("shard")) if m.group("shard") else 0
    total = int(m.group("total")) if m.group("total") else 1
    return m.group("name"), int(m.group("res_log2")), shard, total


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


# --- records -----------------------------------------------------------------------------

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
    features = (_field(1, _field(1, DATA_KEY.encode()) + _field(2, data))
                + _field(1, _field(1, SHAPE_KEY.encode()) + _field(2, shape)))
    return _field(1, features)


def _record_length(header: bytes) -> int:
    (length,) = struct.unpack("<Q", header[:8])
    return length


def _walk_records(path: str, stop_at: Optional[int] = None) -> Iterator[Tuple[int, int, int]]:
    """``(index, start byte, payload length)`` of each record, from the length headers alone
    (no payload read), up to the record starting at or after byte ``stop_at``.

    Raises DatasetError naming the file when a record is truncated.
    """
    size = os.path.getsize(path)
    count = 0
    pos = 0
    with open(path, "rb") as f:
        while pos < size and (stop_at is None or pos <= stop_at):
            header = f.read(_RECORD_HEADER_BYTES)
            if len(header) < _RECORD_HEADER_BYTES:
                raise DatasetError(f"{path}: truncated record header at byte {pos}")
            length = _record_length(header)
            end = pos + _RECORD_HEADER_BYTES + length + _RECORD_FOOTER_BYTES
            if end > size:
                raise DatasetError(
                    f"{path}: truncated or corrupt record {count} at byte {pos} "
                    f"(claims {length} bytes, file has {size - pos - 16})")
            yield count, pos, length
            f.seek(end)
            pos = end
            count += 1


def count_records(path: str) -> int:
    """Counts TFRecord records by walking the length headers (no payload read).

    Raises DatasetError naming the file when a record is truncated.
    """
    return sum(1 for _ in _walk_records(path))


def record_containing(path: str, offset: int) -> Optional[Tuple[int, int, bytes]]:
    """``(index, start byte, framed bytes)`` of the record whose framing (header, payload and footer,
    CRCs included) holds byte ``offset``; None past the last record. For naming the record behind a
    reader's "corrupted record at <offset>" (the offset of its header, or of its payload)."""
    for index, pos, length in _walk_records(path, stop_at=offset):
        end = pos + _RECORD_HEADER_BYTES + length + _RECORD_FOOTER_BYTES
        if pos <= offset < end:
            with open(path, "rb") as f:
                f.seek(pos)
                return index, pos, f.read(end - pos)
    return None


def record_offset(path: str, index: int) -> int:
    """The byte at which record ``index`` of a file starts (its end when there are fewer records)."""
    pos = 0
    for i, pos, length in _walk_records(path):
        if i == index:
            return pos
        pos += _RECORD_HEADER_BYTES + length + _RECORD_FOOTER_BYTES
    return pos


def first_record_payload(path: str) -> Optional[bytes]:
    """The serialized Example of a file's first record (None if the file is empty)."""
    with open(path, "rb") as f:
        header = f.read(_RECORD_HEADER_BYTES)
        if len(header) < _RECORD_HEADER_BYTES:
            return None
        return f.read(_record_length(header))


# --- the pyramid -------------------------------------------------------------------------

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


# --- labels ------------------------------------------------------------------------------

def onehot(labels: np.ndarray) -> np.ndarray:
    """The original's one-hot: max(label)+1 columns, float32."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    out = np.zeros((labels.size, int(labels.max()) + 1), np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out


def write_labels(f: BinaryIO, labels: np.ndarray) -> None:
    np.save(f, labels.astype(np.float32))


def read_labels(path: str) -> np.ndarray:
    """A labels file as float32 [N, L] (a vector of scalar labels gives [N, 1])."""
    try:
        labels = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DatasetError(f"{path}: not a readable NumPy labels file ({e})") from e
    if labels.ndim == 1:  # tolerate a vector of scalar labels
        labels = labels[:, None]
    if labels.ndim != 2:
        raise DatasetError(f"{path}: labels must be 2-D [N, L], got shape {labels.shape}")
    return labels.astype(np.float32)

"""MNIST and Fashion-MNIST IDX files -> 32x32x1 with 10-class one-hot labels."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from progan_tf.datasets import fileformat, writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import common

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
_SPLIT_PREFIXES = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}


def read_idx(path: str, magic: int) -> np.ndarray:
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
    common.require_dir(mnist_dir, "MNIST directory")
    if split not in _SPLIT_PREFIXES:
        raise ToolError(f"--split={split}: create_mnist accepts train, test or all")
    images, labels = [], []
    for p in _SPLIT_PREFIXES[split]:
        img_path = _idx_path(mnist_dir, f"{p}-images-idx3-ubyte")
        lab_path = _idx_path(mnist_dir, f"{p}-labels-idx1-ubyte")
        x = read_idx(img_path, 2051)
        y = read_idx(lab_path, 2049)
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


def open_mnist(mnist_dir: str, split: str = "train", expected_images: int = 0) -> writer.Source:
    images, labels = load_mnist(mnist_dir, split)
    common.check_count(images.shape[0], expected_images, 0, mnist_dir)
    return writer.Source(images.shape[0], lambda i: images[i],
                         lambda i: f"{mnist_dir} image #{i}", fileformat.onehot(labels))


def create_mnist(tfrecord_dir: str, mnist_dir: str, opts: writer.WriteOptions,
                 split: str = "train", expected_images: int = 0) -> writer.Summary:
    return writer.write_source(tfrecord_dir, open_mnist(mnist_dir, split, expected_images), opts)

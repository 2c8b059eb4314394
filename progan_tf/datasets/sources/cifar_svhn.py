"""CIFAR-10 and CIFAR-100 python pickles, SVHN cropped digits (.mat, or the original's .pkl)
-> 32x32x3 with one-hot labels."""
from __future__ import annotations

import os
from typing import List

import numpy as np

from progan_tf.datasets import fileformat, writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import common

# Image counts of the standard downloads (checked unless --expected_images says otherwise).
STANDARD_COUNTS = {"cifar10": 50000, "cifar100": 50000, "svhn_train": 73257,
                   "svhn_test": 26032, "svhn_extra": 531131}
SVHN_SPLITS = ("train", "test", "extra")


def _cifar_images(data: dict, path: str) -> np.ndarray:
    x = np.asarray(data["data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ToolError(f"{path}: 'data' has shape {x.shape}, expected [N, 3072]")
    return x.reshape(-1, 3, 32, 32)


def _source(images: np.ndarray, labels: np.ndarray, where: str, expected_images: int,
            standard_count: int) -> writer.Source:
    common.check_count(images.shape[0], expected_images, standard_count, where)
    return writer.Source(images.shape[0], lambda i: images[i], lambda i: f"{where} image #{i}",
                         fileformat.onehot(labels))


def open_cifar10(cifar10_dir: str, expected_images: int = -1) -> writer.Source:
    """cifar-10-batches-py: data_batch_1..5, 10-class labels."""
    common.require_dir(cifar10_dir, "CIFAR-10 directory")
    images, labels = [], []
    for batch in range(1, 6):
        path = os.path.join(cifar10_dir, f"data_batch_{batch}")
        data = common.unpickle(path)
        images.append(_cifar_images(data, path))
        labels.append(np.asarray(data["labels"]))
    return _source(np.concatenate(images), np.concatenate(labels), cifar10_dir, expected_images,
                   STANDARD_COUNTS["cifar10"])


def open_cifar100(cifar100_dir: str, expected_images: int = -1) -> writer.Source:
    """cifar-100-python/train, the 100 fine labels."""
    common.require_dir(cifar100_dir, "CIFAR-100 directory")
    path = os.path.join(cifar100_dir, "train")
    data = common.unpickle(path)
    return _source(_cifar_images(data, path), np.asarray(data["fine_labels"]), cifar100_dir,
                   expected_images, STANDARD_COUNTS["cifar100"])


def _svhn_mat(path: str):
    """<split>_32x32.mat: X [32, 32, 3, N], y [N, 1] in 1..10 (10 = digit 0)."""
    import scipy.io  # deferred: only this source needs SciPy
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
    """The original's input: train_1..3.pkl, each (images uint8 [N, 3, 32, 32], labels [N] in
    0..9)."""
    images, labels = [], []
    for path in paths:
        data = common.unpickle(path)
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


def open_svhn(svhn_dir: str, split: str = "train", expected_images: int = -1) -> writer.Source:
    """SVHN cropped digits: <split>_32x32.mat (the official download), or for the train
    split the original tool's train_1.pkl .. train_3.pkl when there is no .mat file."""
    common.require_dir(svhn_dir, "SVHN directory")
    if split not in SVHN_SPLITS:
        raise ToolError(f"--split={split}: create_svhn accepts train, test or extra")
    path = os.path.join(svhn_dir, f"{split}_32x32.mat")
    pickles = [os.path.join(svhn_dir, f"train_{b}.pkl") for b in (1, 2, 3)]
    if not os.path.isfile(path) and split == "train" and all(os.path.isfile(p) for p in pickles):
        (images, labels), path = _svhn_pickles(pickles), svhn_dir
    else:
        hint = "the cropped-digits .mat file" + (
            ", or the original's train_1..3.pkl" if split == "train" else "")
        images, labels = _svhn_mat(common.require_file(path, hint))
    return _source(images, labels, path, expected_images, STANDARD_COUNTS[f"svhn_{split}"])


def create_cifar10(tfrecord_dir: str, cifar10_dir: str, opts: writer.WriteOptions,
                   expected_images: int = -1) -> writer.Summary:
    return writer.write_source(tfrecord_dir, open_cifar10(cifar10_dir, expected_images), opts)


def create_cifar100(tfrecord_dir: str, cifar100_dir: str, opts: writer.WriteOptions,
                    expected_images: int = -1) -> writer.Summary:
    return writer.write_source(tfrecord_dir, open_cifar100(cifar100_dir, expected_images), opts)


def create_svhn(tfrecord_dir: str, svhn_dir: str, opts: writer.WriteOptions, split: str = "train",
                expected_images: int = -1) -> writer.Summary:
    return writer.write_source(tfrecord_dir, open_svhn(svhn_dir, split, expected_images), opts)

"""Any tensorflow-datasets image dataset, read from a prepared data directory when offline."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from typing import Iterator, Optional

import numpy as np
import PIL.Image

from progan_tf.datasets import writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import common


def _tfds_builder(name: str, data_dir: Optional[str], download: bool):
    import tensorflow_datasets as tfds  # deferred: heavy, and only this source needs it
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


def _to_chw(arr: np.ndarray, resolution: Optional[int], channels: int) -> np.ndarray:
    """One TFDS image (HW or HWC) -> CHW uint8, channels converted, cropped/resized."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels and arr.shape[2] != channels:
        arr = common.pil_to_array(PIL.Image.fromarray(arr.squeeze(-1) if arr.shape[2] == 1
                                                      else arr), channels)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return common.crop_resize(arr, resolution).transpose(2, 0, 1)


def _spool(examples, n: int, spool_dir: str, where: str, image_key: str, label_key: Optional[str],
           resolution: Optional[int], channels: int):
    """Converts up to n examples into a uint8 memmap in spool_dir.

    Returns (images, integer labels, count); the labels are zeros without ``label_key``."""
    images, labels = None, np.zeros(n, np.int64)
    count = 0
    for ex in examples:
        arr = _to_chw(np.asarray(ex[image_key]), resolution, channels)
        if images is None:
            images = np.lib.format.open_memmap(os.path.join(spool_dir, "images.npy"), "w+",
                                               np.uint8, (n,) + arr.shape)
        if arr.shape != images.shape[1:]:
            raise ToolError(f"{where} example #{count}: shape {arr.shape} (C,H,W) "
                            f"differs from the first's {images.shape[1:]} (use "
                            "--resolution/--channels)")
        images[count] = arr
        if label_key:
            labels[count] = int(ex[label_key])
        count += 1
    if count == 0:
        raise ToolError(f"{where} holds no examples")
    return images, labels[:count], count


@contextlib.contextmanager
def open_tfds(name: str, spool_parent: str, split: str = "train", image_key: str = "image",
              label_key: str = "label", data_dir: Optional[str] = None,
              resolution: Optional[int] = None, channels: int = 0, download: bool = False,
              max_images: Optional[int] = None) -> Iterator[writer.Source]:
    """The first ``max_images`` examples of a split, in split order, with one-hot labels from
    the ClassLabel ``label_key`` (if the dataset has it). The split is first converted into a
    temporary uint8 memmap in ``spool_parent`` (so shuffling needs no RAM), removed on exit."""
    import tensorflow_datasets as tfds  # deferred: heavy, and only this source needs it
    common.check_resolution(resolution)
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
    if max_images is not None:
        n = min(n, max_images)
        ds = ds.take(n)
    os.makedirs(spool_parent, exist_ok=True)
    spool_dir = tempfile.mkdtemp(prefix=".tfds-spool-", dir=spool_parent)
    try:
        where = f"{name}[{split}]"
        images, labels, count = _spool(tfds.as_numpy(ds), n, spool_dir, where, image_key,
                                       label_key if use_labels else None, resolution, channels)
        onehot = None
        if use_labels:
            onehot = np.zeros((count, num_classes), np.float32)
            onehot[np.arange(count), labels] = 1.0
        yield writer.Source(count, lambda i: images[i], lambda i: f"{where} example #{i}", onehot)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)


def create_from_tfds(tfrecord_dir: str, name: str, opts: writer.WriteOptions, split: str = "train",
                     image_key: str = "image", label_key: str = "label",
                     data_dir: Optional[str] = None, resolution: Optional[int] = None,
                     channels: int = 0, download: bool = False) -> writer.Summary:
    """Any TFDS image dataset; ``opts.max_images`` takes the first ones of the split."""
    writer.check_output_dir(os.path.abspath(tfrecord_dir), opts.overwrite)
    spool_parent = os.path.dirname(os.path.abspath(tfrecord_dir))
    with open_tfds(name, spool_parent, split, image_key, label_key, data_dir, resolution,
                   channels, download, opts.max_images) as source:
        return writer.write_source(tfrecord_dir, source, dataclasses.replace(opts, max_images=None))

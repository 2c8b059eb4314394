"""A directory of image files -> a dataset, with optional one-hot labels from sub-folders."""
from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
from absl import logging

from progan_tf.datasets import writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import common

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_image_files(image_dir: str, recursive: bool) -> List[str]:
    common.require_dir(image_dir, "image directory")
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


def _onehot_from_subdirs(image_dir: str, files: List[str]) -> np.ndarray:
    idx, classes = labels_from_subdirs(image_dir, files)
    labels = np.zeros((len(files), len(classes)), np.float32)
    labels[np.arange(len(files)), idx] = 1.0
    logging.info("%d classes: %s", len(classes), ", ".join(classes))
    return labels


def open_image_folder(image_dir: str, resolution: Optional[int] = None, recursive: bool = False,
                      with_labels: bool = False, channels: int = 0) -> writer.Source:
    """The folder's images in sorted path order (``with_labels`` implies ``recursive``)."""
    common.check_resolution(resolution)
    if channels not in (0, 1, 3):
        raise ToolError(f"--channels={channels}: must be 0, 1 or 3")
    files = list_image_files(image_dir, recursive or with_labels)
    labels = _onehot_from_subdirs(image_dir, files) if with_labels else None
    def load(i):
        return common.load_image_file(files[i], resolution, channels)

    return writer.Source(len(files), load, lambda i: files[i], labels)


def create_from_images(tfrecord_dir: str, image_dir: str, opts: writer.WriteOptions,
                       resolution: Optional[int] = None, recursive: bool = False,
                       with_labels: bool = False, channels: int = 0) -> writer.Summary:
    source = open_image_folder(image_dir, resolution, recursive, with_labels, channels)
    return writer.write_source(tfrecord_dir, source, opts)

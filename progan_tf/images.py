"""Image grids and PNG output (training snapshots, generation)."""

from __future__ import annotations

import os

import numpy as np
import PIL.Image


def _uint8_scale_bias(drange) -> tuple[float, float]:
    """``x * scale + bias`` maps ``drange`` onto [0, 255], as the original's adjust_dynamic_range."""
    lo, hi = float(drange[0]), float(drange[1])
    scale = 255.0 / (hi - lo)
    return scale, -lo * scale


def to_uint8(images, drange=(-1.0, 1.0)) -> np.ndarray:
    """Float images in ``drange`` -> uint8 [0, 255]: ``rint(x * scale + bias)`` clipped, in float32.

    With the default range that is ``rint(x * 127.5 + 127.5)``, the original's conversion
    (training snapshots, metrics and progan-generate all use it).
    """
    scale, bias = _uint8_scale_bias(drange)
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint(x * np.float32(scale) + np.float32(bias)), 0, 255).astype(np.uint8)


def to_uint8_tensor(images, drange=(-1.0, 1.0)):
    """`to_uint8` as TensorFlow ops, for graphs that must run without this package (the SavedModel).

    ``tf.round`` rounds half to even like ``np.rint``, so both give the same bytes.
    """
    import tensorflow as tf   # only exports trace this: image-grid users need not load TensorFlow

    scale, bias = _uint8_scale_bias(drange)
    x = tf.cast(images, tf.float32) * scale + bias
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def image_grid(images: np.ndarray, grid_size) -> np.ndarray:
    """Tiles NHWC images row-major into a ``(rows*H, cols*W, C)`` array; unused cells are black."""
    images = np.asarray(images)
    cols, rows = int(grid_size[0]), int(grid_size[1])
    n, h, w, c = images.shape
    if n > cols * rows:
        images = images[:cols * rows]
        n = cols * rows
    grid = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i in range(n):
        y, x = divmod(i, cols)
        grid[y * h:(y + 1) * h, x * w:(x + 1) * w] = images[i]
    return grid


def save_png(path: str, image: np.ndarray) -> None:
    """Writes an HWC uint8 image (C = 1 or 3) as PNG, atomically (temporary file, then rename)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    tmp = f"{path}.tmp{os.getpid()}.png"
    PIL.Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def save_image_grid(path: str, images, grid_size, drange=(-1.0, 1.0)) -> None:
    """Saves NHWC images (uint8, or float in ``drange``) as one PNG grid."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images, drange)
    save_png(path, image_grid(images, grid_size))

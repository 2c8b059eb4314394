"""Image grids and PNG output (training snapshots, generation)."""

from __future__ import annotations

import os

import numpy as np
import PIL.Image


def to_uint8(images, drange=(-1.0, 1.0)) -> np.ndarray:
    """Maps float images from ``drange`` to uint8 [0, 255], rounding and clipping."""
    images = np.asarray(images, dtype=np.float32)
    lo, hi = drange
    scaled = (images - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def default_grid_size(resolution: int, num_images_max: int = 64) -> tuple[int, int]:
    """A roughly 16:9 grid of at most ``num_images_max`` images and at most ~1080p."""
    gw = int(np.clip(1920 // resolution, 1, 32))
    gh = int(np.clip(1080 // resolution, 1, 32))
    while gw * gh > num_images_max and (gw > 1 or gh > 1):
        if gw >= gh:
            gw -= 1
        else:
            gh -= 1
    return gw, gh


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

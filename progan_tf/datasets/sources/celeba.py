"""Aligned CelebA (178x218) -> the original's 128x128 crop, no labels."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import PIL.Image

from progan_tf.datasets import writer
from progan_tf.datasets.errors import SkipImage, ToolError
from progan_tf.datasets.sources import common

STANDARD_COUNT = 202599
_IMAGE_DIRS = (("img_align_celeba_png", (".png",)), ("img_align_celeba", (".jpg", ".png")),
               ("", (".jpg", ".png")))


def find_celeba_images(celeba_dir: str) -> List[str]:
    common.require_dir(celeba_dir, "CelebA directory")
    for sub, exts in _IMAGE_DIRS:
        d = os.path.join(celeba_dir, sub)
        if os.path.isdir(d):
            files = sorted(os.path.join(d, f) for f in os.listdir(d)
                           if f.lower().endswith(exts))
            if files:
                return files
    raise ToolError(f"no aligned CelebA images in {celeba_dir} (looked in "
                    "img_align_celeba_png/*.png, img_align_celeba/*.jpg and the directory)")


def open_celeba(celeba_dir: str, cx: int = 89, cy: int = 121,
                expected_images: int = -1) -> writer.Source:
    """128x128 crops centred at (cx, cy) of the aligned 178x218 images."""
    files = find_celeba_images(celeba_dir)
    common.check_count(len(files), expected_images, STANDARD_COUNT, celeba_dir)

    def load(i):
        with PIL.Image.open(files[i]) as im:
            img = np.asarray(im.convert("RGB"))
        if img.shape != (218, 178, 3):
            raise SkipImage(f"size {img.shape[1]}x{img.shape[0]}, expected aligned 178x218")
        return img[cy - 64:cy + 64, cx - 64:cx + 64].transpose(2, 0, 1)

    return writer.Source(len(files), load, lambda i: files[i])


def create_celeba(tfrecord_dir: str, celeba_dir: str, opts: writer.WriteOptions, cx: int = 89,
                  cy: int = 121, expected_images: int = -1) -> writer.Summary:
    return writer.write_source(tfrecord_dir, open_celeba(celeba_dir, cx, cy, expected_images),
                               opts)

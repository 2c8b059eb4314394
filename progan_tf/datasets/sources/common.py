"""Helpers shared by the source modules: input checks with clear errors, image conversion."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import PIL.Image

from progan_tf import safe_pickle
from progan_tf.datasets import fileformat
from progan_tf.datasets.errors import ToolError


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ToolError(f"{what} not found: {path}")
    return path


def require_file(path: str, hint: str = "") -> str:
    if not os.path.isfile(path):
        raise ToolError(f"file not found: {path}{' (' + hint + ')' if hint else ''}")
    return path


def check_resolution(resolution: Optional[int], flag: str = "--resolution"):
    if resolution is not None and (not fileformat.is_power_of_two(resolution) or resolution < 4):
        raise ToolError(f"{flag}={resolution} is not a power of two >= 4")


def check_count(n: int, expected: int, standard: int, what: str):
    """``expected`` images: -1 = the standard download's ``standard``, 0 = any number."""
    want = standard if expected == -1 else expected
    if want and n != want:
        raise ToolError(f"{what}: expected {want} images, found {n} (incomplete download? "
                        "--expected_images=0 disables this check)")


def unpickle(path: str):
    """The plain data in a user-supplied pickle (CIFAR, SVHN), read with the restricted unpickler:
    a file naming anything else (a doctored "dataset" that would run code) is refused, nothing run."""
    require_file(path)
    try:
        return safe_pickle.load(path, encoding="latin1")
    except safe_pickle.UnsafePickleError as e:
        raise ToolError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001  (a truncated or foreign file: name it, no traceback)
        raise ToolError(f"cannot read {path}: {e}") from None


def pil_to_array(img: PIL.Image.Image, channels: int = 0) -> np.ndarray:
    """PIL image -> HWC uint8 with 1 or 3 channels (RGBA/palette/CMYK -> RGB,
    LA/1 -> L, 16-bit grayscale -> 8-bit). ``channels`` forces 1 or 3."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.uint32)
        arr = (arr >> 8 if arr.max() > 255 else arr).clip(0, 255).astype(np.uint8)
        img = PIL.Image.fromarray(arr, "L")
    elif mode in ("1", "LA", "F"):
        img = img.convert("L")
    elif mode not in ("L", "RGB"):
        img = img.convert("RGB")  # RGBA, P, PA, CMYK, YCbCr, ...
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def crop_resize(hwc: np.ndarray, resolution: Optional[int]) -> np.ndarray:
    """Centre-crops to a square and resizes (Lanczos) to resolution; as-is if the
    image already has that size or no resolution is given."""
    if resolution is None or hwc.shape[:2] == (resolution, resolution):
        return hwc
    h, w = hwc.shape[:2]
    s = min(h, w)
    hwc = hwc[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    if s != resolution:
        mode = "L" if hwc.shape[2] == 1 else "RGB"
        img = PIL.Image.fromarray(hwc[:, :, 0] if mode == "L" else hwc, mode)
        img = img.resize((resolution, resolution), PIL.Image.LANCZOS)
        hwc = np.asarray(img)
        hwc = hwc[:, :, None] if hwc.ndim == 2 else hwc
    return hwc


def load_image_file(path: str, resolution: Optional[int] = None, channels: int = 0) -> np.ndarray:
    """Reads an image file to CHW uint8 (converted, cropped/resized as asked)."""
    with PIL.Image.open(path) as img:
        img.load()  # force full decode so truncated files fail here
        arr = pil_to_array(img, channels)
    return crop_resize(arr, resolution).transpose(2, 0, 1)

"""Looking at datasets: ``info`` (and ``--verify``), ``display``, ``extract``, ``compare``.

Reader errors (DatasetError) become ToolErrors, which ``progan-dataset`` prints as one line.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional, Tuple

import numpy as np
import PIL.Image

from progan_tf.datasets import reader
from progan_tf.datasets.errors import DatasetError, ToolError


def _info_or_error(path: str) -> reader.DatasetInfo:
    try:
        return reader.read_dataset_info(path)
    except DatasetError as e:
        raise ToolError(str(e)) from e


def _iterate_or_error(info, res_log2: Optional[int], batch_size: int = 256,
                      max_images: Optional[int] = None) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    try:
        yield from reader.iterate_images(info, res_log2, batch_size=batch_size,
                                         max_images=max_images)
    except DatasetError as e:
        raise ToolError(str(e)) from e


def info_text(tfrecord_dir: str) -> str:
    """Resolutions, image count, channels, label size and bytes per level, as text."""
    info = _info_or_error(tfrecord_dir)
    total = 0
    lines = [f"dataset      {info.path}", f"name         {info.name}",
             f"resolution   {info.resolution}x{info.resolution} (levels r02..r"
             f"{info.resolution_log2:02d})", f"channels     {info.channels}",
             f"images       {info.num_images}",
             f"label size   {info.label_size}" + ("" if info.labels_path else " (no labels)")]
    for res_log2 in info.levels:
        b = info.level_bytes(res_log2)
        total += b
        lines.append(f"  r{res_log2:02d} {2**res_log2:5d}x{2**res_log2:<5d} "
                     f"{len(info.files[res_log2])} file(s) {b / 2**20:10.2f} MiB")
    if info.labels_path:
        total += os.path.getsize(info.labels_path)
    lines.append(f"total        {total / 2**20:.2f} MiB ({total} bytes)")
    return "\n".join(lines)


def verify(tfrecord_dir: str) -> int:
    """Reads every record of every level (CRCs, data lengths, shapes); returns the records read.

    The first damaged record is an error naming its file, its index in the file and, for a CRC
    error, its byte offset (``reader.iterate_images`` reads file by file and finds it exactly)."""
    info = _info_or_error(tfrecord_dir)
    total = 0
    for res_log2 in info.levels:
        total += sum(len(x) for x, _ in _iterate_or_error(info, res_log2, batch_size=1024))
    return total


def _label_text(row: np.ndarray) -> str:
    if row.size == 0:
        return ""
    if np.all((row == 0) | (row == 1)) and row.sum() == 1:
        return str(int(np.argmax(row)))
    return ",".join(f"{v:g}" for v in row[:4]) + ("..." if row.size > 4 else "")


def _read_first(info, level: Optional[int], max_images: int):
    images, labels = zip(*_iterate_or_error(info, level, max_images=max_images))
    return np.concatenate(images), np.concatenate(labels)


def _to_pil(img: np.ndarray) -> PIL.Image.Image:
    """HWC uint8 with 1 or 3 channels -> a PIL image (L or RGB)."""
    if img.shape[2] == 1:
        return PIL.Image.fromarray(img[:, :, 0], "L")
    return PIL.Image.fromarray(img, "RGB")


def display(tfrecord_dir: str, output_png: Optional[str] = None, num: int = 64,
            level: Optional[int] = None) -> str:
    """Saves a grid PNG of the first `num` images with their labels; returns its path."""
    from PIL import ImageDraw
    info = _info_or_error(tfrecord_dir)
    images, labels = _read_first(info, level, num)
    n, h, w, c = images.shape
    scale = max(1, 64 // w)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    text_h = 12 if labels.shape[1] else 0
    cell_w, cell_h = w * scale + 2, h * scale + 2 + text_h
    grid = PIL.Image.new("RGB", (cols * cell_w, rows * cell_h), (0, 0, 0))
    draw = ImageDraw.Draw(grid)
    for k in range(n):
        im = _to_pil(images[k]).resize((w * scale, h * scale), PIL.Image.NEAREST).convert("RGB")
        x0, y0 = (k % cols) * cell_w + 1, (k // cols) * cell_h + 1
        grid.paste(im, (x0, y0))
        if text_h:
            draw.text((x0, y0 + h * scale), _label_text(labels[k]), fill=(255, 255, 0))
    output_png = output_png or f"{info.name}-display.png"
    grid.save(output_png)
    return output_png


def extract(tfrecord_dir: str, output_dir: str, level: Optional[int] = None,
            max_images: Optional[int] = None, overwrite: bool = False) -> int:
    """Writes img%08d.png per image (file order), and labels.npy if there are labels."""
    info = _info_or_error(tfrecord_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ToolError(f"output directory is not empty: {output_dir} (pass --overwrite)")
    os.makedirs(output_dir, exist_ok=True)
    idx = 0
    all_labels = []
    for images, labels in _iterate_or_error(info, level, max_images=max_images):
        for img in images:
            _to_pil(img).save(os.path.join(output_dir, f"img{idx:08d}.png"))
            idx += 1
        all_labels.append(labels)
    if info.label_size:
        np.save(os.path.join(output_dir, "labels.npy"), np.concatenate(all_labels))
    return idx


def _aligned_batches(it_a, it_b):
    """Pairs of equally long (images, labels) chunks of two in-order streams."""
    buf_a = buf_b = None
    while True:
        if buf_a is None or not len(buf_a[0]):
            buf_a = next(it_a, None)
        if buf_b is None or not len(buf_b[0]):
            buf_b = next(it_b, None)
        if buf_a is None or buf_b is None:
            return
        k = min(len(buf_a[0]), len(buf_b[0]))
        yield (buf_a[0][:k], buf_a[1][:k]), (buf_b[0][:k], buf_b[1][:k])
        buf_a = (buf_a[0][k:], buf_a[1][k:])
        buf_b = (buf_b[0][k:], buf_b[1][k:])


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and np.array_equal(x, y)


def compare(dir_a: str, dir_b: str, ignore_labels: bool = False,
            level: Optional[int] = None) -> dict:
    """Image-by-image (and label-by-label) comparison in file order."""
    a, b = _info_or_error(dir_a), _info_or_error(dir_b)
    result = {"count_a": a.num_images, "count_b": b.num_images, "images": 0, "identical_images": 0,
              "identical_labels": 0, "different_images": [], "different_labels": []}
    idx = 0
    for (xa, ya), (xb, yb) in _aligned_batches(_iterate_or_error(a, level),
                                               _iterate_or_error(b, level)):
        for j in range(len(xa)):
            if _same(xa[j], xb[j]):
                result["identical_images"] += 1
            else:
                result["different_images"].append(idx + j)
            if _same(ya[j], yb[j]):
                result["identical_labels"] += 1
            else:
                result["different_labels"].append(idx + j)
        idx += len(xa)
    result["images"] = idx
    n = max(a.num_images, b.num_images)
    result["equal"] = (a.num_images == b.num_images
                       and result["identical_images"] == n
                       and (ignore_labels or (result["identical_labels"] == n
                                              and a.label_size == b.label_size)))
    return result

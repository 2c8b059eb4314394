"""Helpers for image streams: iterables of uint8 NHWC batches (C = 1 or 3).

Every metric consumes such a stream, so that 50k images never need to be in
memory at once. A generator for the fake side is any callable
``generate(num_images, batch_size) -> iterable of uint8 NHWC batches``.
"""
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
from tqdm import tqdm

ImageStream = Iterable[np.ndarray]
GenerateFn = Callable[[int, int], ImageStream]


def check_batch(batch) -> np.ndarray:
    """Returns `batch` as a uint8 [B, H, W, C] array with C in (1, 3), or raises ValueError."""
    batch = np.asarray(batch)
    if batch.dtype != np.uint8:
        raise ValueError(f"image batches must be uint8, got {batch.dtype}")
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3):
        raise ValueError(f"image batches must be [B, H, W, C] with C = 1 or 3, got shape {batch.shape}")
    return batch


def to_rgb(batch: np.ndarray) -> np.ndarray:
    """Tiles a grayscale batch to 3 identical channels; colour batches pass through."""
    return np.repeat(batch, 3, axis=-1) if batch.shape[-1] == 1 else batch


def take_images(batches: ImageStream, count: int, skip: int = 0) -> Iterator[np.ndarray]:
    """Yields exactly `count` images of `batches` after dropping the first `skip`.

    Batches are sliced where needed. Raises ValueError if the stream ends early,
    so a metric never silently runs on fewer images than asked for.
    """
    if count <= 0:
        raise ValueError(f"image count must be positive, got {count}")
    seen = 0
    taken = 0
    for batch in batches:
        batch = check_batch(batch)
        start = max(0, skip - seen)
        seen += len(batch)
        if start >= len(batch):
            continue
        part = batch[start:start + count - taken]
        taken += len(part)
        yield part
        if taken == count:
            return
    raise ValueError(f"image stream ended after {taken} of {count} images (skipping {skip})")


def with_progress(batches: ImageStream, total: int, desc: str, enabled: Optional[bool] = None
                  ) -> Iterator[np.ndarray]:
    """Wraps a stream in a tqdm bar counted in images.

    `enabled=None` shows the bar only on a terminal (tqdm's own rule), so logs
    and test output stay clean.
    """
    disable = None if enabled is None else not enabled
    with tqdm(total=total, desc=desc, unit="img", disable=disable, leave=False) as bar:
        for batch in batches:
            yield batch
            bar.update(len(batch))

"""Multi-scale SSIM between random pairs of images of one set (a measure of variation).

Per pair this is ``tf.image.ssim_multiscale``'s computation (Gaussian 11x11,
sigma 1.5, k1 0.01, k2 0.03, 2x2 average-pool downsampling with symmetric
padding of odd sizes, ReLU on the contrast-structure terms, the 5 power factors
of Wang et al. 2003, mean over channels), on float32 images in [0, 255] with
max_val 255.

Small images: ``tf.image.ssim_multiscale`` needs every scale to be at least as
large as the filter (11 * 2^4 = 176 pixels for 5 scales), so 32x32 or 128x128
images fail there. Here, as in the MS-SSIM code the original ProGAN used
(after tensorflow/models' msssim.py), a scale smaller than the filter uses a
filter of the scale's size with sigma scaled by the same factor
(``size = min(11, h, w)``, ``sigma = 1.5 * size / 11``); the 5 scales and power
factors stay. Where all scales fit, this is exactly ``tf.image.ssim_multiscale``.

The set value is the mean over pairs: `num_images` images give
``num_images // 2`` pairs, formed within blocks of up to 256 consecutive images
after a seeded shuffle of each block (see `random_pairs`; the result does not
depend on how the stream is batched).
"""
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from progan_tf.metrics import streams

POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """Normalised 2-D Gaussian [size, size] centred between pixels for even sizes (MATLAB fspecial)."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * (coords[:, None] ** 2 + coords[None, :] ** 2) / sigma ** 2)
    return g / g.sum()


def scale_filter(height: int, width: int, filter_size: int = FILTER_SIZE,
                 filter_sigma: float = FILTER_SIGMA):
    """Filter size and sigma used at a scale of `height` x `width` (shrunk for small scales)."""
    size = min(filter_size, height, width)
    return size, filter_sigma * size / filter_size


def _ssim_and_cs(x, y, max_val, size, sigma):
    """Per-image, per-channel SSIM and contrast-structure, like tf.image's `_ssim_per_channel`."""
    import tensorflow as tf

    channels = x.shape[-1]
    kernel = np.tile(gaussian_window(size, sigma)[:, :, None, None], [1, 1, channels, 1])
    kernel = tf.constant(kernel, tf.float32)

    def reducer(z):
        return tf.nn.depthwise_conv2d(z, kernel, strides=[1, 1, 1, 1], padding="VALID")

    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    mean0, mean1 = reducer(x), reducer(y)
    num0 = mean0 * mean1 * 2.0
    den0 = tf.square(mean0) + tf.square(mean1)
    luminance = (num0 + c1) / (den0 + c1)
    num1 = reducer(x * y) * 2.0
    den1 = reducer(tf.square(x) + tf.square(y))
    cs = (num1 - num0 + c2) / (den1 - den0 + c2)
    return tf.reduce_mean(luminance * cs, [1, 2]), tf.reduce_mean(cs, [1, 2])


def _downsample(x):
    """2x2 average pool; odd sizes are first padded at the end with SYMMETRIC mode (as tf.image)."""
    import tensorflow as tf

    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    if pad_h or pad_w:
        x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


def ms_ssim_pairs(a, b, max_val: float = 255.0, power_factors: Sequence[float] = POWER_FACTORS,
                  filter_size: int = FILTER_SIZE, filter_sigma: float = FILTER_SIGMA) -> np.ndarray:
    """MS-SSIM of each pair (a[i], b[i]) of [B, H, W, C] images; returns [B] float64."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(a, np.float32))
    y = tf.convert_to_tensor(np.asarray(b, np.float32))
    if x.shape != y.shape:
        raise ValueError(f"pairs need equal shapes, got {x.shape} and {y.shape}")
    values = []
    for k in range(len(power_factors)):
        if k > 0:
            x, y = _downsample(x), _downsample(y)
        size, sigma = scale_filter(x.shape[1], x.shape[2], filter_size, filter_sigma)
        ssim, cs = _ssim_and_cs(x, y, max_val, size, sigma)
        values.append(tf.nn.relu(ssim if k == len(power_factors) - 1 else cs))
    stacked = tf.stack(values, axis=-1)  # [B, C, scales]
    per_channel = tf.reduce_prod(tf.pow(stacked, tf.constant(power_factors, tf.float32)), axis=-1)
    return tf.reduce_mean(per_channel, axis=-1).numpy().astype(np.float64)


def block_size(image_shape, max_bytes: int = 64 << 20, max_images: int = 256) -> int:
    """Images per shuffling block: up to `max_images`, within about `max_bytes` of uint8 (even, >= 2)."""
    per_image = int(np.prod(image_shape))
    size = min(max_images, max(2, max_bytes // per_image))
    return size - size % 2


class PairBlocks:
    """Cuts a pushed stream of images into shuffled pairs, block by block.

    The stream is cut into blocks of `block` images by position (independent
    of how it was batched); each block is shuffled with ``default_rng([seed,
    block index])`` and its images are paired in that order. With an odd
    count, the image shuffled to the end of the last block is left out.
    ``add(batch)`` and ``close()`` return the (first, second) pairs completed.
    """

    def __init__(self, seed: int = 0, block: Optional[int] = None):
        self.seed = int(seed)
        self.block = block
        self._pending, self._count, self._index = [], 0, 0

    def _pairs_of(self, images):
        images = images[np.random.default_rng([self.seed, self._index]).permutation(len(images))]
        self._index += 1
        even = len(images) - len(images) % 2
        return [(images[0:even:2], images[1:even:2])] if even else []

    def _flush(self):
        images = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._count = [], 0
        return self._pairs_of(images)

    def add(self, batch):
        batch = streams.check_batch(batch)
        if self.block is None:
            self.block = block_size(batch.shape[1:])
        pairs = []
        while len(batch):
            part = batch[:self.block - self._count]
            batch = batch[len(part):]
            self._pending.append(part)
            self._count += len(part)
            if self._count == self.block:
                pairs += self._flush()
        return pairs

    def close(self):
        return self._flush() if self._pending else []


class MSSSIMAccumulator:
    """Streaming mean MS-SSIM over the random pairs (`PairBlocks`) of the images added."""

    def __init__(self, seed: int = 0, block: Optional[int] = None):
        self.pairs = PairBlocks(seed, block)
        self.total, self.count = 0.0, 0

    def _score(self, pairs):
        for first, second in pairs:
            values = ms_ssim_pairs(first, second)
            self.total += float(values.sum())
            self.count += len(values)

    def add(self, batch) -> None:
        self._score(self.pairs.add(batch))

    def result(self) -> float:
        self._score(self.pairs.close())
        if not self.count:
            raise ValueError("MS-SSIM needs at least 2 images")
        return self.total / self.count

    def statistics(self) -> Dict[str, np.ndarray]:
        """``value``: the mean MS-SSIM of `result` as an array (cacheable)."""
        return {"value": np.array(self.result())}


def random_pairs(batches: streams.ImageStream, seed: int = 0, block: Optional[int] = None):
    """Yields the (first, second) arrays of image pairs of a stream (see `PairBlocks`)."""
    pairs = PairBlocks(seed, block)
    for batch in batches:
        yield from pairs.add(batch)
    yield from pairs.close()


def ms_ssim(batches: Iterable[np.ndarray], num_images: int, seed: int = 0,
            progress: Optional[str] = "MS-SSIM") -> float:
    """Mean MS-SSIM over `num_images // 2` random pairs of the first `num_images` images of a stream."""
    if num_images < 2:
        raise ValueError("MS-SSIM needs at least 2 images")
    stream = streams.take_images(batches, num_images)
    if progress:
        stream = streams.with_progress(stream, num_images, progress)
    accumulator = MSSSIMAccumulator(seed)
    for batch in stream:
        accumulator.add(batch)
    return accumulator.result()

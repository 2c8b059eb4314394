"""Sliced Wasserstein distance (SWD) between two image sets, as in Karras et al. 2018.

The numbers follow the original NVIDIA implementation step by step:

* Laplacian pyramid of each image, levels from the image size down to 16x16,
  with the 5x5 binomial filter ``outer([1,4,6,4,1], [1,4,6,4,1]) / 256`` and
  mirror borders (scipy.ndimage 'mirror': reflect without repeating the edge).
* From every level of every image, 128 random 7x7 neighbourhoods (centres
  uniform in [3, size - 3) per axis), all 3 channels, flattened to 147 values
  in the original's order (channel, x offset, y offset). Grayscale images count
  as 3 identical channels, so their numbers are comparable with colour sets.
* Each set's descriptors are normalised per channel by their own mean and
  standard deviation over the whole set.
* 4 repeats x 128 random unit directions; project both sets, sort each
  projection, take the mean absolute difference; average the repeats.
* Reported x1e3 per level (``SWDx1e3_<res>``) and averaged (``SWDx1e3_avg``).

How it is made fast (the original NumPy code needs about 145 s per 10k images
per side), with the same arithmetic up to float rounding:

* separable pyramid filters (``scipy.ndimage.correlate1d``), computed only on
  the rows and columns that are kept;
* descriptors gathered one component at a time (``np.take``) into a
  feature-major ``[147, N]`` array, so projections are one contiguous GEMM
  (``[K, 147] @ [147, N]``) whose rows sort in place;
* the per-channel normalisation is folded into the directions (an affine map),
  so the big descriptor array is never rewritten; for grayscale sets the three
  identical channel blocks of a direction are summed, which keeps 49 values
  per descriptor instead of 147;
* direction blocks run on a few threads with preallocated buffers (NumPy's sort
  and matmul release the GIL; fresh large arrays would page-fault every time).

Randomness is seeded: neighbourhood centres come from ``default_rng([seed, 0])``
(drawn once per level for all images, so results do not depend on the batch
size) and directions from ``default_rng([seed, 1, level])``. Both image sets
use the same centres for the same image index (common random numbers), so two
identical sets give exactly 0.
"""
import concurrent.futures
import ctypes
import glob
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging
from scipy import ndimage

from progan_tf.metrics import streams

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
DESCRIPTOR_CHANNELS = 3  # grayscale is treated as 3 identical channels

# outer(GAUSS_1D, GAUSS_1D) is the original 5x5 filter [[1,4,6,4,1],...]/256.
GAUSS_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


# --------------------------------------------------------------------------- pyramid

def pyramid_resolutions(resolution: int) -> List[int]:
    """Level resolutions: the image size, halved while >= 16 (e.g. 32 -> [32, 16])."""
    levels = []
    res = int(resolution)
    while res >= MIN_RESOLUTION:
        levels.append(res)
        res //= 2
    return levels


def pyr_down(images: np.ndarray) -> np.ndarray:
    """Blur with the 5x5 binomial filter (mirror borders), keep every second row and column.

    `images` is float [B, H, W, C]. Filtering is separable; rows are dropped
    before the column pass since those outputs would be thrown away.
    """
    rows = ndimage.correlate1d(images, GAUSS_1D, axis=1, mode="mirror")[:, ::2]
    return ndimage.correlate1d(rows, GAUSS_1D, axis=2, mode="mirror")[:, :, ::2]


def _upsample_axis(x: np.ndarray, axis: int) -> np.ndarray:
    shape = list(x.shape)
    shape[axis] *= 2
    up = np.zeros(shape, x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, None, 2)
    up[tuple(index)] = x
    return ndimage.correlate1d(up, 2.0 * GAUSS_1D, axis=axis, mode="mirror")


def pyr_up(images: np.ndarray) -> np.ndarray:
    """Zero-insert upsampling (values at even indices) and 4x the binomial filter, mirror borders."""
    return _upsample_axis(_upsample_axis(images, 1), 2)


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> List[np.ndarray]:
    """Laplacian pyramid of [B, H, W, C] images as float32 in [0, 255] (uint8 is cast).

    Level i is ``g_i - pyr_up(g_{i+1})`` for all but the last, which is the
    blurred ``g_{n-1}``; ``g_0`` is the image and ``g_{i+1} = pyr_down(g_i)``.
    """
    pyramid = [np.array(images, dtype=np.float32, copy=True)]
    for _ in range(1, num_levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] -= pyr_up(pyramid[-1])
    return pyramid


def reconstruct_laplacian_pyramid(pyramid: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of `laplacian_pyramid`."""
    images = pyramid[-1]
    for level in pyramid[-2::-1]:
        images = pyr_up(images) + level
    return images


# --------------------------------------------------------------------------- descriptors

def draw_positions(rng: np.random.Generator, num_images: int, size: int,
                   count: int = NHOODS_PER_IMAGE, nhood_size: int = NHOOD_SIZE
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Neighbourhood centres (xs, ys), each int32 [num_images, count], uniform in [h, size - h)."""
    half = nhood_size // 2
    xs = rng.integers(half, size - half, size=(num_images, count), dtype=np.int32)
    ys = rng.integers(half, size - half, size=(num_images, count), dtype=np.int32)
    return xs, ys


def descriptor_offsets(height: int, width: int, channels: int, nhood_size: int = NHOOD_SIZE
                       ) -> np.ndarray:
    """Flat NHWC offsets of the descriptor components relative to a centre pixel.

    Component order is (channel, x offset, y offset), the order of the
    original's NCHW ``minibatch.flat[((img*C + chan)*H + y)*W + x]`` with an
    ogrid that puts x before y.
    """
    half = nhood_size // 2
    chan, dx, dy = np.meshgrid(np.arange(channels), np.arange(-half, half + 1),
                               np.arange(-half, half + 1), indexing="ij")
    return ((dy * width + dx) * channels + chan).ravel()


def extract_descriptors(level: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                        nhood_size: int = NHOOD_SIZE, out: Optional[np.ndarray] = None
                        ) -> np.ndarray:
    """Gathers 7x7 neighbourhoods of a pyramid level into a feature-major array.

    `level` is float32 [B, H, W, C]; `xs`, `ys` are the centres [B, K]. Returns
    ``out`` of shape [C * n * n, B * K]: column j is descriptor j (image j // K).
    """
    b, h, w, c = level.shape
    flat = np.ascontiguousarray(level, dtype=np.float32).reshape(-1)
    image = np.arange(b, dtype=np.int64)[:, None]
    base = (((image * h + ys) * w + xs) * c).reshape(-1)
    offsets = descriptor_offsets(h, w, c, nhood_size)
    if out is None:
        out = np.empty((len(offsets), base.size), np.float32)
    for row, offset in zip(out, offsets):
        np.take(flat, base + offset, out=row, mode="clip")  # indices are in range by construction
    return out


@dataclass
class LevelDescriptors:
    """Descriptors of one pyramid level of one image set.

    `data` is float32 [C * 49, N] (feature-major, C = 1 or 3 actual channels);
    `mean` and `std` are the per-channel statistics over all N descriptors
    (population std, as ``np.std``), used to normalise them.
    """
    resolution: int
    data: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def count(self) -> int:
        return self.data.shape[1]


class _ChannelMoments:
    """Per-channel running mean/variance of descriptor values.

    Squares are taken in float32 (exact to 6e-8 relative) and all sums are
    float64, so E[x^2] - E[x]^2 stays accurate even for the coarsest level
    (mean ~128) and does not depend on how the stream is batched.
    """

    def __init__(self, channels: int):
        self.count = 0
        self.sum = np.zeros(channels)
        self.sumsq = np.zeros(channels)

    def update(self, block: np.ndarray) -> None:
        """`block` is [C, components per channel, n]."""
        self.sum += block.sum(axis=2, dtype=np.float64).sum(axis=1)
        self.sumsq += np.square(block).sum(axis=2, dtype=np.float64).sum(axis=1)
        self.count += block.shape[1] * block.shape[2]

    def mean_std(self) -> Tuple[np.ndarray, np.ndarray]:
        mean = self.sum / self.count
        var = np.maximum(self.sumsq / self.count - mean * mean, 0.0)
        return mean, np.sqrt(var)


class SWDDescriptors:
    """Streaming accumulator of one image set's descriptors, for every pyramid level.

    Memory is preallocated for `num_images`: 128 x C x 49 float32 values per
    image per level (75 KB for colour, 25 KB for grayscale).
    """

    def __init__(self, num_images: int, resolution: int, channels: int, seed: int = 0):
        if resolution < MIN_RESOLUTION:
            raise ValueError(f"SWD needs images of at least {MIN_RESOLUTION}x{MIN_RESOLUTION}, got {resolution}")
        self.num_images = int(num_images)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.resolutions = pyramid_resolutions(resolution)
        rng = np.random.default_rng([seed, 0])
        self.positions = [draw_positions(rng, self.num_images, res) for res in self.resolutions]
        features = self.channels * NHOOD_SIZE * NHOOD_SIZE
        self._data = [np.empty((features, self.num_images * NHOODS_PER_IMAGE), np.float32)
                      for _ in self.resolutions]
        self._moments = [_ChannelMoments(self.channels) for _ in self.resolutions]
        self.filled = 0

    @classmethod
    def for_batch(cls, num_images: int, batch: np.ndarray, seed: int = 0) -> "SWDDescriptors":
        """An accumulator for `num_images` images shaped like the (first) `batch`."""
        batch = streams.check_batch(batch)
        if batch.shape[1] != batch.shape[2]:
            raise ValueError(f"SWD needs square images, got {batch.shape[1:3]}")
        return cls(num_images, batch.shape[1], batch.shape[3], seed=seed)

    def add(self, batch: np.ndarray) -> None:
        """Adds a uint8 [B, H, W, C] batch."""
        batch = streams.check_batch(batch)
        b, h, w, c = batch.shape
        if (h, w, c) != (self.resolution, self.resolution, self.channels):
            raise ValueError(f"expected images of shape {(self.resolution,) * 2 + (self.channels,)}, "
                             f"got {batch.shape[1:]}")
        if self.filled + b > self.num_images:
            raise ValueError(f"more than the {self.num_images} images this accumulator was made for")
        start, stop = self.filled * NHOODS_PER_IMAGE, (self.filled + b) * NHOODS_PER_IMAGE
        pyramid = laplacian_pyramid(batch, len(self.resolutions))
        for lod, level in enumerate(pyramid):
            xs, ys = self.positions[lod]
            out = self._data[lod][:, start:stop]
            extract_descriptors(level, xs[self.filled:self.filled + b], ys[self.filled:self.filled + b],
                                out=out)
            self._moments[lod].update(out.reshape(self.channels, -1, stop - start))
        self.filled += b

    def finalize(self) -> List[LevelDescriptors]:
        """The descriptors of every level (views, no copy), finest level first."""
        if self.filled == 0:
            raise ValueError("no images were added")
        if self.filled < self.num_images:
            logging.warning("SWD: got %d images, expected %d", self.filled, self.num_images)
        n = self.filled * NHOODS_PER_IMAGE
        levels = []
        for res, data, moments in zip(self.resolutions, self._data, self._moments):
            mean, std = moments.mean_std()
            levels.append(LevelDescriptors(res, data[:, :n], mean, std))
        return levels


class SWDAccumulator:
    """`SWDDescriptors` of a set whose image size is only known from its first batch.

    ``statistics()`` gives the descriptors as named arrays (`levels_to_arrays`),
    which is what the statistics cache stores.
    """

    def __init__(self, num_images: int, seed: int = 0):
        self.num_images, self.seed = int(num_images), int(seed)
        self.descriptors: Optional[SWDDescriptors] = None

    def add(self, batch: np.ndarray) -> None:
        if self.descriptors is None:
            self.descriptors = SWDDescriptors.for_batch(self.num_images, batch, self.seed)
        self.descriptors.add(batch)

    def levels(self) -> List[LevelDescriptors]:
        if self.descriptors is None:
            raise ValueError("no images were added")
        return self.descriptors.finalize()

    def statistics(self) -> Dict[str, np.ndarray]:
        return levels_to_arrays(self.levels())


def levels_to_arrays(levels: Sequence[LevelDescriptors]) -> Dict[str, np.ndarray]:
    """``data_<res>``, ``mean_<res>`` and ``std_<res>`` for every level (the cache's layout)."""
    arrays = {}
    for level in levels:
        arrays[f"data_{level.resolution}"] = level.data
        arrays[f"mean_{level.resolution}"] = level.mean
        arrays[f"std_{level.resolution}"] = level.std
    return arrays


def levels_from_arrays(arrays: Dict[str, np.ndarray]) -> List[LevelDescriptors]:
    """Inverse of `levels_to_arrays`, finest level first."""
    resolutions = sorted((int(k.split("_")[1]) for k in arrays if k.startswith("data_")), reverse=True)
    return [LevelDescriptors(r, arrays[f"data_{r}"], np.asarray(arrays[f"mean_{r}"]),
                             np.asarray(arrays[f"std_{r}"])) for r in resolutions]


def compute_descriptors(batches: streams.ImageStream, num_images: int, seed: int = 0,
                        progress: Optional[str] = "SWD descriptors") -> List[LevelDescriptors]:
    """Descriptors of exactly `num_images` images of a stream (see `SWDDescriptors`)."""
    stream = streams.take_images(batches, num_images)
    if progress:
        stream = streams.with_progress(stream, num_images, progress)
    accumulator = SWDAccumulator(num_images, seed)
    for batch in stream:
        accumulator.add(batch)
    return accumulator.levels()


# --------------------------------------------------------------------------- distance

def draw_directions(seed: int, level_index: int, repeats: int = DIR_REPEATS,
                    dirs_per_repeat: int = DIRS_PER_REPEAT,
                    dim: int = DESCRIPTOR_CHANNELS * NHOOD_SIZE * NHOOD_SIZE) -> np.ndarray:
    """Random unit directions [repeats, dim, dirs_per_repeat], float32 (normalised in float64)."""
    rng = np.random.default_rng([seed, 1, level_index])
    dirs = []
    for _ in range(repeats):
        d = rng.standard_normal((dim, dirs_per_repeat))
        d /= np.sqrt(np.sum(np.square(d), axis=0, keepdims=True))
        dirs.append(d.astype(np.float32))
    return np.stack(dirs)


def projection_weights(directions: np.ndarray, level: LevelDescriptors) -> Tuple[np.ndarray, np.ndarray]:
    """Folds the per-channel normalisation (and grayscale tiling) into the directions.

    For directions D [147, K] returns W [K, C*49] float32 and bias [K] float64
    with ``W @ x - bias == D.T @ normalised(tile(x))`` for a raw descriptor x.
    """
    per_channel = NHOOD_SIZE * NHOOD_SIZE
    dirs = directions.astype(np.float64).reshape(DESCRIPTOR_CHANNELS, per_channel, -1)
    if level.channels == 1:
        dirs = dirs.sum(axis=0, keepdims=True)  # three identical channels see the same values
    elif level.channels != DESCRIPTOR_CHANNELS:
        raise ValueError(f"descriptors must have 1 or 3 channels, got {level.channels}")
    # A constant channel (std 0, e.g. blank generated images) normalises to 0 instead of NaN.
    std = np.where(level.std > 0, level.std, 1.0)
    scaled = dirs / std[:, None, None]
    bias = np.einsum("c,cfk->k", level.mean, scaled)
    weights = scaled.reshape(level.channels * per_channel, -1).T
    return np.ascontiguousarray(weights, dtype=np.float32), bias


def _blas_single_thread() -> None:
    """Limits OpenBLAS (as bundled with NumPy) to one thread for the calling thread.

    The SWD workers already use every core; nested BLAS threads only contend.
    Best effort: silently does nothing when the symbol is not available.
    """
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*.so*"))
    for path in libs:
        try:
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local")
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn(1)
        return


def default_num_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _block_rows(count: int, budget_bytes: int = 768 << 20) -> int:
    """Directions per block: two [K, count] float32 buffers per worker within about `budget_bytes`.

    Taller blocks make the projection GEMM faster (measured with OpenBLAS, one
    thread, 1.28M descriptors: 70 GFLOP/s at K = 16, 104 at K = 64).
    """
    rows = DIRS_PER_REPEAT
    while rows > 1 and 2 * rows * count * 4 > budget_bytes:
        rows //= 2
    return rows


def _sorted_abs_diff_sum(a: np.ndarray, wa: np.ndarray, ba: np.ndarray,
                         b: np.ndarray, wb: np.ndarray, bb: np.ndarray,
                         buffers: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """Sum over directions and ranks of |sort(proj_a) - sort(proj_b)| for one block of directions."""
    k = len(wa)
    pa, pb, tmp = buffers[0][:k], buffers[1][:k], buffers[2]
    np.matmul(wa, a, out=pa)
    pa.sort(axis=1)
    np.matmul(wb, b, out=pb)
    pb.sort(axis=1)
    shift = (ba - bb).astype(np.float32)  # the biases move whole sorted rows
    total = 0.0
    for i in range(k):
        np.subtract(pa[i], pb[i], out=tmp)
        tmp -= shift[i]
        np.abs(tmp, out=tmp)
        total += float(tmp.sum())
    return total


def sliced_wasserstein_levels(levels_a: Sequence[LevelDescriptors], levels_b: Sequence[LevelDescriptors],
                              directions: Sequence[np.ndarray], num_threads: Optional[int] = None
                              ) -> List[float]:
    """Sliced Wasserstein distance per level (not scaled), averaged over the direction repeats.

    `directions[l]` is [repeats, 147, K] for level l. Sets must have the same
    number of descriptors per level, as in the original.
    """
    if len(levels_a) != len(levels_b) or len(levels_a) != len(directions):
        raise ValueError("both sets need the same pyramid levels")
    for la, lb in zip(levels_a, levels_b):
        if la.count != lb.count or la.resolution != lb.resolution:
            raise ValueError(f"SWD needs equal sets: {la.count} vs {lb.count} descriptors "
                             f"at {la.resolution} vs {lb.resolution}")
    count = levels_a[0].count
    rows = _block_rows(count)
    tasks = []
    for lod, (la, lb, dirs) in enumerate(zip(levels_a, levels_b, directions)):
        for rep, d in enumerate(dirs):
            wa, ba = projection_weights(d, la)
            wb, bb = projection_weights(d, lb)
            for s in range(0, d.shape[1], rows):
                tasks.append((lod, rep, la.data, wa[s:s + rows], ba[s:s + rows],
                              lb.data, wb[s:s + rows], bb[s:s + rows]))
    num_threads = min(num_threads or default_num_threads(), len(tasks))

    def worker(share):
        _blas_single_thread()
        buffers = (np.empty((rows, count), np.float32), np.empty((rows, count), np.float32),
                   np.empty(count, np.float32))
        return [(t[0], t[1], _sorted_abs_diff_sum(*t[2:], buffers)) for t in share]

    sums = np.zeros((len(levels_a), len(directions[0])))
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        for results in pool.map(worker, [tasks[i::num_threads] for i in range(num_threads)]):
            for lod, rep, total in results:
                sums[lod, rep] += total
    per_repeat = sums / (count * np.array([d.shape[2] for d in directions])[:, None])
    return [float(x) for x in per_repeat.mean(axis=1)]


def swd_from_descriptors(levels_a: Sequence[LevelDescriptors], levels_b: Sequence[LevelDescriptors],
                         seed: int = 0, num_threads: Optional[int] = None) -> Dict[str, float]:
    """``{'SWDx1e3_<res>': ..., 'SWDx1e3_avg': ...}`` for two descriptor sets."""
    directions = [draw_directions(seed, lod) for lod in range(len(levels_a))]
    dists = [d * 1e3 for d in sliced_wasserstein_levels(levels_a, levels_b, directions, num_threads)]
    result = {f"SWDx1e3_{level.resolution}": d for level, d in zip(levels_a, dists)}
    result["SWDx1e3_avg"] = float(np.mean(dists))
    return result


def swd(batches_a: streams.ImageStream, batches_b: streams.ImageStream, num_images: int,
        seed: int = 0, num_threads: Optional[int] = None) -> Dict[str, float]:
    """SWD between the first `num_images` images of two streams."""
    levels_a = compute_descriptors(batches_a, num_images, seed, progress="SWD set A")
    levels_b = compute_descriptors(batches_b, num_images, seed, progress="SWD set B")
    return swd_from_descriptors(levels_a, levels_b, seed, num_threads)

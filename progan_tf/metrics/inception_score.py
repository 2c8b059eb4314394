"""Inception score (Salimans et al. 2016) from class probabilities, 10 splits.

IS = exp(E_x KL(p(y|x) || p(y))), computed on each of `splits` consecutive
parts of the image set (part k holds images [k N / splits, (k+1) N / splits),
as in the reference code) and reported as mean and standard deviation over
the parts. The probabilities come from a `fid.FeatureExtractor` with a 'probs'
output (Keras InceptionV3 with its top).

The accumulator streams: per part it keeps only sum_x p(y|x) and
sum_x sum_y p log p, because
``E_x KL(p(y|x) || p(y)) = E_x sum_y p log p - sum_y pbar log pbar`` with pbar
the part's mean of p(y|x). 0 log 0 counts as 0.
"""
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
from scipy.special import xlogy

from progan_tf.metrics import fid as fid_lib

DEFAULT_SPLITS = 10


class InceptionScoreAccumulator:
    """Streaming Inception score over exactly `num_images` probability vectors."""

    def __init__(self, num_images: int, splits: int = DEFAULT_SPLITS):
        if num_images < splits:
            raise ValueError(f"need at least {splits} images for {splits} splits, got {num_images}")
        self.num_images = int(num_images)
        self.splits = int(splits)
        self.bounds = [k * self.num_images // self.splits for k in range(self.splits + 1)]
        self.count = 0
        self._sum_p = None
        self._sum_plogp = np.zeros(self.splits)

    def add(self, probs) -> None:
        """Adds the [B, classes] probabilities of the next B images."""
        p = np.asarray(probs, np.float64)
        if self._sum_p is None:
            self._sum_p = np.zeros((self.splits, p.shape[1]))
        if self.count + len(p) > self.num_images:
            raise ValueError(f"more than the {self.num_images} images this accumulator was made for")
        start, stop = self.count, self.count + len(p)
        for k in range(self.splits):  # the batch covers consecutive images, so slices of it
            lo, hi = max(self.bounds[k], start), min(self.bounds[k + 1], stop)
            if lo < hi:
                part = p[lo - start:hi - start]
                self._sum_p[k] += part.sum(axis=0)
                self._sum_plogp[k] += xlogy(part, part).sum()
        self.count = stop

    def result(self) -> Tuple[float, float]:
        """(mean, std) of the per-part scores."""
        if self.count != self.num_images:
            raise ValueError(f"got {self.count} of {self.num_images} images")
        sizes = np.diff(self.bounds).astype(np.float64)
        pbar = self._sum_p / sizes[:, None]
        kl = self._sum_plogp / sizes - xlogy(pbar, pbar).sum(axis=1)
        scores = np.exp(kl)
        return float(np.mean(scores)), float(np.std(scores))

    def statistics(self) -> Dict[str, np.ndarray]:
        """``score``: the array [mean, std] of `result` (cacheable)."""
        return {"score": np.array(self.result())}


def inception_score_from_probs(probs: np.ndarray, splits: int = DEFAULT_SPLITS) -> Tuple[float, float]:
    acc = InceptionScoreAccumulator(len(probs), splits)
    acc.add(probs)
    return acc.result()


def inception_score(batches: Iterable[np.ndarray], num_images: int, extractor: "fid_lib.FeatureExtractor",
                    splits: int = DEFAULT_SPLITS, progress: Optional[str] = "Inception score"
                    ) -> Tuple[float, float]:
    """Inception score of the first `num_images` images of a stream."""
    acc = InceptionScoreAccumulator(num_images, splits)
    fid_lib.run_extractor(batches, num_images, extractor, {"probs": acc.add}, progress)
    return acc.result()


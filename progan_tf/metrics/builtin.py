"""The built-in metrics of Karras et al. 2018, registered in the order of their result columns.

Each is a thin `Metric` over its own module, which holds the computation and
the accumulator:

* ``swd`` (`swd`): ``SWDx1e3_<res>`` per pyramid level and ``SWDx1e3_avg``;
  a set's statistics are its descriptors.
* ``fid`` (`fid`): ``FID``; the mean and covariance of the set's features.
* ``is`` (`inception_score`): ``IS``, ``IS_std``, ``IS_ref``, ``IS_ref_std``;
  the set's score and its std over the splits.
* ``msssim`` (`ms_ssim`): ``MS-SSIM``, ``MS-SSIM_ref``; the mean over the set's pairs.

SWD and FID compare the two sets; IS and MS-SSIM describe each set on its
own (``_ref``: the reference set). The statistics ids are part of the cache
keys of real-image statistics; changing one only makes old entries unused.
"""
from typing import Dict, Optional

from progan_tf.metrics import fid, inception_score, ms_ssim, swd
from progan_tf.metrics.registry import Arrays, Features, Metric, register_metric


@register_metric
class SlicedWasserstein(Metric):
    """Sliced Wasserstein distance on Laplacian pyramids, x1e3 per level and averaged."""
    name, title = "swd", "SWD"

    def statistics_id(self, extractor_name: Optional[str]) -> str:
        return f"nh{swd.NHOODS_PER_IMAGE}-seed{self.settings.seed}"

    def accumulator(self) -> swd.SWDAccumulator:
        return swd.SWDAccumulator(self.settings.num_images, self.settings.seed)

    def results(self, reference: Arrays, evaluated: Arrays) -> Dict[str, float]:
        return swd.swd_from_descriptors(swd.levels_from_arrays(reference), swd.levels_from_arrays(evaluated),
                                        self.settings.seed, self.settings.num_threads)


@register_metric
class FrechetInceptionDistance(Metric):
    """FID between the Gaussians fitted to the two sets' features."""
    name, title = "fid", "FID"
    needs = Features("features", extractor="fid")

    def accumulator(self) -> fid.GaussianStats:
        return fid.GaussianStats()

    def results(self, reference: Arrays, evaluated: Arrays) -> Dict[str, float]:
        return {"FID": fid.frechet_distance(reference["mean"], reference["cov"], evaluated["mean"], evaluated["cov"])}


@register_metric
class InceptionScore(Metric):
    """Inception score of each set: mean and std over 10 splits."""
    name, title = "is", "IS"
    needs = Features("probs", extractor="inception")

    def accumulator(self) -> inception_score.InceptionScoreAccumulator:
        return inception_score.InceptionScoreAccumulator(self.settings.num_images)

    def results(self, reference: Arrays, evaluated: Arrays) -> Dict[str, float]:
        (score, std), (ref_score, ref_std) = (evaluated["score"], reference["score"])
        return {"IS": float(score), "IS_std": float(std), "IS_ref": float(ref_score), "IS_ref_std": float(ref_std)}


@register_metric
class MultiScaleSSIM(Metric):
    """Mean MS-SSIM over random pairs within each set (a measure of variation)."""
    name, title = "msssim", "MS-SSIM"

    def accumulator(self) -> ms_ssim.MSSSIMAccumulator:
        return ms_ssim.MSSSIMAccumulator(self.settings.seed)

    def results(self, reference: Arrays, evaluated: Arrays) -> Dict[str, float]:
        return {"MS-SSIM": float(evaluated["value"]), "MS-SSIM_ref": float(reference["value"])}

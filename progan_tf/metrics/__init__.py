"""Evaluation metrics of Karras et al. 2018: SWD, MS-SSIM, FID and Inception score.

Modules (import the one you need; none loads TensorFlow at import time):

* `registry`: the metric protocol (`Metric`, its accumulator's ``add``/``statistics``) and
  `register_metric`; adding a metric is one registered `Metric` subclass.
* `builtin`: the registered built-in metrics swd, fid, is, msssim over the modules below.
* `streams`: helpers for streams of uint8 NHWC batches, which every metric consumes.
* `swd`: sliced Wasserstein distance on Laplacian pyramids (NumPy/SciPy).
* `fid`: Frechet distance and feature extractors (Keras InceptionV3, SavedModel, any Keras model).
* `inception_score`: Inception score from class probabilities.
* `ms_ssim`: multi-scale SSIM over random pairs of a set.
* `extractors`: which feature extractor a metric's needs resolve to (``--feature_extractor``, Inception).
* `cache`: on-disk cache of real-image statistics.
* `evaluate`: image sources (dataset slices, generator functions) and the `Evaluator`: every
  requested metric from one pass over each image set.
* `generators`: fakes from checkpoints, run directories and SavedModels (seeded latents and labels).
* `runs`: evaluating every checkpoint of a run, metric-<name>.txt and TensorBoard logs, `PeriodicMetrics`.
* `cli`: the `progan-metrics` command.
"""

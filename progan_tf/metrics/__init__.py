"""Evaluation metrics of Karras et al. 2018: SWD, MS-SSIM, FID and Inception score.

Modules (import the one you need; only `fid` and `inception_score` load TensorFlow):

* `streams`: helpers for streams of uint8 NHWC batches, which every metric consumes.
* `swd`: sliced Wasserstein distance on Laplacian pyramids (NumPy/SciPy).
* `fid`: Frechet distance and feature extractors (Keras InceptionV3, SavedModel, any Keras model).
* `inception_score`: Inception score from class probabilities.
* `ms_ssim`: multi-scale SSIM over random pairs of a set.
* `cache`: on-disk cache of real-image statistics.
* `evaluate`: image sources (dataset slices, generator functions) and the `Evaluator` the CLI runs.
* `generators`: fakes from checkpoints, run directories and SavedModels (seeded latents and labels).
* `runs`: evaluating every checkpoint of a run, metric-<name>.txt and TensorBoard logs, `PeriodicMetrics`.
* `cli`: the `progan-metrics` command.
"""

"""Evaluating trained generators: every checkpoint of a run, one checkpoint or SavedModel, or during training.

Results go to ``metric-<name>.txt`` in the run directory (one file per metric,
one line per evaluation: snapshot name, kimg, image count, seconds, values, as
the original's ``evaluate_metrics`` logs) and to TensorBoard scalars
``Metrics/<key>`` at step = whole kimg, next to the trainer's own scalars.
Real-image statistics come from the dataset's statistics cache, so after the
first evaluation only the fakes are paid for.
"""
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging

from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import evaluate, generators, registry


def cache_dir_for(dataset_dir: str, fallback_dir: Optional[str] = None) -> str:
    """``<dataset_dir>/.metrics-cache``, or ``<fallback_dir>/.metrics-cache`` if the dataset is read-only."""
    if fallback_dir is not None and not os.access(dataset_dir, os.W_OK):
        logging.info("%s is read-only: caching real statistics under %s", dataset_dir, fallback_dir)
        return cache_lib.default_cache_dir(fallback_dir)
    return cache_lib.default_cache_dir(dataset_dir)


# --------------------------------------------------------------------------- logs

def append_metric_line(path: str, name: str, kimg: Optional[float], num_images: int, seconds: float,
                       values: Dict[str, float]) -> None:
    """One line per evaluation; a header first when the file is new. Refuses a file with other columns."""
    columns = list(values)
    header = f"{'Snapshot':<24}{'kimg':<10}{'Images':<10}{'Time_eval':<12}" + "".join(f"{c:<16}" for c in columns)
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path) as f:
            existing = f.readline().split()
        if existing != header.split():
            raise ValueError(f"{path} has columns {existing[4:]}, this evaluation {columns}; "
                             "move the file away or write to another one")
    kimg_text = "-" if kimg is None else f"{kimg:.1f}"
    line = (f"{name:<24}{kimg_text:<10}{num_images:<10}{seconds:<12.1f}"
            + "".join(f"{v:<16.4f}" for v in values.values()))
    with open(path, "a") as f:
        if new:
            f.write(header + "\n")
        f.write(line + "\n")


class MetricsLog:
    """Writes evaluations to ``<directory>/metric-<name>.txt`` and TensorBoard scalars in `directory`."""

    def __init__(self, directory: str, metrics: Sequence[str], summary_writer=None):
        self.directory = directory
        self.metrics = list(metrics)
        self._writer = summary_writer
        self._own_writer = summary_writer is None  # never close the trainer's writer

    def path(self, metric: str) -> str:
        return os.path.join(self.directory, f"metric-{metric}.txt")

    def _summary_writer(self):
        if self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.directory)
        return self._writer

    def write(self, name: str, kimg: Optional[float], num_images: int, seconds: float,
              by_metric: evaluate.ResultsByMetric) -> None:
        """One line in each metric's file; TensorBoard scalars of every value (unless `kimg` is None)."""
        os.makedirs(self.directory, exist_ok=True)
        for metric in self.metrics:
            append_metric_line(self.path(metric), name, kimg, num_images, seconds, by_metric[metric])
        if kimg is None:  # a SavedModel: no training step to plot against
            return
        import tensorflow as tf

        writer = self._summary_writer()
        with writer.as_default(step=int(round(kimg * 1000)) // 1000):  # whole kimg, as the trainer's scalars
            for key, value in evaluate.flatten_results(by_metric).items():
                tf.summary.scalar(f"Metrics/{key}", value)
        writer.flush()

    def close(self):
        if self._writer is not None and self._own_writer:
            self._writer.close()
            self._writer = None


# --------------------------------------------------------------------------- evaluating generators

def evaluate_generate_fn(evaluator: evaluate.Evaluator, reference: evaluate.ImageSource,
                         generate, label: str):
    """``(results by metric, seconds)`` of one generator function against the reference images."""
    start = time.time()
    by_metric = evaluator.evaluate_by_metric(reference, evaluate.generator_source(generate, label))
    return by_metric, time.time() - start


def evaluate_targets(targets: List[generators.Target], evaluator: evaluate.Evaluator,
                     reference: evaluate.ImageSource, dataset_dir: str, log: Optional[MetricsLog],
                     resolution: Optional[int] = None, on_result=None) -> List[Dict[str, float]]:
    """Evaluates checkpoints / SavedModels in the given order, logging each as soon as it is done.

    `on_result(target, result, seconds)` is called after each (the CLI prints a row).
    Returns the results of the targets evaluated (a checkpoint deleted meanwhile is skipped, and
    so, with a warning naming it, is a damaged one among several; `TargetError` if all are).
    """
    results, damaged = [], []
    for target in targets:
        if target.kind == "checkpoint" and not os.path.exists(target.path + ".index"):
            # A run still training deletes old checkpoints (train.keep_checkpoints) while we work.
            logging.warning("%s was deleted since the run directory was listed; skipping it", target.path)
            continue
        try:
            _, generate = generators.load_target(target, evaluator.seed, dataset_dir, resolution)
        except generators.DamagedTargetError as e:
            if len(targets) == 1:
                raise
            logging.warning("%s; skipping it", e)
            damaged.append(target.name)
            continue
        by_metric, seconds = evaluate_generate_fn(evaluator, reference, generate, target.name)
        result = evaluate.flatten_results(by_metric)
        logging.info("%s: %s (%.1f s)", target.name, result, seconds)
        if log is not None:
            log.write(target.name, target.kimg, evaluator.num_images, seconds, by_metric)
        if on_result is not None:
            on_result(target, result, seconds)
        results.append(result)
    if damaged and not results:
        raise generators.TargetError(f"no checkpoint restores; damaged or unreadable: {', '.join(damaged)}")
    return results


class PeriodicMetrics:
    """Metrics of the trainer's Gs every few ticks: ``PeriodicMetrics(...)(Gs, kimg)`` -> result dict.

    Checks the metric names and image count against the dataset, and builds
    the FID/IS feature extractors, at construction: a bad configuration fails
    before training (ValueError, or `fid.ExtractorError` for missing weights)
    rather than at the first evaluation.
    The reals' statistics are computed on the first call and cached (under the
    dataset, or under the run directory if the dataset is read-only).
    """

    def __init__(self, dataset_dir: str, metrics: Sequence[str], num_images: int, run_dir: str, seed: int = 0,
                 batch_size: int = 256, extractor_options: Optional[evaluate.ExtractorOptions] = None,
                 cache_dir: Optional[str] = None, summary_writer=None):
        from progan_tf.datasets import reader as data

        metrics = registry.resolve_names(metrics)  # a list, or the config's comma list, e.g. "swd,fid"
        if not metrics:
            raise ValueError(f"PeriodicMetrics needs at least one metric ({', '.join(registry.metric_names())})")
        info = data.read_dataset_info(dataset_dir)
        if info.num_images < num_images:
            raise ValueError(f"metrics on {num_images} images: dataset {dataset_dir} has only {info.num_images}")
        self.dataset_dir = dataset_dir
        self.seed = int(seed)
        self.evaluator = evaluate.Evaluator(metrics, num_images, batch_size, seed,
                                            extractor_options=extractor_options, progress=False)
        self.evaluator.prepare()  # missing Inception weights: an error now, not at the first evaluation
        cache = cache_lib.StatsCache(cache_dir or cache_dir_for(dataset_dir, run_dir))
        self.reference = evaluate.dataset_source(dataset_dir, 0, None, cache)
        self.log = MetricsLog(run_dir, metrics, summary_writer)
        self._generator = None
        self._generate = None

    def _generate_fn(self, generator):
        """One traced generate function per generator object (the trainer passes the same Gs each time)."""
        if generator is not self._generator:
            spec = generators.GeneratorSpec(getattr(generator, "name", "Gs"), generator.resolution,
                                            generator.num_channels, generator.latent_size, generator.label_size)
            generators.check_generator_fits_dataset(spec, self.dataset_dir)
            pool = generators.label_pool_for(generator.label_size, self.dataset_dir, spec.name)
            self._generate = generators.keras_generate_fn(generator, self.seed, pool)
            self._generator = generator
        return self._generate

    def __call__(self, generator, kimg: float, name: Optional[str] = None) -> Dict[str, float]:
        """Evaluates `generator` at its full resolution; logs under `name` (default ``train-<nimg>``)."""
        name = name or f"train-{int(round(kimg * 1000))}"
        by_metric, seconds = evaluate_generate_fn(self.evaluator, self.reference, self._generate_fn(generator), name)
        self.log.write(name, kimg, self.evaluator.num_images, seconds, by_metric)
        result = evaluate.flatten_results(by_metric)
        logging.info("metrics at kimg %.1f (%.1f s): %s", kimg, seconds,
                     " ".join(f"{k} {v:.4f}" for k, v in result.items()))
        return result

    def close(self):
        self.log.close()

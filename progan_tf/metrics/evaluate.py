"""Evaluating metrics between a reference image set and an evaluated one, with cached real statistics.

An `ImageSource` is anything that can stream images: a dataset directory (or
a slice of it, e.g. the second half) or a generator function
``generate(num_images, batch_size) -> iterable of uint8 NHWC batches`` (see
`generators` for those of trained models). Dataset sources are cached; generator
sources never are. All metrics share one pass over each source (`Evaluator.statistics`):
a generator's fakes are made once however many metrics are asked for, and
metrics that need the same feature extractor share its run on each batch.

Metrics are the registered ones (`registry`; the built-in ones are in
`builtin`): ``SWDx1e3_<res>`` ... ``SWDx1e3_avg`` and ``FID`` compare the two
sets; ``IS``/``IS_std`` and ``MS-SSIM`` describe the evaluated set and
``IS_ref``/``IS_ref_std`` and ``MS-SSIM_ref`` the reference set.
"""
import dataclasses
import hashlib
import os
import time
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np
from absl import logging

from progan_tf.metrics import builtin  # noqa: F401  (registers the built-in metrics)
from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import registry, streams
from progan_tf.metrics.extractors import ExtractorOptions, Extractors
from progan_tf.metrics.registry import Arrays, Features, Metric

__all__ = ["ImageSource", "dataset_source", "generator_source", "ExtractorOptions", "Evaluator",
           "ResultsByMetric", "flatten_results"]

ResultsByMetric = Dict[str, Dict[str, float]]  # {metric name: {result key: value}}


@dataclasses.dataclass
class ImageSource:
    """A stream of images: `open(num_images, batch_size)` yields exactly `num_images` images.

    `cache_id`, `resolution` and `offset` identify a dataset slice in cache
    keys; `cache` is where its statistics go (None: never cached).
    """
    label: str
    open: Callable[[int, int], Iterable[np.ndarray]]
    cache_id: Optional[str] = None
    resolution: Optional[int] = None
    offset: int = 0
    available: Optional[int] = None
    cache: Optional[cache_lib.StatsCache] = None


def _dataset_fingerprint(info, res_log2: int) -> str:
    """Name plus a short hash of image count and file sizes: a rebuilt dataset gets new cache keys."""
    sizes = [os.path.getsize(f) for f in info.files[res_log2]]
    digest = hashlib.sha1(repr((info.num_images, info.channels, sizes)).encode()).hexdigest()[:8]
    return f"{info.name}-{digest}"


def dataset_source(dataset_dir: str, offset: int = 0, res_log2: Optional[int] = None,
                   cache: Optional[cache_lib.StatsCache] = None, label: Optional[str] = None) -> ImageSource:
    """Images `offset`, `offset + 1`, ... of a dataset directory in file order (top level by default)."""
    from progan_tf.datasets import reader as data  # lazily: it loads TensorFlow

    info = data.read_dataset_info(dataset_dir)
    level = info.resolution_log2 if res_log2 is None else int(res_log2)
    if level not in info.files:
        raise ValueError(f"{dataset_dir} has no {2 ** level}x{2 ** level} level; it has {info.levels}")

    def open_images(num_images: int, batch_size: int):
        if offset + num_images > info.num_images:
            raise ValueError(f"{dataset_dir} has {info.num_images} images; images {offset}.."
                             f"{offset + num_images - 1} were asked for")
        batches = (images for images, _ in data.iterate_images(info, level, batch_size,
                                                                 max_images=offset + num_images))
        return streams.take_images(batches, num_images, skip=offset)

    label = label or (f"{info.name}[{offset}:]" if offset else info.name)
    return ImageSource(label, open_images, _dataset_fingerprint(info, level), 2 ** level, offset,
                       info.num_images - offset, cache)


def generator_source(generate: streams.GenerateFn, label: str) -> ImageSource:
    """A source over `generate(num_images, batch_size)`; never cached."""
    return ImageSource(label, lambda n, b: streams.take_images(generate(n, b), n))


# --------------------------------------------------------------------------- one pass, many metrics

class _ImageFeed:
    """One image metric's accumulator, fed the batches themselves."""

    def __init__(self, metric: Metric):
        self.title = metric.title or metric.name
        self.accumulators = {metric.name: metric.accumulator()}

    def add(self, batch: np.ndarray) -> None:
        for accumulator in self.accumulators.values():
            accumulator.add(batch)


class _ExtractorFeed:
    """The accumulators of every metric that needs one extractor: it runs once per batch for all of them."""

    def __init__(self, extractor):
        self.title = extractor.name
        self.extractor = extractor
        self.accumulators, self.outputs = {}, {}

    def join(self, metric: Metric) -> None:
        self.accumulators[metric.name] = metric.accumulator()
        self.outputs[metric.name] = metric.needs.output

    def add(self, batch: np.ndarray) -> None:
        outputs = self.extractor(batch)
        for name, accumulator in self.accumulators.items():
            accumulator.add(outputs[self.outputs[name]])


def flatten_results(by_metric: ResultsByMetric) -> Dict[str, float]:
    """One dict of all metrics' values, in metric order; ValueError if two metrics report the same key."""
    flat = {}
    for name, values in by_metric.items():
        clash = set(values) & set(flat)
        if clash:
            raise ValueError(f"metric {name!r} reports key(s) {sorted(clash)} that another metric reports too")
        flat.update(values)
    return flat


class Evaluator:
    """Computes the chosen metrics on `num_images` images per set, caching dataset statistics.

    `metrics` are registered names (`registry.metric_names()`); results come in
    registration order whatever order they were asked in.
    """

    def __init__(self, metrics: Sequence[str], num_images: int, batch_size: int = 256, seed: int = 0,
                 num_threads: Optional[int] = None, extractor_options: Optional[ExtractorOptions] = None,
                 progress: bool = True):
        self.metrics = registry.resolve_names(metrics)
        self.num_images = int(num_images)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_threads = num_threads
        self.options = extractor_options or ExtractorOptions()
        self.progress = progress
        settings = registry.MetricSettings(self.num_images, self.seed, num_threads)
        order = registry.metric_names()
        self._metrics = [registry.get_metric(name)(settings) for name in sorted(self.metrics, key=order.index)]
        needs = [m.needs for m in self._metrics if isinstance(m.needs, Features)]
        self.extractors = Extractors(self.options, inception_probs=any(n.output == "probs" for n in needs))

    def _extractor(self, metric: Metric):
        return self.extractors.get(metric.needs) if isinstance(metric.needs, Features) else None

    def prepare(self) -> None:
        """Builds the feature extractors the chosen metrics need now (e.g. before training starts),
        so missing Inception weights fail early with `fid.ExtractorError` rather than hours later."""
        for metric in self._metrics:
            self._extractor(metric)

    # -- one pass over a source feeds every metric still missing

    def _stream(self, source: ImageSource, desc: str):
        stream = source.open(self.num_images, self.batch_size)
        return streams.with_progress(stream, self.num_images, f"{desc} {source.label}",
                                     enabled=None if self.progress else False)

    def _cache_key(self, metric: Metric, source: ImageSource) -> Optional[str]:
        if source.cache is None or source.cache_id is None:
            return None
        extractor = self._extractor(metric)
        statistics_id = metric.statistics_id(extractor.name if extractor is not None else None)
        return cache_lib.cache_key(metric.name, source.cache_id, source.resolution, self.num_images,
                                   statistics_id, source.offset)

    def _feeds(self, metrics: Sequence[Metric]) -> list:
        """Image feeds and one extractor feed per extractor (shared by the metrics that need it), in metric order."""
        feeds, by_extractor = [], {}
        for metric in metrics:
            extractor = self._extractor(metric)
            if extractor is None:
                feeds.append(_ImageFeed(metric))
                continue
            if id(extractor) not in by_extractor:
                by_extractor[id(extractor)] = _ExtractorFeed(extractor)
                feeds.append(by_extractor[id(extractor)])
            by_extractor[id(extractor)].join(metric)
        return feeds

    def _compute(self, source: ImageSource, metrics: Sequence[Metric]) -> Dict[str, Arrays]:
        """Statistics of `metrics` from a single pass over the source's images."""
        feeds = self._feeds(metrics)
        titles = "+".join(feed.title for feed in feeds)
        start = time.time()
        for batch in self._stream(source, titles):
            for feed in feeds:
                feed.add(batch)
        stats = {name: acc.statistics() for feed in feeds for name, acc in feed.accumulators.items()}
        logging.info("%s of %s took %.1f s", titles, source.label, time.time() - start)
        return stats

    def statistics(self, source: ImageSource) -> Dict[str, Arrays]:
        """Per-metric statistics of a source (``{"swd": ..., "fid": ..., ...}``).

        Cached statistics are loaded; everything else comes from a single pass
        over the source's images, so a generator's fakes are made once for all
        metrics and a dataset is read once.
        """
        stats, missing, keys = {}, [], {}
        for metric in self._metrics:
            keys[metric.name] = key = self._cache_key(metric, source)
            cached = source.cache.load(key) if key is not None else None
            if cached is None:
                missing.append(metric)
            else:
                stats[metric.name] = cached
        if missing:
            for name, arrays in self._compute(source, missing).items():
                stats[name] = arrays
                if keys[name] is not None:
                    source.cache.save(keys[name], arrays)
        return {m.name: stats[m.name] for m in self._metrics}

    # -- metrics

    def evaluate_by_metric(self, reference: ImageSource, evaluated: ImageSource) -> ResultsByMetric:
        """``{metric name: {result key: value}}`` between `reference` (e.g. reals) and `evaluated` (e.g. fakes)."""
        for source in (reference, evaluated):
            if source.available is not None and source.available < self.num_images:
                raise ValueError(f"{source.label} has {source.available} images, fewer than "
                                 f"--num_images={self.num_images}")
        ref, ev = self.statistics(reference), self.statistics(evaluated)
        return {m.name: m.results(ref[m.name], ev[m.name]) for m in self._metrics}

    def evaluate(self, reference: ImageSource, evaluated: ImageSource) -> Dict[str, float]:
        """All chosen metrics' values between `reference` (e.g. reals) and `evaluated` (e.g. fakes), in one dict."""
        return flatten_results(self.evaluate_by_metric(reference, evaluated))

"""Evaluating metrics between a reference image set and an evaluated one, with cached real statistics.

An `ImageSource` is anything that can stream images: a dataset directory (or
a slice of it, e.g. the second half) or a generator function
``generate(num_images, batch_size) -> iterable of uint8 NHWC batches`` (see
`generators` for those of trained models). Dataset sources are cached; generator
sources never are. All metrics share one pass over each source (`Evaluator.statistics`):
a generator's fakes are made once however many metrics are asked for.

Result keys: ``SWDx1e3_<res>`` ... ``SWDx1e3_avg`` and ``FID`` compare the two
sets; ``IS``/``IS_std`` and ``MS-SSIM`` describe the evaluated set and
``IS_ref``/``IS_ref_std`` and ``MS-SSIM_ref`` the reference set.
"""
import dataclasses
import hashlib
import os
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import streams, swd

METRICS = ("swd", "fid", "is", "msssim")


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
    from progan_tf.datasets import reader as data

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


# --------------------------------------------------------------------------- (de)serialising statistics

def levels_to_arrays(levels: Sequence[swd.LevelDescriptors]) -> Dict[str, np.ndarray]:
    arrays = {}
    for level in levels:
        arrays[f"data_{level.resolution}"] = level.data
        arrays[f"mean_{level.resolution}"] = level.mean
        arrays[f"std_{level.resolution}"] = level.std
    return arrays


def levels_from_arrays(arrays: Dict[str, np.ndarray]) -> List[swd.LevelDescriptors]:
    resolutions = sorted((int(k.split("_")[1]) for k in arrays if k.startswith("data_")), reverse=True)
    return [swd.LevelDescriptors(r, arrays[f"data_{r}"], np.asarray(arrays[f"mean_{r}"]),
                                 np.asarray(arrays[f"std_{r}"])) for r in resolutions]


# --------------------------------------------------------------------------- evaluator

@dataclasses.dataclass
class ExtractorOptions:
    """Where FID features and Inception-score probabilities come from (see `fid`)."""
    inception_weights: str = "imagenet"
    feature_extractor: Optional[str] = None  # SavedModel directory or .keras/.h5 file, for FID
    extractor_output: Optional[str] = None   # SavedModel output key, or Keras layer name
    input_range: Tuple[float, float] = (-1.0, 1.0)
    input_size: Optional[int] = None         # SavedModel input size if its signature does not say
    batch_size: int = 64


class Evaluator:
    """Computes the chosen metrics on `num_images` images per set, caching dataset statistics."""

    def __init__(self, metrics: Sequence[str], num_images: int, batch_size: int = 256, seed: int = 0,
                 num_threads: Optional[int] = None, extractor_options: Optional[ExtractorOptions] = None,
                 progress: bool = True):
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {', '.join(METRICS)}")
        self.metrics = list(metrics)
        self.num_images = int(num_images)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_threads = num_threads
        self.options = extractor_options or ExtractorOptions()
        self.progress = progress
        self._extractors = {}

    # -- extractors (built lazily, once)

    def _inception(self, with_probs: bool):
        from progan_tf.metrics import fid

        key = ("inception", with_probs)
        if key not in self._extractors:
            self._extractors[key] = fid.inception_v3_extractor(
                self.options.inception_weights, with_probs=with_probs, batch_size=self.options.batch_size)
        return self._extractors[key]

    def _fid_extractor(self):
        from progan_tf.metrics import fid

        path = self.options.feature_extractor
        if path is None:
            return self._inception(with_probs="is" in self.metrics)
        if "custom" not in self._extractors:
            o = self.options
            if os.path.isdir(path):
                ex = fid.saved_model_extractor(path, o.input_size, o.input_range, o.extractor_output, o.batch_size)
            elif os.path.isfile(path):
                ex = fid.keras_model_extractor(path, o.input_range, o.extractor_output, batch_size=o.batch_size)
            else:
                raise fid.ExtractorError(f"--feature_extractor not found: {path}")
            self._extractors["custom"] = ex
        return self._extractors["custom"]

    def prepare(self) -> None:
        """Builds the feature extractors the chosen metrics need now (e.g. before training starts),
        so missing Inception weights fail early with `fid.ExtractorError` rather than hours later."""
        if "fid" in self.metrics:
            self._fid_extractor()
        if "is" in self.metrics:
            self._inception(with_probs=True)

    # -- one pass over a source feeds every metric still missing

    def _stream(self, source: ImageSource, desc: str):
        stream = source.open(self.num_images, self.batch_size)
        return streams.with_progress(stream, self.num_images, f"{desc} {source.label}",
                                     enabled=None if self.progress else False)

    def _key(self, metric: str, extractor_id: str, source: ImageSource) -> Optional[str]:
        if source.cache is None or source.cache_id is None:
            return None
        return cache_lib.cache_key(metric, source.cache_id, source.resolution, self.num_images,
                                   extractor_id, source.offset)

    def _consumers(self):
        """``(metrics, statistic id, make consumer)`` for every statistic the chosen metrics need.

        FID and IS share one consumer when both use Inception (one pass of the
        network with the top); each statistic is cached under its own key.
        """
        plan = []
        if "swd" in self.metrics:
            plan.append((["swd"], f"nh{swd.NHOODS_PER_IMAGE}-seed{self.seed}",
                         lambda: _SWDConsumer(self.num_images, self.seed)))
        groups = []  # (extractor, [metrics])
        if "fid" in self.metrics:
            groups.append((self._fid_extractor(), ["fid"]))
        if "is" in self.metrics:
            inception = self._inception(with_probs=True)
            if groups and groups[0][0] is inception:
                groups[0][1].append("is")
            else:
                groups.append((inception, ["is"]))
        for extractor, metrics in groups:
            plan.append((metrics, extractor.name,
                         lambda e=extractor, m=tuple(metrics): _ExtractorConsumer(e, m, self.num_images)))
        if "msssim" in self.metrics:
            plan.append((["msssim"], f"seed{self.seed}", lambda: _MSSSIMConsumer(self.seed)))
        return plan

    def statistics(self, source: ImageSource) -> Dict[str, Dict[str, np.ndarray]]:
        """Per-metric statistics of a source (``{"swd": ..., "fid": ..., "is": ..., "msssim": ...}``).

        Cached statistics are loaded; everything else comes from a single pass
        over the source's images, so a generator's fakes are made once for all
        metrics and a dataset is read once.
        """
        results, consumers, keys = {}, [], {}
        for metrics, statistic_id, make in self._consumers():
            missing = []
            for m in metrics:
                keys[m] = self._key(m, statistic_id, source)
                cached = source.cache.load(keys[m]) if keys[m] is not None else None
                if cached is None:
                    missing.append(m)
                else:
                    results[m] = cached
            if missing:
                consumers.append(make())
        if consumers:
            start = time.time()
            names = "+".join(c.name for c in consumers)
            for batch in self._stream(source, names):
                for consumer in consumers:
                    consumer.add(batch)
            for consumer in consumers:
                for m, arrays in consumer.results().items():
                    if m in results:
                        continue   # cached already (FID and IS share a pass, one may be cached)
                    results[m] = arrays
                    if keys[m] is not None:
                        source.cache.save(keys[m], arrays)
            logging.info("%s of %s took %.1f s", names, source.label, time.time() - start)
        return results

    # -- metrics

    def evaluate(self, reference: ImageSource, evaluated: ImageSource) -> Dict[str, float]:
        """All chosen metrics between `reference` (e.g. reals) and `evaluated` (e.g. fakes)."""
        from progan_tf.metrics import fid

        for source in (reference, evaluated):
            if source.available is not None and source.available < self.num_images:
                raise ValueError(f"{source.label} has {source.available} images, fewer than "
                                 f"--num_images={self.num_images}")
        ref, ev = self.statistics(reference), self.statistics(evaluated)
        result = {}
        if "swd" in self.metrics:
            levels_a, levels_b = levels_from_arrays(ref["swd"]), levels_from_arrays(ev["swd"])
            result.update(swd.swd_from_descriptors(levels_a, levels_b, self.seed, self.num_threads))
        if "fid" in self.metrics:
            result["FID"] = fid.frechet_distance(ref["fid"]["mean"], ref["fid"]["cov"],
                                                 ev["fid"]["mean"], ev["fid"]["cov"])
        if "is" in self.metrics:
            result["IS"], result["IS_std"] = (float(v) for v in ev["is"]["score"])
            result["IS_ref"], result["IS_ref_std"] = (float(v) for v in ref["is"]["score"])
        if "msssim" in self.metrics:
            result["MS-SSIM"] = float(ev["msssim"]["value"])
            result["MS-SSIM_ref"] = float(ref["msssim"]["value"])
        return result


# --------------------------------------------------------------------------- per-metric consumers

class _SWDConsumer:
    """SWD descriptors of every pyramid level (the accumulator is sized from the first batch)."""
    name = "SWD"

    def __init__(self, num_images: int, seed: int):
        self.num_images, self.seed = num_images, seed
        self.descriptors = None

    def add(self, batch):
        if self.descriptors is None:
            self.descriptors = swd.SWDDescriptors.for_batch(self.num_images, batch, self.seed)
        self.descriptors.add(batch)

    def results(self):
        return {"swd": levels_to_arrays(self.descriptors.finalize())}


class _ExtractorConsumer:
    """FID feature statistics and/or Inception-score probabilities from one network pass."""

    def __init__(self, extractor, metrics: Sequence[str], num_images: int):
        from progan_tf.metrics import fid
        from progan_tf.metrics import inception_score as is_lib

        self.name = extractor.name
        self.extractor, self.sinks = extractor, {}
        self.stats = self.scores = None
        if "fid" in metrics:
            self.stats = fid.GaussianStats()
            self.sinks["features"] = self.stats.update
        if "is" in metrics:
            self.scores = is_lib.InceptionScoreAccumulator(num_images)
            self.sinks["probs"] = self.scores.update
        fid.check_outputs(extractor, self.sinks)

    def add(self, batch):
        outputs = self.extractor(batch)
        for key, sink in self.sinks.items():
            sink(outputs[key])

    def results(self):
        out = {}
        if self.stats is not None:
            out["fid"] = {"mean": self.stats.mean, "cov": self.stats.cov, "count": np.array(self.stats.count)}
        if self.scores is not None:
            out["is"] = {"score": np.array(self.scores.result())}
        return out


class _MSSSIMConsumer:
    name = "MS-SSIM"

    def __init__(self, seed: int):
        from progan_tf.metrics import ms_ssim

        self.accumulator = ms_ssim.MSSSIMAccumulator(seed)

    def add(self, batch):
        self.accumulator.add(batch)

    def results(self):
        return {"msssim": {"value": np.array(self.accumulator.result())}}

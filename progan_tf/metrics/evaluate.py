"""Evaluating metrics between a reference image set and an evaluated one, with cached real statistics.

An `ImageSource` is anything that can stream images: a dataset directory (or
a slice of it, e.g. the second half) or a generator function
``generate(num_images, batch_size) -> iterable of uint8 NHWC batches`` (see
`generators` for those of trained models). Dataset sources are cached; generator
sources never are.

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
    from progan_tf import data

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

    # -- helpers

    def _stream(self, source: ImageSource, desc: str):
        stream = source.open(self.num_images, self.batch_size)
        return streams.with_progress(stream, self.num_images, f"{desc} {source.label}",
                                     enabled=None if self.progress else False)

    def _key(self, metric: str, extractor_id: str, source: ImageSource) -> Optional[str]:
        if source.cache is None or source.cache_id is None:
            return None
        return cache_lib.cache_key(metric, source.cache_id, source.resolution, self.num_images,
                                   extractor_id, source.offset)

    def _cached(self, metric: str, extractor_id: str, source: ImageSource, compute):
        key = self._key(metric, extractor_id, source)
        return compute() if key is None else source.cache.get_or_compute(key, compute)

    # -- metrics

    def _swd_levels(self, source: ImageSource):
        def compute():
            levels = swd.compute_descriptors(self._stream(source, "SWD"), self.num_images, self.seed,
                                             progress=None)
            return levels_to_arrays(levels)
        extractor_id = f"nh{swd.NHOODS_PER_IMAGE}-seed{self.seed}"
        return levels_from_arrays(self._cached("swd", extractor_id, source, compute))

    def _extractor_pass(self, source: ImageSource, extractor, metrics: Sequence[str]):
        """Runs `extractor` over a source once, for FID statistics and/or Inception-score arrays."""
        from progan_tf.metrics import fid
        from progan_tf.metrics import inception_score as is_lib

        sinks = {}
        if "fid" in metrics:
            stats = fid.GaussianStats()
            sinks["features"] = stats.update
        if "is" in metrics:
            acc = is_lib.InceptionScoreAccumulator(self.num_images)
            sinks["probs"] = acc.update
        fid.run_extractor(self._stream(source, extractor.name), self.num_images, extractor, sinks)
        out = {}
        if "fid" in metrics:
            out["fid"] = {"mean": stats.mean, "cov": stats.cov, "count": np.array(stats.count)}
        if "is" in metrics:
            out["is"] = {"score": np.array(acc.result())}
        return out

    def _extractor_outputs(self, source: ImageSource, want_fid: bool, want_is: bool):
        """FID statistics and Inception-score arrays of a source: cached, or one pass per extractor."""
        groups = []  # (extractor, [metrics]); FID and IS share Inception when both use it
        if want_fid:
            groups.append((self._fid_extractor(), ["fid"]))
        if want_is:
            inception = self._inception(with_probs=True)
            if groups and groups[0][0] is inception:
                groups[0][1].append("is")
            else:
                groups.append((inception, ["is"]))
        results = {}
        for extractor, metrics in groups:
            keys = {m: self._key(m, extractor.name, source) for m in metrics}
            for m, key in keys.items():
                if key is not None:
                    cached = source.cache.load(key)
                    if cached is not None:
                        results[m] = cached
            missing = [m for m in metrics if m not in results]
            if missing:
                computed = self._extractor_pass(source, extractor, missing)
                for m in missing:
                    if keys[m] is not None:
                        source.cache.save(keys[m], computed[m])
                results.update(computed)
        return results

    def _msssim(self, source: ImageSource) -> float:
        from progan_tf.metrics import ms_ssim

        def compute():
            value = ms_ssim.ms_ssim(self._stream(source, "MS-SSIM"), self.num_images, self.seed, progress=None)
            return {"value": np.array(value)}
        return float(self._cached("msssim", f"seed{self.seed}", source, compute)["value"])

    def evaluate(self, reference: ImageSource, evaluated: ImageSource) -> Dict[str, float]:
        """All chosen metrics between `reference` (e.g. reals) and `evaluated` (e.g. fakes)."""
        from progan_tf.metrics import fid

        result = {}
        for source in (reference, evaluated):
            if source.available is not None and source.available < self.num_images:
                raise ValueError(f"{source.label} has {source.available} images, fewer than "
                                 f"--num_images={self.num_images}")
        if "swd" in self.metrics:
            start = time.time()
            levels_a = self._swd_levels(reference)
            levels_b = self._swd_levels(evaluated)
            result.update(swd.swd_from_descriptors(levels_a, levels_b, self.seed, self.num_threads))
            del levels_a, levels_b
            logging.info("SWD took %.1f s", time.time() - start)
        want_fid, want_is = "fid" in self.metrics, "is" in self.metrics
        if want_fid or want_is:
            start = time.time()
            ref = self._extractor_outputs(reference, want_fid, want_is)
            ev = self._extractor_outputs(evaluated, want_fid, want_is)
            if want_fid:
                result["FID"] = fid.frechet_distance(ref["fid"]["mean"], ref["fid"]["cov"],
                                                     ev["fid"]["mean"], ev["fid"]["cov"])
            if want_is:
                result["IS"], result["IS_std"] = (float(v) for v in ev["is"]["score"])
                result["IS_ref"], result["IS_ref_std"] = (float(v) for v in ref["is"]["score"])
            logging.info("FID/IS took %.1f s", time.time() - start)
        if "msssim" in self.metrics:
            result["MS-SSIM"] = self._msssim(evaluated)
            result["MS-SSIM_ref"] = self._msssim(reference)
        return result

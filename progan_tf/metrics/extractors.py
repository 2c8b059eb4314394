"""Which feature extractor a metric's `Features` need resolves to, built once per `Evaluator`.

``Features(extractor="fid")`` is ``--feature_extractor`` when given (a
SavedModel directory or a Keras file), else InceptionV3;
``Features(extractor="inception")`` is always InceptionV3. One InceptionV3 is
built per evaluator: with its classification top when any requested metric
needs ``probs`` (the Inception score), so FID and IS then share one network
pass per batch. Its name, and so the cache keys of FID statistics, is the same
with or without the top.
"""
import dataclasses
import os
from typing import Optional, Tuple

from progan_tf.metrics import fid
from progan_tf.metrics.registry import Features


@dataclasses.dataclass
class ExtractorOptions:
    """Where FID features and Inception-score probabilities come from (see `fid`)."""
    inception_weights: str = "imagenet"
    feature_extractor: Optional[str] = None  # SavedModel directory or .keras/.h5 file, for FID
    extractor_output: Optional[str] = None   # SavedModel output key, or Keras layer name
    input_range: Tuple[float, float] = (-1.0, 1.0)
    input_size: Optional[int] = None         # SavedModel input size if its signature does not say
    batch_size: int = 64


class Extractors:
    """Builds the extractors of `Features` needs lazily, each at most once.

    `inception_probs`: build InceptionV3 with its top (some requested metric
    needs class probabilities).
    """

    def __init__(self, options: ExtractorOptions, inception_probs: bool):
        self.options = options
        self.inception_probs = bool(inception_probs)
        self._inception = None
        self._custom = None

    def get(self, need: Features) -> fid.FeatureExtractor:
        """The extractor for `need`; raises `fid.ExtractorError` if it lacks the needed output."""
        if need.extractor == "fid" and self.options.feature_extractor is not None:
            extractor = self.custom()
        else:
            extractor = self.inception()
        fid.check_outputs(extractor, [need.output])
        return extractor

    def inception(self) -> fid.FeatureExtractor:
        if self._inception is None:
            self._inception = fid.inception_v3_extractor(self.options.inception_weights,
                                                         with_probs=self.inception_probs,
                                                         batch_size=self.options.batch_size)
        return self._inception

    def custom(self) -> fid.FeatureExtractor:
        """``--feature_extractor``: a SavedModel directory or a Keras model file."""
        if self._custom is None:
            o = self.options
            path = o.feature_extractor
            if os.path.isdir(path):
                self._custom = fid.saved_model_extractor(path, o.input_size, o.input_range, o.extractor_output,
                                                         o.batch_size)
            elif os.path.isfile(path):
                self._custom = fid.keras_model_extractor(path, o.input_range, o.extractor_output,
                                                         batch_size=o.batch_size)
            else:
                raise fid.ExtractorError(f"--feature_extractor not found: {path}")
        return self._custom

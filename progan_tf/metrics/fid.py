"""Frechet distance (FID) and the feature extractors it runs on.

An extractor maps uint8 NHWC batches to named float outputs: ``features``
(for the Frechet distance) and, for classifiers, ``probs`` (for the Inception
score). Every source goes through the same `FeatureExtractor` code:

* `inception_v3_extractor`: Keras' InceptionV3 (2048-d average-pool features,
  plus the 1000 ImageNet class probabilities when asked) with weights from
  'imagenet' (Keras downloads and caches them) or a local weights file.
* `saved_model_extractor`: any SavedModel whose serving signature maps an
  image batch to features (e.g. a converted copy of the TF1 FID Inception graph).
* `keras_model_extractor`: any Keras model (a `.keras` file or an object),
  e.g. a classifier trained on the dataset itself for domains far from ImageNet.

Note: Keras' ImageNet InceptionV3 is not the 2015 graph that the TTUR/StyleGAN
FID code uses, so absolute FIDs are comparable between runs of this tool but
not with published numbers; pass that graph as a SavedModel for those.

Images are tiled to 3 channels if grayscale, resized bilinearly to the
extractor's input size and scaled linearly from [0, 255] to its input range
([-1, 1] for Inception, as ``keras.applications.inception_v3.preprocess_input``).
"""
import hashlib
import os
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from progan_tf.metrics import streams

INCEPTION_SIZE = 299
INCEPTION_URLS = {
    False: "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
           "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    True: "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
          "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
}


class ExtractorError(RuntimeError):
    """A feature extractor could not be built or loaded; the message says what to pass instead."""


# --------------------------------------------------------------------------- statistics

class GaussianStats:
    """Streaming mean and covariance of feature vectors, in float64.

    Batches are merged with Chan et al.'s pairwise update, which avoids the
    cancellation of the sum-of-squares formula. `cov` is unbiased (ddof = 1),
    like ``np.cov(features, rowvar=False)`` in the reference FID code.
    """

    def __init__(self, dim: Optional[int] = None):
        self.count = 0
        self.mean = None if dim is None else np.zeros(dim)
        self._m2 = None if dim is None else np.zeros((dim, dim))

    def add(self, features) -> None:
        """Adds a [B, ...] batch of feature vectors (flattened to [B, -1])."""
        x = np.asarray(features, np.float64)
        x = x.reshape(len(x), -1)
        n_b = len(x)
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        m2_b = centred.T @ centred
        if self.count == 0:
            self.mean, self._m2 = mean_b, m2_b
        else:
            n = self.count + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.count * n_b / n)
        self.count += n_b

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError("a covariance needs at least 2 feature vectors")
        return self._m2 / (self.count - 1)

    def statistics(self) -> Dict[str, np.ndarray]:
        """``mean``, ``cov`` and ``count`` as arrays (what the FID of two sets needs; cacheable)."""
        return {"mean": self.mean, "cov": self.cov, "count": np.array(self.count)}


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr(sqrtm(sigma1 @ sigma2)) for covariance matrices.

    Computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix ``S1^1/2 S2 S1^1/2``, which has the same eigenvalues as ``S1 S2``.
    Unlike a general ``scipy.linalg.sqrtm`` of the non-symmetric product this
    needs no offset for singular covariances (fewer images than dimensions) and
    produces no imaginary parts to discard.
    """
    root = _sqrt_psd(np.asarray(sigma1, np.float64))
    middle = root @ np.asarray(sigma2, np.float64) @ root
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    if mu1.shape != mu2.shape or np.shape(sigma1) != np.shape(sigma2):
        raise ValueError(f"statistics of different shapes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


# --------------------------------------------------------------------------- extractors

def file_digest(path: str, length: int = 12) -> str:
    """Short SHA-1 of a file's contents (or of every file under a directory), for cache keys."""
    sha = hashlib.sha1()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, f) for root, _, files in os.walk(path) for f in files)
    for p in paths:
        sha.update(os.path.relpath(p, path).encode() if p != path else b"")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()[:length]


class FeatureExtractor:
    """Runs a TensorFlow callable on uint8 NHWC batches.

    `fn` takes a float32 [B, S, S, 3] batch already resized to `input_size`
    and scaled to `input_range` and returns a dict of [B, ...] tensors; every
    output is flattened to [B, -1]. `name` identifies the extractor (and its
    weights) in cache keys. Batches are split into chunks of `batch_size`.
    """

    def __init__(self, fn: Callable, name: str, input_size: int,
                 input_range: Tuple[float, float] = (-1.0, 1.0),
                 outputs: Sequence[str] = ("features",), batch_size: int = 64):
        import tensorflow as tf

        self.name = name
        self.input_size = int(input_size)
        self.input_range = tuple(float(v) for v in input_range)
        self.outputs = tuple(outputs)
        self.batch_size = int(batch_size)
        lo, hi = self.input_range
        size = self.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def run(images):
            # Bilinear resize to the same size returns the input unchanged.
            x = tf.image.resize(tf.cast(images, tf.float32), [size, size], method="bilinear")
            x = x * ((hi - lo) / 255.0) + lo
            out = fn(x)
            return {k: tf.reshape(tf.cast(out[k], tf.float32), [tf.shape(images)[0], -1])
                    for k in self.outputs}

        self._run = run

    def __call__(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = streams.to_rgb(streams.check_batch(batch))
        parts = [self._run(batch[i:i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        return {k: np.concatenate([p[k].numpy() for p in parts]) for k in self.outputs}


def _keras_inception(weights: str, with_probs: bool):
    import keras

    if weights != "imagenet" and not os.path.exists(weights):
        raise ExtractorError(f"--inception_weights file not found: {weights}")
    kwargs = dict(include_top=with_probs, weights=weights, input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    if not with_probs:
        kwargs["pooling"] = "avg"
    kind = "with the classification top" if with_probs else "without the top (notop)"
    try:
        return keras.applications.InceptionV3(**kwargs)
    except Exception as e:  # download failures (offline) and mismatched weight files
        if weights == "imagenet":
            raise ExtractorError(
                f"Could not get Keras' ImageNet weights for InceptionV3 ({type(e).__name__}: {e}). "
                f"Offline? Download {INCEPTION_URLS[with_probs]} on a machine with internet access and pass "
                "--inception_weights=<local .h5/.weights.h5 file>, or pass --feature_extractor=<SavedModel "
                "directory or .keras file> to use another feature extractor.") from e
        raise ExtractorError(
            f"Could not load InceptionV3 weights {kind} from {weights} ({type(e).__name__}: {e}). "
            f"The file must hold Keras InceptionV3 weights {kind}, e.g. {INCEPTION_URLS[with_probs]}"
            + (" (the Inception score needs the classification top)" if with_probs else "")) from e


def inception_v3_extractor(weights: str = "imagenet", with_probs: bool = False,
                           batch_size: int = 64) -> FeatureExtractor:
    """Keras InceptionV3: 'features' (2048-d average pool) and, with `with_probs`, 'probs' (1000 classes).

    `weights` is 'imagenet' or the path of a local weights file (.h5 as Keras
    distributes it, or .weights.h5); with `with_probs` it must include the top.
    """
    import keras

    base = _keras_inception(weights, with_probs)
    if with_probs:
        model = keras.Model(base.input, {"features": base.get_layer("avg_pool").output, "probs": base.output})
        outputs = ("features", "probs")
    else:
        model = keras.Model(base.input, {"features": base.output})
        outputs = ("features",)
    tag = "imagenet" if weights == "imagenet" else file_digest(weights)
    return FeatureExtractor(lambda x: model(x, training=False), f"inception_v3-{tag}", INCEPTION_SIZE,
                            (-1.0, 1.0), outputs, batch_size)


def _single_output(outputs: Dict, key: Optional[str], source: str):
    if key is not None:
        if key not in outputs:
            raise ExtractorError(f"{source} has no output '{key}'; outputs: {sorted(outputs)}")
        return outputs[key]
    if len(outputs) != 1:
        raise ExtractorError(f"{source} has several outputs {sorted(outputs)}; say which (--extractor_output)")
    return next(iter(outputs.values()))


def saved_model_extractor(path: str, input_size: Optional[int] = None,
                          input_range: Tuple[float, float] = (-1.0, 1.0),
                          output_key: Optional[str] = None, batch_size: int = 64) -> FeatureExtractor:
    """Features from a SavedModel's 'serving_default' signature (one image input, float32 NHWC)."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
    except (OSError, KeyError, ValueError) as e:
        raise ExtractorError(f"{path} is not a SavedModel with a 'serving_default' signature: {e}") from e
    specs = signature.structured_input_signature[1]
    if len(specs) != 1:
        raise ExtractorError(f"{path}: the serving signature must take one image input, got {sorted(specs)}")
    (input_name, spec), = specs.items()
    static = spec.shape[1] if spec.shape.rank == 4 else None
    size = input_size or static or INCEPTION_SIZE
    if static is not None and static != size:
        raise ExtractorError(f"{path} takes {static}x{static} images, not {size}")

    def fn(x):
        outputs = signature(**{input_name: tf.cast(x, spec.dtype)})
        return {"features": _single_output(outputs, output_key, path)}

    extractor = FeatureExtractor(fn, f"savedmodel-{file_digest(path)}", size, input_range, ("features",),
                                 batch_size)
    extractor.saved_model = loaded  # the signature's variables live as long as this object
    return extractor


def keras_model_extractor(model, input_range: Tuple[float, float] = (-1.0, 1.0),
                          feature_layer: Optional[str] = None, name: Optional[str] = None,
                          batch_size: int = 64) -> FeatureExtractor:
    """Features from a Keras model (object or `.keras`/`.h5` path): its output or `feature_layer`'s.

    The input size comes from the model's input shape (square, 1 or 3 channels;
    a 1-channel model gets the mean of the 3 tiled channels, i.e. the gray image).
    """
    import keras
    import tensorflow as tf

    tag = name
    if isinstance(model, str):
        try:
            loaded = keras.saving.load_model(model, compile=False)
        except Exception as e:
            raise ExtractorError(f"could not load the Keras model {model}: {e}") from e
        tag = tag or f"keras-{file_digest(model)}"
        model = loaded
    tag = tag or f"keras-{model.name}"
    if feature_layer is not None:
        model = keras.Model(model.input, model.get_layer(feature_layer).output)
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise ExtractorError(f"the feature model must take square NHWC images with 1 or 3 channels, got {shape}")
    gray = shape[3] == 1

    def fn(x):
        if gray:
            x = tf.reduce_mean(x, axis=-1, keepdims=True)
        return {"features": model(x, training=False)}

    return FeatureExtractor(fn, tag, shape[1], input_range, ("features",), batch_size)


# --------------------------------------------------------------------------- running

def check_outputs(extractor: FeatureExtractor, names: Iterable[str]) -> None:
    """Raises `ExtractorError` unless `extractor` has every one of the output `names`."""
    missing = set(names) - set(extractor.outputs)
    if missing:
        raise ExtractorError(f"extractor {extractor.name} has no output(s) {sorted(missing)}")


def run_extractor(batches: Iterable[np.ndarray], num_images: int, extractor: FeatureExtractor,
                  sinks: Dict[str, Callable[[np.ndarray], None]], progress: Optional[str] = None) -> None:
    """Feeds `extractor`'s outputs for exactly `num_images` images to `sinks` (output name -> callback)."""
    check_outputs(extractor, sinks)
    stream = streams.take_images(batches, num_images)
    if progress:
        stream = streams.with_progress(stream, num_images, progress)
    for batch in stream:
        outputs = extractor(batch)
        for key, sink in sinks.items():
            sink(outputs[key])


def compute_stats(batches: Iterable[np.ndarray], num_images: int, extractor: FeatureExtractor,
                  progress: Optional[str] = "FID features") -> GaussianStats:
    stats = GaussianStats()
    run_extractor(batches, num_images, extractor, {"features": stats.add}, progress)
    logging.info("FID: %d feature vectors of dim %d from %s", stats.count, len(stats.mean), extractor.name)
    return stats


def fid(batches_a: Iterable[np.ndarray], batches_b: Iterable[np.ndarray], num_images: int,
        extractor: FeatureExtractor) -> float:
    """FID between the first `num_images` images of two streams."""
    return fid_from_stats(compute_stats(batches_a, num_images, extractor, "FID set A"),
                          compute_stats(batches_b, num_images, extractor, "FID set B"))

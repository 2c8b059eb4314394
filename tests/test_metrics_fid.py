"""FID and Inception score against closed forms and independent NumPy/SciPy math (offline)."""
import os

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from progan_tf.metrics import fid
from progan_tf.metrics import inception_score as is_lib


def random_cov(rng, dim, rank=None):
    a = rng.standard_normal((dim, rank or dim))
    return a @ a.T / (rank or dim) + (0 if rank else 0.1 * np.eye(dim))


def ref_fid(mu1, s1, mu2, s2):
    """The usual scipy route: sqrtm of the product, offset if singular, drop tiny imaginary parts."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)


# ----------------------------------------------------------------- Frechet distance

def test_frechet_distance_diagonal_closed_form():
    # For commuting (diagonal) covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 4, 20), rng.uniform(0.1, 4, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expect, rel=1e-10)


def test_frechet_distance_scaled_covariance_closed_form():
    # S2 = c^2 S1: Tr(S1 + S2 - 2 sqrt(S1 S2)) = (1 - c)^2 Tr(S1), for any S1.
    rng = np.random.default_rng(1)
    s1 = random_cov(rng, 30)
    assert fid.frechet_distance(np.zeros(30), s1, np.zeros(30), 9 * s1) == pytest.approx(4 * np.trace(s1), rel=1e-9)


@pytest.mark.parametrize("rank", [None, 10])
def test_frechet_distance_matches_scipy_sqrtm_and_is_symmetric(rank):
    rng = np.random.default_rng(2)
    s1, s2 = random_cov(rng, 40, rank), random_cov(rng, 40, rank)
    mu1, mu2 = rng.standard_normal(40), rng.standard_normal(40)
    d12 = fid.frechet_distance(mu1, s1, mu2, s2)
    d21 = fid.frechet_distance(mu2, s2, mu1, s1)
    assert d12 == pytest.approx(d21, rel=1e-9)
    assert d12 == pytest.approx(ref_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_distance_of_same_statistics_is_zero():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 64))  # fewer samples than dimensions: singular covariance
    stats = fid.GaussianStats()
    stats.add(x)
    assert abs(fid.fid_from_stats(stats, stats)) < 1e-9


def test_gaussian_stats_streaming_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((333, 16)) * 5 + 1000.0  # large mean: the naive formula would lose digits
    stats = fid.GaussianStats()
    for chunk in np.array_split(x, [1, 50, 51, 200]):
        stats.add(chunk)
    assert stats.count == 333
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------- end to end (offline)

def small_extractor_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    return keras.Model(inputs, outputs)


def image_sets(count=40, size=24):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) // 2 + 60, 0, 255).astype(np.uint8)
    return a, b


def ref_features(model, images, size):
    """Independent preprocessing: bilinear resize, [0,255] -> [-1,1], then the model."""
    x = tf.image.resize(tf.cast(images, tf.float32), [size, size]).numpy() / 127.5 - 1.0
    return np.asarray(model(x, training=False), np.float64)


def test_fid_end_to_end_with_saved_keras_model(tmp_path):
    model = small_extractor_model()
    path = os.path.join(tmp_path, "features.keras")
    model.save(path)
    extractor = fid.keras_model_extractor(path, feature_layer="pool")
    assert extractor.name.startswith("keras-") and extractor.input_size == 32
    a, b = image_sets()
    got = fid.fid([a[i:i + 16] for i in range(0, 40, 16)], [b], 40, extractor)
    pool = keras.Model(model.input, model.get_layer("pool").output)
    fa, fb = ref_features(pool, a, 32), ref_features(pool, b, 32)
    expect = ref_fid(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
    assert got > 1e-3
    assert got == pytest.approx(expect, rel=1e-4)
    assert fid.fid([a], [a[:20], a[20:]], 40, extractor) == pytest.approx(0.0, abs=1e-9)


def test_grayscale_images_are_tiled_for_the_extractor():
    extractor = fid.keras_model_extractor(small_extractor_model())
    gray = np.random.default_rng(6).integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    np.testing.assert_allclose(extractor(gray)["features"], extractor(np.repeat(gray, 3, -1))["features"])


def test_saved_model_extractor(tmp_path):
    model = small_extractor_model()
    export_dir = os.path.join(tmp_path, "sm")
    model.export(export_dir, verbose=False)
    extractor = fid.saved_model_extractor(export_dir)
    assert extractor.input_size == 32 and extractor.name.startswith("savedmodel-")
    a, _ = image_sets(6, 32)
    np.testing.assert_allclose(extractor(a)["features"], ref_features(model, a, 32), rtol=1e-4, atol=1e-5)


def test_inception_v3_from_local_weights_file(tmp_path):
    # Random weights saved to a file and loaded back through --inception_weights'
    # code path: the same model construction, resizing and scaling as real weights.
    keras.utils.set_random_seed(1)
    base = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                          input_shape=(299, 299, 3))
    path = os.path.join(tmp_path, "inception_notop.weights.h5")
    base.save_weights(path)
    extractor = fid.inception_v3_extractor(weights=path, batch_size=4)
    assert extractor.name.startswith("inception_v3-") and extractor.name != "inception_v3-imagenet"
    a = np.random.default_rng(7).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    feats = extractor(a)["features"]
    assert feats.shape == (3, 2048)
    expect = ref_features(base, np.repeat(a, 3, -1), 299)
    np.testing.assert_allclose(feats, expect, rtol=1e-3, atol=1e-4 * np.abs(expect).max())


def test_missing_inception_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(fid.ExtractorError, match="--inception_weights file not found"):
        fid.inception_v3_extractor(weights=os.path.join(tmp_path, "nope.h5"))


# ----------------------------------------------------------------- Inception score

def ref_inception_score(probs, splits=10):
    """The reference formula, written directly."""
    scores = []
    n = len(probs)
    for k in range(splits):
        part = probs[k * n // splits:(k + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = part * (np.log(part) - np.log(py))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return np.mean(scores), np.std(scores)


@pytest.mark.parametrize("classes", [10, 1000])
def test_confident_uniform_classifier_scores_number_of_classes(classes):
    labels = np.arange(10 * classes) % classes  # every split sees every class once
    probs = np.eye(classes)[labels]
    mean, std = is_lib.inception_score_from_probs(probs)
    assert mean == pytest.approx(classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_constant_prediction_scores_one():
    probs = np.tile(np.random.default_rng(8).dirichlet(np.ones(7)), (100, 1))
    assert is_lib.inception_score_from_probs(probs)[0] == pytest.approx(1.0, rel=1e-12)


def test_streaming_inception_score_matches_reference():
    probs = np.random.default_rng(9).dirichlet(np.full(12, 0.3), size=1003)
    acc = is_lib.InceptionScoreAccumulator(1003)
    for chunk in np.array_split(probs, [7, 100, 101, 640]):
        acc.add(chunk)
    got = acc.result()
    np.testing.assert_allclose(got, ref_inception_score(np.clip(probs, 1e-300, None)), rtol=1e-10)


def test_inception_score_through_an_extractor():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 16, 3))
    logits = keras.layers.Dense(5)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    extractor = fid.FeatureExtractor(lambda x: {"probs": model(x)}, "toy", 16, outputs=("probs",))
    images = np.random.default_rng(10).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    got = is_lib.inception_score([images[:13], images[13:]], 30, extractor)
    probs = np.asarray(model(images.astype(np.float32) / 127.5 - 1.0), np.float64)
    np.testing.assert_allclose(got, ref_inception_score(probs), rtol=1e-5)

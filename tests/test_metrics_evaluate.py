"""Evaluator and statistics cache: one extractor pass for FID + IS, cache keys and reuse, generator sources."""
import os

import keras
import numpy as np
import pytest

from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import evaluate, fid
from progan_tf.metrics import inception_score as is_lib
from progan_tf.metrics import ms_ssim
from progan_tf.metrics import swd


# ----------------------------------------------------------------- cache

def test_cache_roundtrip_is_memory_mapped_and_leaves_no_temporaries(tmp_path):
    cache = cache_lib.StatsCache(str(tmp_path / "c"))
    key = cache_lib.cache_key("fid", "ds", 32, 100, "inception_v3-imagenet", offset=100)
    assert key == "fid-ds-r32-n100-o100-inception_v3-imagenet-v1"
    assert cache.load(key) is None
    arrays = {"mean": np.arange(3.0), "cov": np.eye(3)}
    cache.save(key, arrays)
    got = cache.load(key)
    assert isinstance(got["cov"], np.memmap)
    np.testing.assert_array_equal(got["mean"], arrays["mean"])
    assert os.listdir(tmp_path / "c") == [key]
    assert (cache.hits, cache.misses) == (1, 1)


def test_cache_keeps_an_entry_written_first_by_someone_else(tmp_path):
    cache = cache_lib.StatsCache(str(tmp_path))
    cache.save("k", {"value": np.array(1.0)})
    cache.save("k", {"value": np.array(2.0)})  # a concurrent writer lost the race
    assert float(cache.load("k")["value"]) == 1.0
    assert os.listdir(tmp_path) == ["k"]


def test_cache_key_is_file_name_safe():
    key = cache_lib.cache_key("swd", "my data/set", 64, 10, "keras-a:b")
    assert "/" not in key and ":" not in key and " " not in key


def test_disabled_cache_stores_nothing():
    cache = cache_lib.StatsCache(None)
    cache.save("k", {"v": np.zeros(1)})
    assert cache.load("k") is None


# ----------------------------------------------------------------- evaluator

class CountingSource:
    """An in-memory 'dataset' source that counts how often it is read."""

    def __init__(self, images, cache, cache_id="toy"):
        self.images = images
        self.reads = 0
        self.source = evaluate.ImageSource(cache_id, self.open, cache_id, images.shape[1], 0, len(images), cache)

    def open(self, n, batch_size):
        self.reads += 1
        return (self.images[i:min(i + batch_size, n)] for i in range(0, n, batch_size))


@pytest.fixture
def toy_inception(monkeypatch):
    """Replaces Inception by a small random Keras model with 'features' and 'probs' outputs."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    feats = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, activation="relu")(inputs))
    probs = keras.layers.Dense(5, activation="softmax")(feats)
    model = keras.Model(inputs, {"features": feats, "probs": probs})
    built = []

    def factory(weights="imagenet", with_probs=False, batch_size=64):
        built.append(with_probs)
        outputs = ("features", "probs") if with_probs else ("features",)
        return fid.FeatureExtractor(lambda x: model(x), "toy_inception", 16, (-1.0, 1.0), outputs, batch_size)

    monkeypatch.setattr(fid, "inception_v3_extractor", factory)
    return model, built


def test_fid_and_is_share_one_pass_and_are_cached(tmp_path, toy_inception):
    model, built = toy_inception
    rng = np.random.default_rng(0)
    cache = cache_lib.StatsCache(str(tmp_path))
    reals = CountingSource(rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8), cache, "reals")
    fakes = evaluate.generator_source(
        lambda n, b: (rng.integers(0, 128, (min(b, n - i), 16, 16, 1), dtype=np.uint8) for i in range(0, n, b)),
        "fakes")
    evaluator = evaluate.Evaluator(["fid", "is"], 30, batch_size=8, progress=False)
    first = evaluator.evaluate(reals.source, fakes)
    assert built == [True] and reals.reads == 1  # one Inception with the top, one pass over the reals
    assert set(first) == {"FID", "IS", "IS_std", "IS_ref", "IS_ref_std"}

    out = model(reals.images.astype(np.float32) / 127.5 - 1.0)
    feats, probs = np.asarray(out["features"], np.float64), np.asarray(out["probs"], np.float64)
    assert first["IS_ref"] == pytest.approx(is_lib.inception_score_from_probs(probs)[0], rel=1e-5)
    stats = fid.GaussianStats()
    stats.add(feats)
    second = evaluator.evaluate(reals.source, evaluate.generator_source(lambda n, b: [reals.images[:n]], "same"))
    assert reals.reads == 1  # the reals came from the cache
    assert second["FID"] == pytest.approx(0.0, abs=1e-6)
    assert second["IS"] == pytest.approx(first["IS_ref"], rel=1e-6)
    assert len(os.listdir(tmp_path)) == 2  # fid and is entries for the reals only


def test_swd_cache_roundtrip_gives_same_numbers(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    src = CountingSource(a, cache_lib.StatsCache(str(tmp_path)))
    evaluator = evaluate.Evaluator(["swd"], 20, batch_size=7, seed=2, progress=False)
    fakes = evaluate.generator_source(lambda n, bs: [b], "fakes")
    r1 = evaluator.evaluate(src.source, fakes)
    r2 = evaluator.evaluate(src.source, fakes)
    assert src.reads == 1
    assert r1 == r2 == swd.swd([a], [b], 20, seed=2)


def test_sets_smaller_than_num_images_are_refused():
    src = CountingSource(np.zeros((10, 16, 16, 1), np.uint8), None)
    with pytest.raises(ValueError, match="fewer than --num_images=12"):
        evaluate.Evaluator(["swd"], 12).evaluate(src.source, src.source)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate.Evaluator(["swd", "kid"], 10)


def test_all_metrics_take_one_pass_over_each_source_and_match_single_metric_runs(tmp_path, toy_inception):
    """Fakes are generated once for every metric (at 1024x1024 they are the expensive part)."""
    rng = np.random.default_rng(4)
    reals = CountingSource(rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), None)
    fake_images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    calls = []

    def generate(n, b):
        calls.append(n)
        return (fake_images[i:min(i + b, n)] for i in range(0, n, b))

    fakes = evaluate.generator_source(generate, "fakes")
    together = evaluate.Evaluator(["swd", "fid", "is", "msssim"], 24, batch_size=5, seed=1,
                                  progress=False).evaluate(reals.source, fakes)
    assert len(calls) == 1 and reals.reads == 1
    separately = {}
    for metric in ("swd", "fid", "is", "msssim"):
        separately.update(evaluate.Evaluator([metric], 24, batch_size=7, seed=1, progress=False)
                          .evaluate(reals.source, fakes))
    assert len(calls) == 5 and reals.reads == 5
    assert together.keys() == separately.keys()
    for key, value in separately.items():
        assert together[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert together["MS-SSIM"] == pytest.approx(
        ms_ssim.ms_ssim([fake_images], 24, seed=1, progress=None), rel=1e-6)

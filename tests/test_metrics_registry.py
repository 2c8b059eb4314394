"""Metric registry and protocol: a metric registered here (no other module edited) runs through the
same Evaluator, cache, CLI and metric files as the built-in ones."""
import os
import shutil

import numpy as np
import pytest

from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import cli, evaluate, fid, registry, runs
from progan_tf.metrics.registry import Features, Metric, register_metric

FMNIST = os.path.join(os.path.dirname(__file__), "fixtures", "original-format", "fmnist100")


class MeanAccumulator:
    """Mean of whatever it is fed (pixel values or feature vectors); counts its batches."""

    def __init__(self):
        self.total, self.count, self.batches = 0.0, 0, 0

    def add(self, batch):
        self.total += float(np.sum(batch, dtype=np.float64))
        self.count += np.size(batch)
        self.batches += 1

    def statistics(self):
        return {"mean": np.array(self.total / self.count)}


class Brightness(Metric):
    """A toy image metric: mean pixel value of each set and their difference."""
    name, title = "brightness", "Brightness"
    made = []  # accumulators made, to count passes

    def accumulator(self):
        self.made.append(MeanAccumulator())
        return self.made[-1]

    def results(self, reference, evaluated):
        ref, ev = float(reference["mean"]), float(evaluated["mean"])
        return {"Brightness": ev, "Brightness_ref": ref, "BrightnessDiff": abs(ev - ref)}


class FeatureMean(Metric):
    """A toy feature metric on the FID extractor's features: difference of the sets' mean feature value."""
    name, title = "featmean", "FeatMean"
    needs = Features("features", extractor="fid")

    def accumulator(self):
        return MeanAccumulator()

    def results(self, reference, evaluated):
        return {"FeatMeanDiff": abs(float(evaluated["mean"]) - float(reference["mean"]))}


@pytest.fixture
def registered():
    """Registers the toy metrics for one test."""
    Brightness.made.clear()
    for cls in (Brightness, FeatureMean):
        register_metric(cls)
    yield
    for cls in (Brightness, FeatureMean):
        registry.unregister_metric(cls.name)


class CountingSource:
    """An in-memory cached 'dataset' that counts how often it is read."""

    def __init__(self, images, cache):
        self.images, self.reads = images, 0
        self.source = evaluate.ImageSource("toy", self.open, "toy", images.shape[1], 0, len(images), cache)

    def open(self, n, batch_size):
        self.reads += 1
        return (self.images[i:min(i + batch_size, n)] for i in range(0, n, batch_size))


def counting_generator(images):
    calls = []

    def generate(n, b):
        calls.append(n)
        return (images[i:min(i + b, n)] for i in range(0, n, b))
    return evaluate.generator_source(generate, "fakes"), calls


class CountingExtractor(fid.FeatureExtractor):
    calls = []

    def __call__(self, batch):
        self.calls.append(len(batch))
        return super().__call__(batch)


@pytest.fixture
def toy_extractor(monkeypatch):
    """InceptionV3 replaced by a cheap extractor that counts its calls: 'features' = per-channel means."""
    import tensorflow as tf

    def run(x):
        mean = tf.reduce_mean(x, axis=[1, 2])
        return {"features": tf.concat([mean, tf.square(mean)], -1), "probs": tf.nn.softmax(mean)}

    def factory(weights="imagenet", with_probs=False, batch_size=64):
        outputs = ("features", "probs") if with_probs else ("features",)
        return CountingExtractor(run, "toy_extractor", 8, (-1.0, 1.0), outputs, batch_size)

    CountingExtractor.calls = []
    monkeypatch.setattr(fid, "inception_v3_extractor", factory)
    return CountingExtractor.calls


def images(seed, n=20, size=32, channels=3, high=256):
    return np.random.default_rng(seed).integers(0, high, (n, size, size, channels), dtype=np.uint8)


# ----------------------------------------------------------------- registry

def test_built_in_metrics_are_registered_in_column_order_and_listed_by_the_cli():
    assert registry.metric_names()[:4] == ["swd", "fid", "is", "msssim"]
    assert "Metrics to compute: swd, fid, is, msssim" in cli.FLAGS["metrics"].help


def test_unknown_names_are_refused_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['kid'\]; choose from swd, fid, is, msssim"):
        registry.get_metric("kid")
    with pytest.raises(ValueError, match="choose from swd, fid, is, msssim"):
        evaluate.Evaluator(["swd", "KID"], 10)
    assert registry.get_metric(" FID ").name == "fid"
    assert registry.resolve_names(" swd, msssim,swd,") == ["swd", "msssim"]


def test_registration_checks_names_and_needs(registered):
    with pytest.raises(ValueError, match="registered already"):
        register_metric(Brightness)
    for attrs in ({"name": "Bad-Name"}, {"name": "ok", "needs": "pairs"},
                  {"name": "ok", "needs": Features("features", extractor="vgg")}):
        with pytest.raises(ValueError):
            register_metric(type("Broken", (Brightness,), attrs))
    with pytest.raises(TypeError, match="must implement accumulator"):
        register_metric(type("Incomplete", (Metric,), {"name": "ok"}))
    with pytest.raises(TypeError):
        register_metric(object)
    assert "ok" not in registry.metric_names()


# ----------------------------------------------------------------- a registered metric through the Evaluator

def test_a_registered_metric_shares_the_one_pass_and_the_cache(tmp_path, registered):
    reals = CountingSource(images(0), cache_lib.StatsCache(str(tmp_path)))
    fake_images = images(1, high=128)
    fakes, calls = counting_generator(fake_images)
    evaluator = evaluate.Evaluator(["brightness", "swd"], 20, batch_size=6, seed=2, progress=False)
    result = evaluator.evaluate(reals.source, fakes)
    assert reals.reads == 1 and calls == [20]  # one pass over each set for both metrics
    assert [a.batches for a in Brightness.made] == [4, 4]
    assert list(result)[-1:] == ["BrightnessDiff"]  # registration order: built-in swd first
    assert result["Brightness"] == pytest.approx(fake_images.mean())
    assert result["Brightness_ref"] == pytest.approx(reals.images.mean())
    swd_only = evaluate.Evaluator(["swd"], 20, batch_size=6, seed=2, progress=False).evaluate(reals.source, fakes)
    assert {k: v for k, v in result.items() if k.startswith("SWD")} == swd_only
    assert sorted(os.listdir(tmp_path)) == ["brightness-toy-r32-n20-seed2-v1", "swd-toy-r32-n20-nh128-seed2-v1"]

    assert evaluator.evaluate(reals.source, fakes) == result
    assert reals.reads == 1  # the swd-only evaluator and this one took the reals from the cache


def test_a_registered_feature_metric_shares_the_extractor_run_with_fid(tmp_path, registered, toy_extractor):
    reals = CountingSource(images(2), cache_lib.StatsCache(str(tmp_path)))
    fakes, _ = counting_generator(images(3, channels=1))
    together = evaluate.Evaluator(["fid", "featmean"], 20, batch_size=8, progress=False).evaluate(reals.source, fakes)
    assert toy_extractor == [8, 8, 4] * 2  # one extractor call per batch of each set, for both metrics
    assert set(together) == {"FID", "FeatMeanDiff"} and together["FeatMeanDiff"] > 0
    assert sorted(os.listdir(tmp_path)) == ["featmean-toy-r32-n20-toy_extractor-v1", "fid-toy-r32-n20-toy_extractor-v1"]
    alone = evaluate.Evaluator(["fid"], 20, batch_size=8, progress=False).evaluate(reals.source, fakes)
    assert alone["FID"] == pytest.approx(together["FID"], rel=1e-12)


def test_only_statistics_missing_from_the_cache_are_computed(tmp_path, toy_extractor):
    reals = CountingSource(images(4), cache_lib.StatsCache(str(tmp_path)))
    fakes, _ = counting_generator(images(5))
    fid_first = evaluate.Evaluator(["fid"], 20, batch_size=10, progress=False).evaluate(reals.source, fakes)
    both = evaluate.Evaluator(["is", "fid"], 20, batch_size=10, progress=False).evaluate(reals.source, fakes)
    assert reals.reads == 2  # the second evaluation read the reals for IS only
    assert list(both) == ["FID", "IS", "IS_std", "IS_ref", "IS_ref_std"]  # fid before is, as registered
    assert both["FID"] == fid_first["FID"]
    assert len(os.listdir(tmp_path)) == 2


def test_results_with_a_key_of_another_metric_are_refused(registered, monkeypatch):
    monkeypatch.setattr(Brightness, "results", lambda self, ref, ev: {"SWDx1e3_avg": 0.0})
    src = CountingSource(images(6), None)
    with pytest.raises(ValueError, match=r"'brightness' reports key\(s\) \['SWDx1e3_avg'\]"):
        evaluate.Evaluator(["swd", "brightness"], 20, progress=False).evaluate(src.source, src.source)


def test_a_registered_metric_runs_from_the_cli_into_its_own_metric_file(tmp_path, registered, capsys):
    dataset = str(tmp_path / "fmnist100")
    shutil.copytree(FMNIST, dataset)
    out = str(tmp_path / "metric-brightness.txt")
    assert cli.cli(["progan-metrics", "--reals_only", "--split_halves", f"--dataset_dir={dataset}",
                    "--metrics=brightness", "--num_images=50", f"--output={out}", "--label=halves"]) == 0
    table = dict(line.split() for line in capsys.readouterr().out.splitlines()[1:])
    header, row = (line.split() for line in open(out).read().splitlines())
    assert header == ["Snapshot", "kimg", "Images", "Time_eval", "Brightness", "Brightness_ref", "BrightnessDiff"]
    assert row[:3] == ["halves", "-", "50"] and row[4:] == [table[k] for k in header[4:]]

    log = runs.MetricsLog(str(tmp_path / "run"), ["brightness", "swd"])
    log.write("ckpt-1", None, 50, 1.0, {"swd": {"SWDx1e3_avg": 2.0}, "brightness": {"Brightness": 3.0}})
    assert open(log.path("brightness")).read().splitlines()[0].split()[4:] == ["Brightness"]
    assert open(log.path("swd")).read().splitlines()[0].split()[4:] == ["SWDx1e3_avg"]

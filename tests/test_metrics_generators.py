"""Evaluating generators: run directories (every checkpoint), checkpoints, SavedModels, periodic metrics, errors."""
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from progan_tf import rundir
from progan_tf.datasets import reader as data
from progan_tf.metrics import cli, evaluate, fid, generators, runs, swd
from progan_tf.networks import Generator

FMNIST = os.path.join(FIXTURES, "original-format", "fmnist100")
RGB = os.path.join(FIXTURES, "original-format", "rgb100")
N = 40      # images per side: SWD's numbers are only compared with themselves here
SEED = 5

TINY = {"G.fmap_base": 32, "G.fmap_max": 8, "D.fmap_base": 32, "D.fmap_max": 8, "sched.lod_training_kimg": 0.1,
        "sched.lod_transition_kimg": 0.1, "sched.minibatch_base": 8, "sched.minibatch_dict": {},
        "sched.tick_kimg_base": 0.2, "sched.tick_kimg_dict": {}, "train.total_kimg": 0.4,
        "train.network_snapshot_ticks": 1, "train.grid_size": (4, 2), "dataset.shuffle_mb": 1}


def train_run(run_dir, dataset_dir, **overrides):
    """A few-second training run leaving one checkpoint per tick, plus the run.json progan-train writes."""
    from progan_tf.config import default_config
    from progan_tf.training import Trainer

    c = default_config()
    for k, v in {**TINY, **overrides}.items():
        group, field = k.split(".")
        c[group][field] = v
    trainer = Trainer(c, dataset_dir, str(run_dir))
    trainer.run()
    trainer.close()
    with open(os.path.join(run_dir, rundir.RUN_INFO_FILE), "w") as f:
        json.dump({"dataset_dir": os.path.abspath(dataset_dir)}, f)
    return str(run_dir)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A writable copy of the Fashion-MNIST fixture, shared by the module (its statistics cache goes inside)."""
    path = str(tmp_path_factory.mktemp("data") / "fmnist100")
    shutil.copytree(FMNIST, path)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, dataset):
    return train_run(tmp_path_factory.mktemp("runs") / "00000-tiny", dataset, **{"dataset.use_labels": False})


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A fresh copy of the trained run for each test, so metric files start empty."""
    path = str(tmp_path / "run")
    shutil.copytree(trained_run, path)
    return path


def run_cli(*args):
    return cli.cli(["progan-metrics", *args])


def reals(path, n=None):
    images = np.concatenate([x for x, _ in data.iterate_images(path)])
    return images if n is None else images[:n]


def seeded_fakes(G, n, seed=SEED, label_pool=None):
    """Fakes computed independently of the metrics code: the documented latents/labels, G, rint + clip."""
    latents = np.random.default_rng([seed, 0]).standard_normal((n, G.latent_size), dtype=np.float32)
    labels = None
    if label_pool is not None:
        labels = label_pool[np.random.default_rng([seed, 1]).integers(0, len(label_pool), n)]
    x = np.asarray(G(latents, labels), np.float64)
    return np.clip(np.rint(x * 127.5 + 127.5), 0, 255).astype(np.uint8)


def read_metric_file(path):
    lines = open(path).read().splitlines()
    return lines[0].split(), [line.split() for line in lines[1:]]


def tensorboard_scalars(directory, tag):
    """[(step, value)] of `tag` over every events file in `directory`."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag == tag:
                    out.append((event.step, float(tf.make_ndarray(v.tensor))))
    return out


def checkpoint_names(run):
    prefixes = glob.glob(os.path.join(run, "checkpoints", "*.index"))
    return sorted((os.path.basename(p)[:-len(".index")] for p in prefixes), key=lambda name: int(name.split("-")[1]))


# ----------------------------------------------------------------- run directories and checkpoints

def test_run_dir_evaluates_every_checkpoint_in_order_and_reuses_real_statistics(run_dir, dataset, count_reads,
                                                                                   capsys):
    from progan_tf.snapshot import load_snapshot

    names = checkpoint_names(run_dir)
    assert len(names) >= 2
    args = ["--metrics=swd", f"--num_images={N}", "--batch_size=16", f"--seed={SEED}", run_dir]
    assert run_cli(*args) == 0  # dataset_dir from run.json
    assert len(count_reads) == 1  # the reals once (cached from now on), not once per checkpoint

    header, rows = read_metric_file(os.path.join(run_dir, "metric-swd.txt"))
    assert header == ["Snapshot", "kimg", "Images", "Time_eval", "SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"]
    assert [r[0] for r in rows] == names  # every checkpoint, oldest first
    assert [float(r[1]) for r in rows] == [round(int(n.split("-")[1]) / 1000, 1) for n in names]
    assert all(r[2] == str(N) for r in rows)
    real = reals(dataset, N)
    for name, row in zip(names, rows):
        expect = swd.swd([real], [seeded_fakes(load_snapshot(os.path.join(run_dir, "checkpoints", name)).Gs, N)],
                         N, seed=SEED)
        assert [float(v) for v in row[4:]] == pytest.approx(
            [expect["SWDx1e3_32"], expect["SWDx1e3_16"], expect["SWDx1e3_avg"]], abs=5e-5)
    assert len({r[6] for r in rows}) == len(rows)  # different checkpoints, different numbers
    printed = capsys.readouterr().out
    assert all(name in printed for name in names)

    scalars = tensorboard_scalars(run_dir, "Metrics/SWDx1e3_avg")
    assert [v for _, v in scalars] == pytest.approx([float(r[6]) for r in rows], abs=5e-5)
    assert [s for s, _ in scalars] == [int(n.split("-")[1]) // 1000 for n in names]

    reads = len(count_reads)
    assert run_cli(*args) == 0  # second evaluation: reals from the cache, same numbers
    assert len(count_reads) == reads
    _, rows2 = read_metric_file(os.path.join(run_dir, "metric-swd.txt"))
    assert len(rows2) == 2 * len(rows)
    assert [r[4:] for r in rows2[len(rows):]] == [r[4:] for r in rows]


def test_one_checkpoint_and_several_metric_files(run_dir, tmp_path):
    names = checkpoint_names(run_dir)
    prefix = os.path.join(run_dir, "checkpoints", names[0])
    out = str(tmp_path / "out")
    assert run_cli("--metrics=swd,msssim", "--num_images=20", f"--output_dir={out}", prefix) == 0
    for metric, columns in (("swd", ["SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"]),
                            ("msssim", ["MS-SSIM", "MS-SSIM_ref"])):
        header, rows = read_metric_file(os.path.join(out, f"metric-{metric}.txt"))
        assert header[4:] == columns
        assert [r[0] for r in rows] == [names[0]]
    assert not glob.glob(os.path.join(run_dir, "metric-*.txt"))  # --output_dir, not the run directory


def test_fid_of_a_checkpoint_with_a_keras_extractor(run_dir, dataset, tmp_path, count_reads):
    """FID goes through the same generator path, and its real statistics are cached too."""
    import keras

    from progan_tf.snapshot import load_snapshot

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    extractor = str(tmp_path / "extractor.keras")
    model.save(extractor)
    prefix = os.path.join(run_dir, "checkpoints", checkpoint_names(run_dir)[-1])
    args = ["--metrics=fid", f"--num_images={N}", f"--seed={SEED}", f"--feature_extractor={extractor}", prefix]
    assert run_cli(*args) == 0
    reads = len(count_reads)
    assert run_cli(*args) == 0
    assert len(count_reads) == reads
    _, rows = read_metric_file(os.path.join(run_dir, "metric-fid.txt"))
    assert len(rows) == 2 and rows[0][4] == rows[1][4]
    stats = []
    for images in (reals(dataset, N), seeded_fakes(load_snapshot(prefix).Gs, N)):
        feats = np.asarray(model(np.repeat(images, 3, -1).astype(np.float32) / 127.5 - 1.0), np.float64)
        stats += [feats.mean(0), np.cov(feats, rowvar=False)]
    assert float(rows[0][4]) == pytest.approx(fid.frechet_distance(*stats), abs=1e-4, rel=1e-4)
    assert float(rows[0][4]) > 1e-3


def test_conditional_run_draws_labels_from_the_dataset(tmp_path, dataset):
    from progan_tf.snapshot import load_snapshot

    run = train_run(tmp_path / "cond", dataset, **{"train.total_kimg": 0.2, "dataset.use_labels": True})
    snap = load_snapshot(run)
    assert snap.Gs.label_size == 10
    assert run_cli("--metrics=swd", f"--num_images={N}", f"--seed={SEED}", run) == 0
    _, rows = read_metric_file(os.path.join(run, "metric-swd.txt"))
    pool = data.load_labels(dataset)
    expect = swd.swd([reals(dataset, N)], [seeded_fakes(snap.Gs, N, label_pool=pool)], N, seed=SEED)
    assert float(rows[-1][6]) == pytest.approx(expect["SWDx1e3_avg"], abs=5e-5)
    # The same latents with other labels give other images: the labels really reach G.
    other = seeded_fakes(snap.Gs, N, label_pool=np.roll(pool, 1, axis=1))
    assert not np.array_equal(other, seeded_fakes(snap.Gs, N, label_pool=pool))


def test_checkpoints_are_listed_by_images_shown_not_by_name(tmp_path):
    os.makedirs(tmp_path / "checkpoints")
    for name in ("ckpt-1000.index", "ckpt-224.index", "ckpt-96.index", "ckpt-96.data-00000-of-00001", "checkpoint"):
        open(tmp_path / "checkpoints" / name, "w").close()
    targets, run = generators.resolve_targets(str(tmp_path / "checkpoints"))
    assert run == str(tmp_path)
    assert [(t.name, t.kimg) for t in targets] == [("ckpt-96", 0.096), ("ckpt-224", 0.224), ("ckpt-1000", 1.0)]
    assert all(t.path == str(tmp_path / "checkpoints" / t.name) for t in targets)
    single, run = generators.resolve_targets(str(tmp_path / "checkpoints" / "ckpt-224"))
    assert run == str(tmp_path) and [t.name for t in single] == ["ckpt-224"]


def test_a_checkpoint_deleted_during_evaluation_is_skipped(run_dir, dataset):
    from progan_tf.metrics import cache as cache_lib

    targets, _ = generators.resolve_targets(run_dir)
    for suffix in (".index", ".data-00000-of-00001"):
        os.remove(targets[0].path + suffix)  # as the trainer's CheckpointManager does with old ones
    evaluator = evaluate.Evaluator(["swd"], 10, progress=False)
    reference = evaluate.dataset_source(dataset, 0, None, cache_lib.StatsCache(None))
    seen = []
    results = runs.evaluate_targets(targets, evaluator, reference, dataset, None,
                                    on_result=lambda target, result, seconds: seen.append(target.name))
    assert seen == [t.name for t in targets[1:]] and len(results) == len(targets) - 1


def test_seeded_inputs_ignore_the_batch_size_and_draw_dataset_label_rows():
    pool = np.eye(4, dtype=np.float32)[[0, 1, 1, 3]]
    inputs = generators.SeededInputs(6, seed=2, label_pool=pool)
    a = list(inputs.batches(10, 3))
    b = list(inputs.batches(10, 10))
    assert [len(z) for z, _ in a] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([z for z, _ in a]), b[0][0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in a]), b[0][1])
    labels = b[0][1]
    assert all(any(np.array_equal(row, p) for p in pool) for row in labels)
    assert not np.array_equal(b[0][0], list(generators.SeededInputs(6, seed=3).batches(10, 10))[0][0])


def test_to_uint8_rounds_and_clips_like_the_original():
    x = np.array([-1.5, -1.0, -0.0039, 0.0, 0.0039, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(generators.to_uint8(x), [0, 0, 127, 128, 128, 255, 255])
    images = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(generators.to_uint8(images / 127.5 - 1.0), images)  # exact round trip


# ----------------------------------------------------------------- SavedModels

def tiny_generator(label_size=0, resolution=32, channels=1):
    G = Generator(resolution=resolution, num_channels=channels, label_size=label_size, fmap_base=32, fmap_max=8)
    G(np.zeros((1, G.latent_size), np.float32), np.zeros((1, label_size), np.float32) if label_size else None)
    return G


def save_generator(G, path):
    """A SavedModel with the export signature: latents (+ labels) -> {"images": uint8 NHWC}."""
    module = tf.Module()
    module.G = G
    specs = [tf.TensorSpec([None, G.latent_size], tf.float32, name="latents")]
    if G.label_size:
        specs.append(tf.TensorSpec([None, G.label_size], tf.float32, name="labels"))

    def images(x):
        return {"images": tf.cast(tf.clip_by_value(tf.round(x * 127.5 + 127.5), 0, 255), tf.uint8)}

    if G.label_size:
        serve = tf.function(lambda latents, labels: images(G(latents, labels)), input_signature=specs)
    else:
        serve = tf.function(lambda latents: images(G(latents)), input_signature=specs)
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return str(path)


@pytest.mark.parametrize("label_size", [0, 10])
def test_saved_model_is_evaluated_through_its_signature(tmp_path, dataset, label_size, capsys):
    G = tiny_generator(label_size)
    path = save_generator(G, tmp_path / "exported")
    assert run_cli("--metrics=swd", f"--num_images={N}", f"--seed={SEED}", f"--dataset_dir={dataset}", path) == 0
    assert not glob.glob(os.path.join(tmp_path, "**", "metric-*.txt"), recursive=True)  # no run dir: print only
    out = capsys.readouterr().out.splitlines()
    row = out[out.index(next(line for line in out if line.startswith("Snapshot"))) + 1].split()
    assert row[:2] == ["exported", "-"]
    pool = data.load_labels(dataset) if label_size else None
    expect = swd.swd([reals(dataset, N)], [seeded_fakes(G, N, label_pool=pool)], N, seed=SEED)
    assert float(row[-1]) == pytest.approx(expect["SWDx1e3_avg"], abs=5e-5)

    logs = str(tmp_path / "logs")
    assert run_cli("--metrics=swd", f"--num_images={N}", f"--seed={SEED}", f"--dataset_dir={dataset}",
                   f"--output_dir={logs}", path) == 0
    _, rows = read_metric_file(os.path.join(logs, "metric-swd.txt"))
    assert rows[0][:3] == ["exported", "-", str(N)] and float(rows[0][6]) == float(row[-1])


# ----------------------------------------------------------------- periodic metrics and reference values

class RealImagesGenerator:
    """A stand-in "generator" whose fakes are real images [offset, offset + count) as floats in [-1, 1], cyclically."""

    def __init__(self, images, resolution=32, channels=1, latent_size=4):
        self.images = images.astype(np.float32) / 127.5 - 1.0
        self.resolution, self.num_channels, self.latent_size, self.label_size = resolution, channels, latent_size, 0
        self.name = "real-images"
        self.position = 0

    def __call__(self, latents, labels=None):
        idx = (self.position + np.arange(len(latents))) % len(self.images)
        self.position += len(latents)
        return self.images[idx]


def test_periodic_metrics_of_real_images_equal_the_real_vs_real_value(dataset, tmp_path, count_reads, capsys):
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={dataset}", "--metrics=swd",
                   "--num_images=50", f"--seed={SEED}") == 0
    real_vs_real = {line.split()[0]: float(line.split()[1]) for line in capsys.readouterr().out.splitlines()[2:]}

    run = str(tmp_path / "run")
    periodic = runs.PeriodicMetrics(dataset, ["swd"], 50, run, seed=SEED, batch_size=16)
    fake = RealImagesGenerator(reals(dataset)[50:100])
    reads = len(count_reads)
    first = periodic(fake, kimg=1.2)
    assert len(count_reads) == reads  # the reals' statistics came from the CLI's cache
    assert first["SWDx1e3_avg"] == pytest.approx(real_vs_real["SWDx1e3_avg"], abs=5e-5)
    assert first["SWDx1e3_avg"] > 1.0  # two different halves: not trivially zero
    second = periodic(fake, kimg=2.0)
    assert second == first
    periodic.close()
    _, rows = read_metric_file(os.path.join(run, "metric-swd.txt"))
    assert [r[:3] for r in rows] == [["train-1200", "1.2", "50"], ["train-2000", "2.0", "50"]]
    assert [s for s, _ in tensorboard_scalars(run, "Metrics/SWDx1e3_avg")] == [1, 2]


def test_identical_fakes_give_zero_swd(dataset, tmp_path):
    periodic = runs.PeriodicMetrics(dataset, " swd, ", 30, str(tmp_path), seed=SEED)  # a config comma list
    result = periodic(RealImagesGenerator(reals(dataset, 30)), kimg=0.0)
    assert result["SWDx1e3_avg"] == pytest.approx(0.0, abs=1e-6)


def test_periodic_metrics_with_a_keras_generator_and_a_given_summary_writer(dataset, tmp_path):
    G = tiny_generator()
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    periodic = runs.PeriodicMetrics(dataset, ["swd"], N, str(tmp_path), seed=SEED, summary_writer=writer)
    result = periodic(G, kimg=0.6, name="ckpt-600")
    periodic.close()  # must not close the trainer's writer
    with writer.as_default(step=1):
        assert tf.summary.scalar("still/open", 1.0)
    writer.flush()
    expect = swd.swd([reals(dataset, N)], [seeded_fakes(G, N)], N, seed=SEED)
    assert result == pytest.approx(expect, abs=1e-9)
    scalars = tensorboard_scalars(str(tmp_path / "tb"), "Metrics/SWDx1e3_avg")
    assert scalars == [(0, pytest.approx(result["SWDx1e3_avg"]))]
    assert read_metric_file(os.path.join(tmp_path, "metric-swd.txt"))[1][0][0] == "ckpt-600"


def test_periodic_metrics_refuse_bad_settings_up_front(dataset, tmp_path):
    with pytest.raises(ValueError, match="only 100"):
        runs.PeriodicMetrics(dataset, ["swd"], 500, str(tmp_path))
    with pytest.raises(ValueError, match="unknown metric"):
        runs.PeriodicMetrics(dataset, "swd,kid", 10, str(tmp_path))
    with pytest.raises(ValueError, match="at least one metric"):
        runs.PeriodicMetrics(dataset, "", 10, str(tmp_path))
    with pytest.raises(fid.ExtractorError, match="--feature_extractor not found"):
        runs.PeriodicMetrics(dataset, "swd,fid", 10, str(tmp_path),
                             extractor_options=evaluate.ExtractorOptions(feature_extractor="/missing/model.keras"))
    periodic = runs.PeriodicMetrics(dataset, ["swd"], 10, str(tmp_path))
    with pytest.raises(generators.TargetError, match="16x16x1 images but dataset .* 32x32x1"):
        periodic(RealImagesGenerator(reals(dataset, 10)[:, ::2, ::2], resolution=16), kimg=0.0)


# ----------------------------------------------------------------- errors

def test_clear_errors(run_dir, tmp_path, dataset, capsys):
    missing = str(tmp_path / "no-such-run")
    assert run_cli("--metrics=swd", missing) == 1
    assert f"{missing}: no such run directory, checkpoint or SavedModel" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("--metrics=swd", str(empty)) == 1
    assert "no checkpoints/ckpt-*.index and no saved_model.pb" in capsys.readouterr().err

    lone = tmp_path / "lone"  # a checkpoint copied out of its run: no run.json
    shutil.copytree(os.path.join(run_dir, "checkpoints"), lone / "checkpoints")
    shutil.copy(os.path.join(run_dir, "networks.json"), lone)
    prefix = str(lone / "checkpoints" / checkpoint_names(run_dir)[-1])
    assert run_cli("--metrics=swd", "--num_images=10", prefix) == 1
    err = capsys.readouterr().err
    assert prefix in err and "--dataset_dir" in err and "run.json names none" in err
    assert run_cli("--metrics=swd", "--num_images=10", f"--dataset_dir={dataset}", prefix) == 0

    with open(os.path.join(run_dir, "run.json"), "w") as f:  # the run was trained on another machine
        json.dump({"dataset_dir": "/elsewhere/fmnist100"}, f)
    assert run_cli("--metrics=swd", "--num_images=10", run_dir) == 1
    assert "the training dataset /elsewhere/fmnist100 (from run.json) does not exist" in capsys.readouterr().err

    assert run_cli("--metrics=swd", "--num_images=10", f"--dataset_dir={RGB}", run_dir) == 1
    assert "generates 32x32x1 images but dataset" in capsys.readouterr().err


def test_resolution_mismatch_names_both_shapes(run_dir, capsys):
    assert run_cli("--metrics=swd", "--num_images=10", "--resolution=16", run_dir) == 1
    err = capsys.readouterr().err
    assert "generates 32x32x1 images" in err and "compared at 16x16x1" in err


def test_a_lower_resolution_model_is_compared_at_its_level_with_resolution(tmp_path, dataset, capsys):
    path = save_generator(tiny_generator(resolution=16), tmp_path / "exported16")
    assert run_cli("--metrics=swd", "--num_images=10", f"--dataset_dir={dataset}", path) == 1
    err = capsys.readouterr().err
    assert "generates 16x16x1 images but" in err and "compare at its level with --resolution=16" in err
    assert run_cli("--metrics=swd", "--num_images=10", f"--dataset_dir={dataset}", "--resolution=16", path) == 0
    out = capsys.readouterr().out
    assert "SWDx1e3_16" in out and "SWDx1e3_32" not in out


def test_a_progan_export_finds_its_run_dataset_and_kimg_in_its_metadata(run_dir, tmp_path, capsys):
    path = save_generator(tiny_generator(), tmp_path / "exported")
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(rundir.export_metadata_path(path), "w") as f:
        json.dump({"training": {"nimg": 416, "kimg": 0.416, "run_dir": run_dir}}, f)
    logs = str(tmp_path / "logs")
    assert run_cli("--metrics=swd", "--num_images=10", f"--output_dir={logs}", path) == 0  # no --dataset_dir
    _, rows = read_metric_file(os.path.join(logs, "metric-swd.txt"))
    assert rows[0][:2] == ["exported", "0.4"]
    assert [s for s, _ in tensorboard_scalars(logs, "Metrics/SWDx1e3_avg")] == [0]
    assert not glob.glob(os.path.join(run_dir, "metric-*.txt"))  # an export never writes into the run


def test_saved_model_without_dataset_and_usage_errors(tmp_path, dataset, capsys):
    path = save_generator(tiny_generator(), tmp_path / "exported")
    assert run_cli("--metrics=swd", path) == 1
    assert "the SavedModel's metadata leads to no run.json" in capsys.readouterr().err
    with pytest.raises(cli.app.UsageError, match="give one run directory"):
        run_cli("--metrics=swd", path, path)
    with pytest.raises(cli.app.UsageError, match="drop them to evaluate"):
        run_cli("--reals_only", "--split_halves", f"--dataset_dir={dataset}", path)
    assert run_cli("--metrics=swd", "--num_images=101", f"--dataset_dir={dataset}", path) == 1
    assert "fewer than --num_images=101" in capsys.readouterr().err

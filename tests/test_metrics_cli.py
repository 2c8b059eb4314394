"""`progan-metrics` on small datasets in the original format: values, cache reuse, errors."""
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from progan_tf.datasets import reader as data
from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import cli, fid, ms_ssim, swd

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "original-format")


@pytest.fixture
def fmnist(tmp_path):
    """A writable copy of the 100-image Fashion-MNIST fixture (the cache goes inside it)."""
    path = os.path.join(tmp_path, "fmnist100")
    shutil.copytree(os.path.join(FIXTURES, "fmnist100"), path)
    return path


@pytest.fixture
def rgb(tmp_path):
    path = os.path.join(tmp_path, "rgb100")
    shutil.copytree(os.path.join(FIXTURES, "rgb100"), path)
    return path


def all_images(path):
    return np.concatenate([x for x, _ in data.iterate_images(path)])


def run_cli(*args):
    """Runs the CLI in-process from the flag defaults; returns its exit code."""
    return cli.cli(["progan-metrics", *args])


def parse_table(text):
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] != "metric":
            values[parts[0]] = float(parts[1])
    return values


def test_split_halves_values_and_cache_reuse(fmnist, capsys, count_reads):
    args = ["--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--metrics=swd,msssim",
            "--num_images=50", "--batch_size=16", "--seed=3"]
    assert run_cli(*args) == 0
    first = parse_table(capsys.readouterr().out)
    assert len(count_reads) == 2  # each half read once for both SWD and MS-SSIM

    images = all_images(fmnist)
    expect = swd.swd([images[:50]], [images[50:]], 50, seed=3)
    for k, v in expect.items():
        assert first[k] == pytest.approx(v, abs=5e-5)  # the table prints 4 decimals
    assert first["MS-SSIM"] == pytest.approx(ms_ssim.ms_ssim([images[50:]], 50, seed=3, progress=None), abs=5e-5)
    assert first["MS-SSIM_ref"] == pytest.approx(ms_ssim.ms_ssim([images[:50]], 50, seed=3, progress=None),
                                                 abs=5e-5)
    entries = os.listdir(cache_lib.default_cache_dir(fmnist))
    assert len(entries) == 4 and not any(e.startswith(".tmp") for e in entries)

    reads = len(count_reads)  # all_images() above read the dataset too
    assert run_cli(*args) == 0  # second run: everything from the cache
    assert parse_table(capsys.readouterr().out) == first
    assert len(count_reads) == reads

    assert run_cli(*args, "--nouse_cache") == 0
    assert len(count_reads) == reads + 2


def test_fid_between_two_datasets_with_a_keras_extractor(fmnist, rgb, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)
    path = os.path.join(tmp_path, "extractor.keras")
    model.save(path)
    assert run_cli("--reals_only", f"--dataset_dir={fmnist}", f"--dataset_dir2={rgb}", "--metrics=fid",
                   "--num_images=40", f"--feature_extractor={path}") == 0
    got = parse_table(capsys.readouterr().out)["FID"]
    a, b = all_images(fmnist)[:40], all_images(rgb)[:40]
    stats = []
    for images in (np.repeat(a, 3, -1), b):
        feats = np.asarray(model(images.astype(np.float32) / 127.5 - 1.0), np.float64)
        stats += [feats.mean(0), np.cov(feats, rowvar=False)]
    assert got > 0.01
    assert got == pytest.approx(fid.frechet_distance(*stats), abs=1e-4, rel=1e-4)


def test_output_file_gets_one_line_per_evaluation(fmnist, tmp_path, capsys):
    out = os.path.join(tmp_path, "metric-swd.txt")
    for label in ("first", "second"):
        assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--num_images=20",
                       f"--output={out}", f"--label={label}") == 0
    lines = open(out).read().splitlines()
    assert lines[0].split() == ["Snapshot", "kimg", "Images", "Time_eval", "SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"]
    assert [line.split()[:3] for line in lines[1:]] == [["first", "-", "20"], ["second", "-", "20"]]
    assert lines[1].split()[4:] == lines[2].split()[4:]  # same numbers, second time from the cache
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--num_images=20",
                   "--metrics=swd,msssim", f"--output={out}") == 1  # other columns: refused
    assert len(open(out).read().splitlines()) == 3


def test_offline_inception_gives_a_clear_error(fmnist, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(keras.src.applications.inception_v3.file_utils, "get_file", offline)
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--metrics=fid",
                   "--num_images=10") == 1
    err = capsys.readouterr().err
    assert "--inception_weights=<local .h5/.weights.h5 file>" in err and "SavedModel" in err


def test_usage_errors(fmnist, capsys):
    assert run_cli(f"--dataset_dir={fmnist}", "--metrics=swd", "runs/00001") == 1
    assert "runs/00001: no such run directory, checkpoint or SavedModel" in capsys.readouterr().err
    with pytest.raises(cli.app.UsageError, match="exactly one of"):
        run_cli("--reals_only", f"--dataset_dir={fmnist}")
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--num_images=60") == 1


def test_flags_live_outside_absl_global_flags():
    # progan-train defines --dataset_dir in absl's global FLAGS; ours must not collide with it.
    from absl import flags
    assert cli.FLAGS is not flags.FLAGS and "dataset_dir" in cli.FLAGS


def test_console_script_reports_a_missing_run_dir(fmnist):
    proc = subprocess.run([sys.executable, "-m", "progan_tf.metrics.cli", f"--dataset_dir={fmnist}",
                           "some_run_dir"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "some_run_dir: no such run directory, checkpoint or SavedModel" in proc.stderr


@pytest.mark.slow  # full-size InceptionV3 at 299x299 on a CPU: about a minute
def test_fid_and_is_with_a_local_inception_weights_file(fmnist, tmp_path, capsys):
    # Random InceptionV3 weights *with* the top, saved to a file: the same path as
    # --inception_weights=inception_v3_weights_tf_dim_ordering_tf_kernels.h5.
    keras.utils.set_random_seed(4)
    model = keras.applications.InceptionV3(include_top=True, weights=None, input_shape=(299, 299, 3))
    path = os.path.join(tmp_path, "inception_top.weights.h5")
    model.save_weights(path)
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--metrics=fid,is",
                   "--num_images=20", f"--inception_weights={path}", "--extractor_batch_size=10") == 0
    got = parse_table(capsys.readouterr().out)
    images = all_images(fmnist)
    x = np.repeat(images[:40], 3, -1).astype(np.float32)
    x = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (299, 299))) / 127.5 - 1.0
    pool = keras.Model(model.input, [model.get_layer("avg_pool").output, model.output])
    feats, probs = (np.asarray(t, np.float64) for t in pool.predict(x, batch_size=10, verbose=0))
    stats = [feats[:20].mean(0), np.cov(feats[:20], rowvar=False), feats[20:].mean(0), np.cov(feats[20:], rowvar=False)]
    assert got["FID"] == pytest.approx(fid.frechet_distance(*stats), rel=1e-3, abs=1e-4)
    from progan_tf.metrics import inception_score as is_lib
    assert got["IS"] == pytest.approx(is_lib.inception_score_from_probs(probs[20:])[0], rel=1e-3)
    assert got["IS_ref"] == pytest.approx(is_lib.inception_score_from_probs(probs[:20])[0], rel=1e-3)
    # A notop file cannot give class probabilities: a clear error.
    notop = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg")
    notop_path = os.path.join(tmp_path, "inception_notop.weights.h5")
    notop.save_weights(notop_path)
    assert run_cli("--reals_only", "--split_halves", f"--dataset_dir={fmnist}", "--metrics=is",
                   "--num_images=20", f"--inception_weights={notop_path}", "--nouse_cache") == 1
    assert "with the classification top" in capsys.readouterr().err

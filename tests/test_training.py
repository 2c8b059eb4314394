"""The training loop on tiny networks and the original-format fixture (100 Fashion-MNIST images)."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES, REPO
from progan_tf.config import default_config
from progan_tf.snapshot import SnapshotError, load_snapshot
from progan_tf.training import Trainer, TrainingError

DATASET = os.path.join(FIXTURES, "original-format", "fmnist100")

# 4x4 for 0.2 kimg, fade in 8x8 until 0.4, 8x8 until 0.6, fade in 16x16 until 0.8 ...
TINY = {
    "G.fmap_base": 32, "G.fmap_max": 8, "D.fmap_base": 32, "D.fmap_max": 8,
    "sched.lod_training_kimg": 0.2, "sched.lod_transition_kimg": 0.2, "sched.minibatch_base": 8,
    "sched.minibatch_dict": {}, "sched.tick_kimg_base": 0.2, "sched.tick_kimg_dict": {},
    "train.total_kimg": 0.6, "train.network_snapshot_ticks": 2, "train.grid_size": (4, 2),
    "dataset.shuffle_mb": 1, "train.mirror_augment": True,
}


def tiny_config(**overrides):
    c = default_config()
    for key, value in {**TINY, **overrides}.items():
        group, field = key.split(".")
        c[group][field] = value
    return c


def cli_flags(**overrides):
    return [f"--config.{k}={v!r}" if isinstance(v, (dict, tuple)) else f"--config.{k}={v}"
            for k, v in {**TINY, **overrides}.items()]


def progan_train(args, timeout=300, config="mnist.py", **popen):
    """progan-train with --config=configs/<config> (config=None: none) and args."""
    cmd = [sys.executable, "-m", "progan_tf.train"] + (["--config", os.path.join(REPO, "configs", config)]
                                                        if config else []) + args
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if popen:
        return subprocess.Popen(cmd, env=env, cwd=REPO, **popen)
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def checkpoint_values(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "VARIABLE_VALUE" in k and "save_counter" not in k}


def tensorboard_scalars(run_dir):
    """``tag -> [values in step order]`` of a run's TensorBoard scalars."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    out.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return out


def assert_same_training(a, b):
    """Two runs that should compute the same thing in a different float order (one device vs several).

    Rounding differences grow during GAN training, occasionally to ~2e-4 on a weight after 40 steps,
    so weights (and Gs) must agree within one Adam step (lr 1e-3) and the counters exactly. Adam's
    slots are not compared: with beta1 = 0 they hold the last raw gradients, which amplify rounding most.
    """
    assert a.keys() == b.keys()
    for key in a:
        if key.split("/")[0] in ("G", "D", "Gs"):
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-3, err_msg=key)
        elif key.split("/")[0] in ("nimg", "iteration", "stage_start_nimg", "stage_res") or "iteration" in key:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    worst = max((float(np.abs(a[k].astype(np.float64) - b[k]).max()), k) for k in a if k.split("/")[0] in ("G", "D"))
    print("largest weight difference:", worst)


def test_short_run_grows_and_writes_every_artifact(tmp_path):
    trainer = Trainer(tiny_config(**{"train.total_kimg": 0.65}), DATASET, str(tmp_path))
    summary = trainer.run()
    trainer.close()
    assert summary["kimg"] == pytest.approx(0.672) and summary["resolution"] == 16
    assert summary["stopped_by"] == "done"
    # One traced D step and G step per stage (4x4, 8x8, 16x16), whatever alpha did.
    assert sorted(trainer.steps.compiled) == [(2, 8), (3, 8), (4, 8)]
    for d_step, g_step in trainer.steps.compiled.values():
        assert d_step.experimental_get_tracing_count() == 1 and g_step.experimental_get_tracing_count() == 1
    files = set(os.listdir(tmp_path))
    assert {"log.txt", "reals.png", "summary.json", "checkpoints"} <= files
    fakes = sorted(f for f in files if f.startswith("fakes"))
    assert fakes == ["fakes000000.png"]      # named by whole kimg, as the original's fakes%06d.png
    from PIL import Image
    assert Image.open(tmp_path / fakes[-1]).size == (4 * 32, 2 * 32)
    ticks = [line for line in open(tmp_path / "log.txt") if line.startswith("tick ")]
    assert len(ticks) == 3 and "lod 1.80" in ticks[-1] and "minibatch 8" in ticks[-1]
    for word in ("kimg", "lod", "minibatch", "time", "sec/tick", "sec/kimg", "maintenance"):
        assert word in ticks[0]
    ckpts = glob.glob(str(tmp_path / "checkpoints" / "ckpt-*.index"))
    assert {os.path.basename(p) for p in ckpts} == {"ckpt-448.index", "ckpt-672.index"}
    # TensorBoard scalars of losses, gradient-penalty norms, lod, lr and timing, and the fakes image.
    events = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert {"Loss/D", "Loss/G", "Loss/mixed_norms", "Loss/real_scores", "Progress/lod", "LearningRate/G",
            "Timing/sec_per_kimg", "fakes"} <= tags
    # Gs moved away from G (EMA) but stays close to it.
    g, gs = trainer.G.get_weights(), trainer.Gs.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(g, gs))
    # The run directory alone rebuilds the networks and restores the final weights.
    snap = load_snapshot(str(tmp_path), with_discriminator=True)
    assert snap.nimg == 672 and snap.checkpoint.endswith("ckpt-672")
    for net, restored in ((trainer.Gs, snap.Gs), (trainer.G, snap.G), (trainer.D, snap.D)):
        for a, b in zip(net.weights, restored.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    snap = load_snapshot(str(tmp_path / "checkpoints" / "ckpt-448"))
    assert snap.nimg == 448 and snap.D is None
    with pytest.raises(SnapshotError, match="nowhere: no such run directory or checkpoint"):
        load_snapshot(str(tmp_path / "nowhere"))


def test_ema_beta_fixed_or_by_half_life(tmp_path):
    trainer = Trainer(tiny_config(), DATASET, str(tmp_path))
    assert trainer.ema_beta(8) == 0.999                       # the original: fixed per D step
    trainer.config.train.G_smoothing_kimg = 2.0
    assert trainer.ema_beta(64) ** (2000 / 64) == pytest.approx(0.5)   # half-life of 2 kimg
    assert trainer.ema_beta(32) ** (2000 / 32) == pytest.approx(0.5)
    trainer.close()


def test_resume_continues_exactly(tmp_path):
    full = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path / 'a'}", "--deterministic"]
                        + cli_flags())
    assert full.returncode == 0, full.stderr[-3000:]
    half = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path / 'b'}", "--deterministic"]
                        + cli_flags(**{"train.total_kimg": 0.3}))
    assert half.returncode == 0, half.stderr[-3000:]
    run_b = glob.glob(str(tmp_path / "b" / "*"))[0]
    # What a save killed before TensorFlow merged its parts leaves; the resume removes it.
    stale = os.path.join(run_b, "checkpoints", "ckpt-512_temp")
    os.makedirs(stale)
    open(os.path.join(stale, "part-00000-of-00001.index"), "wb").close()
    # Overrides without --config apply to the run's own config.json (train.total_kimg 0.3 -> 0.6).
    resumed = progan_train([f"--resume={run_b}", "--deterministic", "--config.train.total_kimg=0.6"], config=None)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in open(os.path.join(run_b, "log.txt")).read()
    assert not os.path.exists(stale) and "Removing 1 unfinished checkpoint save(s)" in resumed.stderr
    a = checkpoint_values(tf.train.latest_checkpoint(glob.glob(str(tmp_path / "a" / "*" / "checkpoints"))[0]))
    b = checkpoint_values(tf.train.latest_checkpoint(os.path.join(run_b, "checkpoints")))
    assert a.keys() == b.keys()
    assert sum(k.startswith("G/") for k in a) == sum(k.startswith("Gs/") for k in a) == 24   # every G weight
    assert sum(k.startswith("D/") for k in a) == 26
    assert a["nimg/.ATTRIBUTES/VARIABLE_VALUE"] == b["nimg/.ATTRIBUTES/VARIABLE_VALUE"] == 608
    for key in a:
        if not key.startswith("tick/"):   # the interrupted run reported one tick more
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key)


def test_mirrored_two_devices_match_one_device(tmp_path):
    flags = cli_flags(**{"train.total_kimg": 0.3}) + ["--deterministic"]
    one = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path / 'one'}"] + flags)
    assert one.returncode == 0, one.stderr[-3000:]
    two = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path / 'two'}", "--strategy=mirrored",
                        "--num_cpu_devices=2"] + flags)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 replica(s)" in open(glob.glob(str(tmp_path / "two" / "*" / "log.txt"))[0]).read()
    a = checkpoint_values(tf.train.latest_checkpoint(glob.glob(str(tmp_path / "one" / "*" / "checkpoints"))[0]))
    b = checkpoint_values(tf.train.latest_checkpoint(glob.glob(str(tmp_path / "two" / "*" / "checkpoints"))[0]))
    assert_same_training(a, b)


def test_sigterm_writes_a_checkpoint_and_resume_goes_on(tmp_path):
    proc = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path}"]
                        + cli_flags(**{"train.total_kimg": 1000.0, "train.network_snapshot_ticks": 1000}),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        log = None
        while time.time() < deadline:
            logs = glob.glob(str(tmp_path / "*" / "log.txt"))
            if logs and "tick 2 " in open(logs[0]).read():
                log = logs[0]
                break
            time.sleep(0.5)
        assert log, "training never reached tick 2"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "resume with: progan-train --resume=" in err
    run_dir = os.path.dirname(log)
    prefix = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    assert prefix is not None
    stopped_at = int(checkpoint_values(prefix)["nimg/.ATTRIBUTES/VARIABLE_VALUE"])
    assert stopped_at >= 400
    assert json.load(open(os.path.join(run_dir, "summary.json")))["stopped_by"] == "signal"
    resumed = progan_train([f"--resume={run_dir}"] + cli_flags(**{"train.total_kimg": stopped_at / 1000 + 0.1}))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed from {prefix}" in open(log).read()


def test_a_tick_of_only_skipped_updates_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(**{"train.total_kimg": 0.2}), DATASET, str(tmp_path))
    trainer.run()
    good = trainer.manager.latest_checkpoint
    trainer.config.train.total_kimg = 0.6
    weight = trainer.D.trainable_variables[0]
    weight.assign(tf.fill(weight.shape, np.nan))
    with pytest.raises(TrainingError, match=r"every update of tick 2 .* was skipped.*Last good checkpoint: .*ckpt-224"):
        trainer.run()
    trainer.close()
    assert trainer.manager.latest_checkpoint == good
    assert all(np.isfinite(v).all() for v in checkpoint_values(good).values())


def _fixture_copy(tmp_path):
    import shutil

    dataset = tmp_path / "fmnist100"
    shutil.copytree(DATASET, dataset)
    return dataset


def test_a_corrupt_record_mid_level_stops_training_by_name_and_keeps_the_checkpoint(tmp_path):
    """Record 4 of the 4x4 level (the reader checks only record 0) loses data bytes after a checkpoint;
    the rest of the 4x4 stage meets it (a raw DecodeRaw error before) and stops with the file named."""
    from run_fixtures import damage_record

    dataset, run_dir = _fixture_copy(tmp_path), str(tmp_path / "run")
    trainer = Trainer(tiny_config(**{"train.total_kimg": 0.05}), str(dataset), run_dir)
    trainer.run()
    assert trainer.manager.latest_checkpoint.endswith("ckpt-64")
    damage_record(dataset / "fmnist100-r02.tfrecords", 4, "length")
    trainer.config.train.total_kimg = 0.6          # the 4x4 stage goes on (to 0.2 kimg): a new input stream
    with pytest.raises(TrainingError) as caught:
        trainer.run()
    trainer.close()
    message = str(caught.value)
    assert f"dataset {dataset}, level r02 (4x4): fmnist100-r02.tfrecords: corrupt record 4: 13 data bytes" in message
    assert message.endswith(f"progan-dataset info --verify {dataset}") and "ckpt-64" in message
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == [
        "checkpoint", "ckpt-64.data-00000-of-00001", "ckpt-64.index", "ckpt-64.json"]
    assert load_snapshot(run_dir).nimg == 64


def test_a_crc_error_in_a_later_level_stops_progan_train_in_one_line_and_keeps_the_checkpoint(tmp_path):
    """A CRC error in the 8x8 file, first read when that stage starts (after a checkpoint at 4x4)."""
    from run_fixtures import damage_record

    dataset = _fixture_copy(tmp_path)
    start = damage_record(dataset / "fmnist100-r03.tfrecords", 4, "crc")
    out = progan_train([f"--dataset_dir={dataset}", f"--result_dir={tmp_path / 'runs'}"] + cli_flags(**{
        "sched.lod_training_kimg": 0.05, "sched.tick_kimg_base": 0.05, "train.network_snapshot_ticks": 1}),
        timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("progan-train: error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    assert (f"dataset {dataset}, level r03 (8x8): fmnist100-r03.tfrecords: corrupt record 4 at byte {start} "
            in errors[0]) and errors[0].endswith(f"progan-dataset info --verify {dataset}"), errors[0]
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    assert load_snapshot(run_dir).checkpoint.endswith("ckpt-64")
    assert sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.index"))) == [
        os.path.join(run_dir, "checkpoints", "ckpt-64.index")]


class _PoisonOneStep:
    """The configured loss, except that the D loss of the ``at``-th D step (counted inside the
    compiled step) is NaN, so that step's gradients are not finite."""

    def __init__(self, loss, at):
        self.name, self.d_inputs, self.g_loss, self._d_loss = loss.name, loss.d_inputs, loss.g_loss, loss.d_loss
        self.count, self.at = tf.Variable(0, dtype=tf.int64), at

    def d_loss(self, *args, **kwargs):
        loss, stats = self._d_loss(*args, **kwargs)
        step = self.count.assign_add(1)
        factor = tf.where(tf.equal(step, self.at), tf.constant(np.nan, loss.dtype), tf.constant(1.0, loss.dtype))
        return loss * factor, stats      # NaN times the loss: NaN gradients for that step


def test_a_non_finite_gradient_is_skipped_and_counted_and_training_goes_on(tmp_path):
    # No Adam reset at new stages, so that the iteration counters count every applied update.
    config = tiny_config(**{"train.total_kimg": 0.4, "train.reset_opt_for_new_lod": False})
    trainer = Trainer(config, DATASET, str(tmp_path))
    trainer.steps.loss = _PoisonOneStep(trainer.loss, at=5)   # before any step is traced
    d_weights = [v.numpy() for v in trainer.D.trainable_variables]
    summary = trainer.run()
    trainer.close()
    assert summary["stopped_by"] == "done"
    d_steps = int(trainer.nimg.numpy()) // 8
    assert int(trainer.D_adam.iterations.numpy()) == d_steps - 1       # exactly one update skipped
    assert int(trainer.G_adam.iterations.numpy()) == int(trainer.iteration.numpy())
    assert all(np.isfinite(v.numpy()).all() for v in trainer.D.weights + trainer.G.weights + trainer.Gs.weights)
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(d_weights, trainer.D.trainable_variables))
    log = open(os.path.join(str(tmp_path), "log.txt")).read().splitlines()
    ticks = [line for line in log if line.startswith("tick ")]
    assert ticks[0].endswith("skipped D 1 G 0") and not any("skipped" in t for t in ticks[1:])
    scalars = tensorboard_scalars(str(tmp_path))
    assert scalars["Skipped/D"][0] == 1.0 and sum(scalars["Skipped/D"]) == 1.0
    assert sum(scalars["Skipped/G"]) == 0.0


def test_bad_input_is_reported_before_training(tmp_path):
    cases = [
        (["--dataset_dir=" + DATASET, "--config.dataset.resolution=64"], "is 32x32 but the config says dataset.resolution=64"),
        (["--dataset_dir=" + DATASET, "--config.dataset.num_channels=3"], "has 1 channel(s) but the config says dataset.num_channels=3"),
        (["--dataset_dir=" + str(tmp_path / "missing")], "missing"),
        (["--dataset_dir=" + DATASET, "--config.loss.name=wgan"], "unknown loss 'wgan'"),
        (["--dataset_dir=" + DATASET, "--config.train.no_such_field=1"], "no_such_field"),
        (["--resume=" + str(tmp_path / "nowhere")], "nowhere"),
    ]
    for args, message in cases:
        out = progan_train(args + [f"--result_dir={tmp_path / 'runs'}"], timeout=120)
        assert out.returncode != 0 and message in out.stderr, (args, out.stderr[-2000:])
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        errors = [line for line in out.stderr.splitlines() if line.startswith("progan-train: error:")]
        assert len(errors) == 1 and message in errors[0], out.stderr[-2000:]
        assert "train a ProGAN on a TFRecord pyramid" not in out.stderr   # no usage text before it
    assert not os.listdir(tmp_path / "runs")   # a start that fails its checks leaves no run directory


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_no_run_directory(tmp_path):
    dataset = tmp_path / "fmnist100"
    shutil.copytree(DATASET, dataset)
    level = dataset / "fmnist100-r02.tfrecords"   # 100 records of 66 bytes; the reader checks only the first
    data = bytearray(level.read_bytes())
    data[4 * 66 + 40] ^= 0xFF                     # record 4's data: a CRC error in the first tick
    level.write_bytes(data)
    out = progan_train([f"--dataset_dir={dataset}", f"--result_dir={tmp_path / 'runs'}"] + cli_flags())
    assert out.returncode != 0 and "corrupted record" in out.stderr, out.stderr[-2000:]
    assert not os.listdir(tmp_path / "runs"), os.listdir(tmp_path / "runs")


def test_unreadable_checkpoint_is_named(tmp_path):
    run = tmp_path / "00000-x" / "checkpoints"
    run.mkdir(parents=True)
    (run / "ckpt-8.index").write_bytes(b"garbage")
    (run / "ckpt-8.data-00000-of-00001").write_bytes(b"garbage")
    (run / "checkpoint").write_text('model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-8"\n')
    out = progan_train([f"--resume={tmp_path / '00000-x'}", f"--dataset_dir={DATASET}"], timeout=120)
    assert out.returncode != 0
    assert "cannot restore checkpoint" in out.stderr and "ckpt-8" in out.stderr, out.stderr[-2000:]
    assert (run / "ckpt-8.index").exists()   # a resumed run's directory is never removed


def test_metrics_during_training(tmp_path):
    import shutil
    dataset = tmp_path / "fmnist100"
    shutil.copytree(DATASET, dataset)                       # the real-statistics cache is written next to it
    config = tiny_config(**{"train.total_kimg": 0.45, "train.metrics": "swd", "train.metrics_ticks": 1,
                            "train.metrics_num_images": 50})
    trainer = Trainer(config, str(dataset), str(tmp_path / "run"))
    trainer.run()
    trainer.close()
    rows = [line.split() for line in open(tmp_path / "run" / "metric-swd.txt") if not line.startswith("Snapshot")]
    ticks = [line for line in open(tmp_path / "run" / "log.txt") if line.startswith("tick ")]
    assert len(rows) == len(ticks) == 3
    checkpoints = {os.path.basename(p)[:-len(".index")] for p in glob.glob(str(tmp_path / "run" / "checkpoints" / "*.index"))}
    assert {row[0] for row in rows} & checkpoints                # snapshot ticks are named like the checkpoints
    assert all(float(row[-1]) > 0 for row in rows)              # SWD x1e3 average of fakes vs reals
    with pytest.raises(TrainingError, match="train.metrics"):
        Trainer(tiny_config(**{"train.metrics": "swd,bogus"}), str(dataset), str(tmp_path / "run2"))


def test_fid_during_training_with_a_local_feature_extractor(tmp_path):
    """Offline users point FID at their own extractor (no InceptionV3 download)."""
    import shutil
    dataset = tmp_path / "fmnist100"
    shutil.copytree(DATASET, dataset)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, strides=2, activation="relu")(inputs))
    extractor = str(tmp_path / "extractor.keras")
    keras.Model(inputs, outputs).save(extractor)
    config = tiny_config(**{"train.total_kimg": 0.3, "train.metrics": "fid", "train.metrics_ticks": 1,
                            "train.metrics_num_images": 50, "train.metrics_feature_extractor": extractor})
    trainer = Trainer(config, str(dataset), str(tmp_path / "run"))
    trainer.run()
    trainer.close()
    rows = [line.split() for line in open(tmp_path / "run" / "metric-fid.txt") if not line.startswith("Snapshot")]
    assert len(rows) == 2 and all(float(row[-1]) > 0 for row in rows)
    for field in ("metrics_feature_extractor", "metrics_inception_weights"):
        bad = tiny_config(**{"train.metrics": "fid", f"train.{field}": str(tmp_path / "missing.h5")})
        with pytest.raises(TrainingError, match=f"train.{field}: not found: .*missing.h5"):
            Trainer(bad, str(dataset), str(tmp_path / f"run-{field}"))


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_apply_if_finite_skips_the_whole_update(strategy):
    """The skip under the default strategy and under MirroredStrategy, whose optimizer apply
    merges across replicas (the skip's cond is then taken in cross-replica context)."""
    from progan_tf.steps import all_replicas_finite, apply_if

    strat = tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy == "mirrored" else tf.distribute.get_strategy()
    with strat.scope():
        w = tf.Variable([1.0, 2.0])
        opt = keras.optimizers.Adam(0.1)
        opt.build([w])

    @tf.function
    def step(scale):
        def replica():
            grads = [tf.constant([1.0, 1.0]) * scale]
            finite = all_replicas_finite(grads)
            apply_if(finite, opt, grads, [w])
            return tf.cast(finite, tf.float32)
        return strat.reduce(tf.distribute.ReduceOp.SUM, strat.run(replica), axis=None)

    assert float(step(tf.constant(np.inf))) == 0.0
    assert int(opt.iterations.numpy()) == 0 and w.numpy().tolist() == [1.0, 2.0]
    assert all(float(tf.reduce_sum(v)) == 0.0 for v in opt.variables if v.name != "learning_rate" and "iteration" not in v.name)
    assert float(step(tf.constant(1.0))) == 1.0
    assert int(opt.iterations.numpy()) == 1 and w.numpy()[0] < 1.0


def test_constructing_a_trainer_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(tiny_config(**{"train.total_kimg": 0.1}), DATASET, str(run_dir))
    assert not run_dir.exists()
    trainer.run()
    trainer.close()
    assert {"log.txt", "networks.json", "reals.png", "summary.json", "checkpoints"} <= set(os.listdir(run_dir))
    log = open(run_dir / "log.txt").read()
    assert log.index("Precision float32") < log.index("Training fmnist100")   # messages held until opened

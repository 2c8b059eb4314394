"""A training run killed at any moment resumes, and ``progan-train`` exits promptly once done."""
import glob
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from progan_tf.snapshot import load_snapshot
from test_training import DATASET, checkpoint_values, cli_flags, progan_train

# 4x4, fade in 8x8, 8x8, fade in 16x16: four ticks of 0.2 kimg, a checkpoint after each.
KILL_FLAGS = cli_flags(**{"train.total_kimg": 0.8, "train.network_snapshot_ticks": 1,
                          "train.image_snapshot_ticks": 100})


def _temp_dirs(ckpt_dir):
    try:
        return [n for n in os.listdir(ckpt_dir) if n.endswith("_temp")]
    except OSError:
        return []


def _kill_during_checkpoint_write(proc, ckpt_dir, deadline):
    """SIGKILLs ``proc`` while TensorFlow writes a checkpoint: its ``ckpt-N_temp/`` directory exists.

    The directory lives for milliseconds, so the process is frozen (SIGSTOP) as soon as it is seen
    and killed only if the directory is still there; otherwise it goes on (SIGCONT) to the next
    checkpoint. Only a write after the first checkpoint counts (so that there is one to resume
    from). True once killed so, False if the run ended first.
    """
    while time.time() < deadline and proc.poll() is None:
        if _temp_dirs(ckpt_dir) and glob.glob(os.path.join(ckpt_dir, "ckpt-*.json")):   # one written
            proc.send_signal(signal.SIGSTOP)
            if _temp_dirs(ckpt_dir):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.001)
    return False


def _started(log_path, starts_before):
    try:
        return open(log_path).read().count("Training fmnist100") > starts_before
    except OSError:
        return False


def _kill_after(proc, log_path, delay, deadline):
    """SIGKILLs ``proc`` ``delay`` seconds after its training started (its "Training ..." log line)."""
    starts = open(log_path).read().count("Training fmnist100")
    while not _started(log_path, starts) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    proc.kill()
    proc.wait()


def test_sigkill_during_a_checkpoint_write_and_at_random_moments_then_resume_to_the_end(tmp_path):
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 800   # minutes on a busy machine, under one quiet
    proc = progan_train([f"--dataset_dir={DATASET}", f"--result_dir={tmp_path}"] + KILL_FLAGS, **quiet)
    try:
        ckpt_dir = None
        while ckpt_dir is None and proc.poll() is None and time.time() < deadline:
            runs = glob.glob(str(tmp_path / "*"))
            ckpt_dir = os.path.join(runs[0], "checkpoints") if runs else None
            time.sleep(0.01)
        assert ckpt_dir, "the run directory never appeared"
        assert _kill_during_checkpoint_write(proc, ckpt_dir, deadline), "no checkpoint write was caught"
    finally:
        proc.kill()
    run_dir = os.path.dirname(ckpt_dir)
    log_path = os.path.join(run_dir, "log.txt")
    assert _temp_dirs(ckpt_dir)              # the kill did interrupt a write

    rng = random.Random(15)
    for delay in (rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0)):
        latest = _latest_checkpoint(run_dir)
        proc = progan_train([f"--resume={run_dir}"] + KILL_FLAGS, **quiet)
        try:
            _kill_after(proc, log_path, delay, deadline)
        finally:
            proc.kill()
        assert f"Resumed from {latest} " in open(log_path).read()   # at most one tick lost

    latest = _latest_checkpoint(run_dir)
    done = progan_train([f"--resume={run_dir}"] + KILL_FLAGS, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done: 0.8 kimg" in done.stdout and "stopped by done" in done.stdout, done.stdout
    log = open(log_path).read()
    assert f"Resumed from {latest} " in log and "Stopped (done) at kimg 0.8" in log

    assert not _temp_dirs(ckpt_dir), os.listdir(ckpt_dir)
    prefixes = sorted(p[:-len(".index")] for p in glob.glob(os.path.join(ckpt_dir, "ckpt-*.index")))
    assert os.path.join(ckpt_dir, "ckpt-800") in prefixes
    for prefix in prefixes:                  # every checkpoint left restores, every tensor reads
        snap = load_snapshot(prefix, with_discriminator=True)
        values = checkpoint_values(prefix)
        assert snap.nimg == int(values["nimg/.ATTRIBUTES/VARIABLE_VALUE"]) == int(prefix.rsplit("-", 1)[1])


def _latest_checkpoint(run_dir):
    from progan_tf import rundir

    return rundir.resolve_checkpoint(run_dir).checkpoint


# A tf.data iterator whose prefetch thread is stuck reading a FIFO that nobody writes to: what
# tearing down an iterator in the middle of a shuffle-buffer fill looks like at exit (the fill
# can take minutes on a busy machine), only forever. progan-train must not wait for it.
_STUCK_INPUT = """
import sys
import tensorflow as tf
from progan_tf import train
files = tf.data.Dataset.from_tensor_slices([sys.argv.pop(1), sys.argv.pop(1)])
stuck = iter(files.flat_map(tf.data.TFRecordDataset).prefetch(1))
next(stuck)   # the prefetch thread now blocks opening the FIFO
sys.argv[0] = "progan-train"
train.run()
"""


def test_progan_train_exits_without_waiting_for_the_input_pipeline_teardown(tmp_path):
    import tensorflow as tf

    record, fifo = str(tmp_path / "one.tfrecords"), str(tmp_path / "fifo")
    with tf.io.TFRecordWriter(record) as writer:
        writer.write(b"x")
    os.mkfifo(fifo)
    cmd = [sys.executable, "-c", _STUCK_INPUT, record, fifo, "--config", os.path.join(REPO, "configs", "mnist.py"),
           f"--dataset_dir={DATASET}", f"--result_dir={tmp_path / 'runs'}"] + cli_flags(**{"train.total_kimg": 0.2})
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        done_at = None
        for line in proc.stdout:
            if line.startswith("Done:"):
                done_at = time.time()
                break
        assert done_at is not None, "training did not finish"
        proc.wait(timeout=60)
        exited_after = time.time() - done_at
    except subprocess.TimeoutExpired:
        pytest.fail("progan-train did not exit within 60 s of 'Done:' (it waited for the input pipeline)")
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert exited_after < 20, exited_after
    run_dir = glob.glob(str(tmp_path / "runs" / "*"))[0]
    assert "Stopped (done)" in open(os.path.join(run_dir, "log.txt")).read()   # log.txt complete
    assert os.path.exists(os.path.join(run_dir, "summary.json"))
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))

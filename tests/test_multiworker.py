"""MultiWorkerMirroredStrategy: two CPU worker processes on 127.0.0.1 (TF_CONFIG), against one worker."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from conftest import REPO
from test_training import DATASET, assert_same_training, checkpoint_values, cli_flags

FLAGS = cli_flags(**{"dataset.shuffle_mb": 0, "train.mirror_augment": False}) + ["--deterministic"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_worker(index, ports, result_dir, extra, log_path):
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "progan_tf.train", "--config", os.path.join(REPO, "configs", "mnist.py"),
           f"--result_dir={result_dir}", "--collective_timeout=15"] + extra
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def run_cluster(tmp_path, name, extra, timeout=240):
    ports = free_ports(2)
    procs = [start_worker(i, ports, tmp_path / name, extra, tmp_path / f"{name}-w{i}.log") for i in range(2)]
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            p.kill()
    logs = [open(tmp_path / f"{name}-w{i}.log").read() for i in range(2)]
    return [p.returncode for p in procs], logs


def test_two_workers_match_one_worker_and_only_the_chief_writes(tmp_path):
    args = [f"--dataset_dir={DATASET}"] + FLAGS + ["--config.train.total_kimg=0.3"]
    codes, logs = run_cluster(tmp_path, "two", args)
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert "2 workers; this one is the chief" in logs[0] and "not the chief" in logs[1]
    one = subprocess.run([sys.executable, "-m", "progan_tf.train", "--config", os.path.join(REPO, "configs", "mnist.py"),
                          f"--result_dir={tmp_path / 'one'}"] + args, cwd=REPO, capture_output=True, text=True,
                         timeout=240, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert one.returncode == 0, one.stderr[-2000:]
    runs = glob.glob(str(tmp_path / "two" / "*"))
    assert len(runs) == 1                                  # one run directory, by the chief alone ...
    names = lambda d: sorted("events" if n.startswith("events.out") else n for n in os.listdir(d))
    assert names(runs[0]) == names(glob.glob(str(tmp_path / "one" / "*"))[0])   # ... holding what one worker writes
    a = checkpoint_values(tf.train.latest_checkpoint(os.path.join(runs[0], "checkpoints")))
    b = checkpoint_values(tf.train.latest_checkpoint(glob.glob(str(tmp_path / "one" / "*" / "checkpoints"))[0]))
    assert_same_training(a, b)


@pytest.mark.slow   # about a minute of two worker processes; `make test-slow` runs it
def test_a_killed_worker_restarts_and_the_cluster_finishes_from_the_last_checkpoint(tmp_path):
    ports = free_ports(2)
    args = [f"--dataset_dir={DATASET}"] + FLAGS + ["--config.train.total_kimg=1000",
                                                   "--config.train.network_snapshot_ticks=1"]
    procs = [start_worker(i, ports, tmp_path / "run", args, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not glob.glob(str(tmp_path / "run" / "*" / "checkpoints" / "ckpt-448.index")):
            time.sleep(0.5)
        assert glob.glob(str(tmp_path / "run" / "*" / "checkpoints" / "ckpt-448.index")), open(tmp_path / "w0.log").read()[-2000:]
        procs[1].send_signal(signal.SIGKILL)                 # a worker dies without warning
        procs[0].wait(timeout=180)                           # the chief notices and fails instead of hanging
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode != 0
    run_dir = glob.glob(str(tmp_path / "run" / "*"))[0]
    last = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    resumed_at = int(checkpoint_values(last)["nimg/.ATTRIBUTES/VARIABLE_VALUE"])
    target_kimg = resumed_at / 1000 + 0.2
    codes, logs = run_cluster(tmp_path, "again", [f"--resume={run_dir}"] + FLAGS[:-1] +
                              [f"--config.train.total_kimg={target_kimg}", "--deterministic"])
    assert codes == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    final = checkpoint_values(tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")))
    assert final["nimg/.ATTRIBUTES/VARIABLE_VALUE"] == resumed_at + 224      # 0.2 kimg in rounds of 32 images
    assert f"Resumed from {last}" in open(os.path.join(run_dir, "log.txt")).read()

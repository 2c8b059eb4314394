"""progan-experiment: variants, the training commands, and one tiny experiment end to end."""
import json
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import FIXTURES, REPO
from progan_tf import experiment, rundir

DATASET = os.path.join(FIXTURES, "original-format", "fmnist100")

# Tiny networks, 0.2 kimg per phase and per tick: each run takes seconds.
TINY = ["G.fmap_base=32", "G.fmap_max=8", "D.fmap_base=32", "D.fmap_max=8", "sched.lod_training_kimg=0.1",
        "sched.lod_transition_kimg=0.1", "sched.minibatch_base=8", "sched.minibatch_dict={}",
        "sched.tick_kimg_base=0.1", "sched.tick_kimg_dict={}", "train.total_kimg=0.2", "train.grid_size=(4,2)",
        "dataset.shuffle_mb=1"]


def test_variants_are_the_config_or_known_ablations():
    variants = experiment.parse_variants(["baseline", "no_ema", "no_ema+lsgan"])
    assert [(v.name, v.ablations) for v in variants] == [("baseline", ""), ("no_ema", "no_ema"),
                                                         ("no_ema+lsgan", "no_ema,lsgan")]
    with pytest.raises(experiment.ExperimentError, match="unknown ablation no_such.*no_growing"):
        experiment.parse_variants(["baseline", "no_such"])
    with pytest.raises(experiment.ExperimentError, match="no_ema is given twice"):
        experiment.parse_variants(["no_ema", "no_ema"])
    assert set(experiment.DEFAULT_VARIANTS) - {"baseline"} <= set(__import__("progan_tf.config").config.ABLATIONS)


def test_train_command_has_the_budget_and_a_checkpoint_every_tick():
    v = experiment.parse_variants(["no_growing"])[0]
    command = experiment.train_command(v, "configs/mnist.py", "data", "out/runs/no_growing", 12, ["train.seed=1"])
    assert command[1:3] == ["-m", "progan_tf.train"]
    assert "--config=configs/mnist.py:no_growing" in command
    assert "--config.train.max_time_minutes=12" in command
    assert "--config.train.network_snapshot_ticks=1" in command
    assert command[-1] == "--config.train.seed=1"


def test_core_sets_split_the_cores_between_concurrent_runs():
    assert experiment.core_sets(1) == [None]
    sets = experiment.core_sets(2)
    cores = sorted(os.sched_getaffinity(0))
    assert len(sets) == 2 and all(sets)
    if len(cores) >= 2:
        assert not set(sets[0]) & set(sets[1])


def test_results_table_prints_each_number_as_the_evaluation_did():
    final = {"SWDx1e3_16": 20.123456, "SWDx1e3_32": 30.5, "SWDx1e3_avg": 25.31, "MS-SSIM": 0.21, "MS-SSIM_ref": 0.2}
    results = {"baseline": {"kimg": 134.4, "resolution": 32, "time_s": 725.0, "final": final}}
    table = experiment.results_table(results).splitlines()
    assert table[0] == ("| run | kimg | reached | minutes | SWD avg | SWD 32 | SWD 16 | MS-SSIM | "
                        "MS-SSIM reals |")
    assert table[2] == "| `baseline` | 134.4 | 32x32 | 12.1 | 25.3100 | 30.5000 | 20.1235 | 0.2100 | 0.2000 |"


def _experiment(args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "progan_tf.experiment"] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_flags_are_named(tmp_path):
    r = _experiment(["--dataset_dir=" + DATASET, "--reference_dir=" + DATASET, f"--output_dir={tmp_path}",
                     "--variants=baseline,no_such"])
    assert r.returncode != 0 and "unknown ablation no_such" in r.stderr and "Traceback" not in r.stderr
    r = _experiment(["--dataset_dir=" + DATASET, f"--output_dir={tmp_path}"])
    assert r.returncode != 0 and "--reference_dir is required" in r.stderr


def test_a_tiny_experiment_writes_the_table_plot_and_grids(tmp_path):
    out = tmp_path / "exp"
    reference = shutil.copytree(DATASET, tmp_path / "reference")   # its statistics cache goes there
    args = ["--config=configs/mnist.py", "--variants=baseline,no_growing", "--dataset_dir=" + DATASET,
            f"--reference_dir={reference}", f"--output_dir={out}", "--minutes=2", "--num_images=64"]
    args += [f"--override={o}" for o in TINY]
    r = _experiment(args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]

    state = json.loads((out / "results.json").read_text())
    assert list(state["results"]) == ["baseline", "no_growing"]
    md = (out / "results.md").read_text()
    assert "progan-experiment --config=configs/mnist.py" in md and state["commit"] in md
    for name, result in state["results"].items():
        run_dir = result["run_dir"]
        # Every checkpoint was evaluated, with its training time from log.txt.
        assert [p["checkpoint"] for p in result["curve"]] == [os.path.basename(c) for c in
                                                             rundir.list_checkpoints(run_dir)]
        assert len(result["curve"]) == 2 and all(p["time_s"] is not None for p in result["curve"])
        assert 0.2 <= result["kimg"] < 0.26   # total_kimg, rounded up to whole schedule updates
        final = result["final"]
        assert final["checkpoint"] == result["curve"][-1]["checkpoint"]
        assert 0 < final["MS-SSIM"] < 1 and 0 < final["MS-SSIM_ref"] < 1
        # The table row holds what the evaluation measured, as it printed it.
        row = next(line for line in md.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {final['SWDx1e3_avg']:.4f} |" in row and f"| {final['MS-SSIM']:.4f} |" in row
        assert f"  {final['checkpoint']:<16} kimg" in r.stdout
        # The grid is the run's final fakes.
        fakes = rundir.list_fakes(run_dir)
        grid = out / "grids" / f"{name}.png"
        assert np.array_equal(iio.imread(grid), iio.imread(fakes[max(fakes)]))
    assert state["results"]["no_growing"]["resolution"] == 32   # full resolution from the start
    assert state["results"]["baseline"]["resolution"] < 32       # still growing
    assert iio.imread(out / "grids" / "reals.png").ndim >= 2
    assert not os.path.exists(os.path.join(DATASET, ".metrics-cache"))   # the fixture is left as it was
    plot = iio.imread(out / "swd.png")
    assert plot.shape[0] > 100 and plot.shape[1] > 100 and plot.std() > 0
    assert "![SWD against training time](swd.png)" in md and "grids/no_growing.png" in md

    # Continuing the finished experiment trains and evaluates nothing again.
    r = _experiment(args)
    assert r.returncode == 0 and "not trained again" in r.stderr and "evaluating" not in r.stdout

"""Presets and ablations."""
import glob
import importlib.util
import os
import resource
import subprocess
import sys
import time

import pytest

from conftest import REPO
from progan_tf.config import ABLATIONS, apply_ablations, default_config


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))))
def test_every_preset_loads_and_is_locked(path):
    c = load(path).get_config()
    assert set(c.keys()) == set(default_config().keys())
    with pytest.raises(AttributeError):
        c.train.no_such_field = 1
    assert c.dataset.resolution in (32, 128, 256, 1024)


def test_ablations_change_the_right_fields():
    c = load(os.path.join(REPO, "configs", "mnist.py")).get_config(",".join(ABLATIONS.keys() - {"lsgan"}))
    assert c.sched.lod_initial_resolution == 32
    assert (c.sched.lod_training_kimg, c.sched.lod_transition_kimg, c.train.total_kimg) == (0, 0, 10000)
    assert c.D.mbstd_group_size == 0
    assert (c.G.use_pixelnorm, c.G.use_wscale, c.D.use_wscale) == (False, False, False)
    assert (c.train.G_smoothing, c.train.reset_opt_for_new_lod, c.loss.name) == (0.0, False, "logistic_r1")
    assert c.desc.startswith("mnist-") and "nopixelnorm" in c.desc
    with pytest.raises(ValueError, match="unknown ablation 'no_gan'"):
        apply_ablations(default_config(), "no_gan")


V2_1GPU_MINIBATCH = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}


@pytest.mark.parametrize("name, mirror", [("celebahq_v1", True), ("celebahq_v2_1gpu", True), ("celeba", True),
                                          ("lsun_256", True), ("cifar10", False), ("mnist", False)])
def test_presets_follow_the_original_config_lines(name, mirror):
    c = load(os.path.join(REPO, "configs", f"{name}.py")).get_config()
    assert c.train.mirror_augment is mirror
    assert c.dataset.use_labels is False                   # unconditional unless a run asks ('-cond')
    assert c.G.fused_scale and c.D.fused_scale
    assert dict(c.sched.max_minibatch_per_replica) == {256: 16, 512: 8, 1024: 4}      # "-fp32"
    if name == "celebahq_v1":
        assert (c.D.mbstd_group_size, c.sched.minibatch_base, c.train.total_kimg) == (16, 16, 19000)
        assert dict(c.sched.minibatch_dict) == {256: 14, 512: 6, 1024: 3}
    else:
        assert (c.sched.minibatch_base, c.train.total_kimg) == (4, 12000)
        assert dict(c.sched.minibatch_dict) == V2_1GPU_MINIBATCH
        assert dict(c.sched.G_lrate_dict) == dict(c.sched.D_lrate_dict) == {1024: 0.0015}


def test_the_defaults_are_the_original_ones():
    c = default_config()
    assert c.dataset.use_labels is False and c.train.mirror_augment is False
    assert c.G.fused_scale is True and c.D.fused_scale is True


def test_the_demo_is_conditional_and_says_so():
    module = load(os.path.join(REPO, "configs", "fashion_mnist_cpu.py"))
    assert module.get_config().dataset.use_labels is True
    assert "Conditional" in module.__doc__


# progan-train run as `python -m progan_tf.train ARGS...`; prints whether TensorFlow got imported.
TRAIN_CHILD = """
import runpy, sys
sys.argv = ["progan-train"] + sys.argv[1:]
try:
    runpy.run_module("progan_tf.train", run_name="__main__", alter_sys=True)
except SystemExit as e:
    print("EXIT", e.code, "TENSORFLOW", "tensorflow" in sys.modules)
"""


def progan_train_child(*args, cwd=REPO):
    """(exit status, stdout, stderr, wall seconds, CPU seconds) of progan-train in a fresh process.

    The CPU time is what the process itself spent: on a loaded machine the wall time also
    measures the other processes (importing TensorFlow alone takes several CPU seconds)."""
    start, cpu = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", TRAIN_CHILD, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    return proc.returncode, proc.stdout, proc.stderr, time.time() - start, cpu_s


def _config_cases(tmp_path):
    (tmp_path / "syntax.py").write_text("from progan_tf.config import default_config\n\ndef get_config(:\n"
                                        "    return default_config()\n")
    (tmp_path / "raises.py").write_text("def get_config():\n    x = 1\n    raise RuntimeError('no such preset')\n")
    mnist = os.path.join(REPO, "configs", "mnist.py")
    return {
        "syntax error": (tmp_path / "syntax.py", f"--config: syntax error in {tmp_path / 'syntax.py'} line 3: "),
        "missing": (tmp_path / "nowhere.py", f"--config: no such file: {tmp_path / 'nowhere.py'}"),
        "get_config raises": (tmp_path / "raises.py", f"--config: {tmp_path / 'raises.py'}: get_config() raised "
                                                      "RuntimeError: no such preset (line 3)"),
        "unknown ablation": (f"{mnist}:no_ema,no_such", f"--config: {mnist}:no_ema,no_such: unknown ablation "
                                                        f"'no_such'; choose from {', '.join(ABLATIONS)}"),
    }


@pytest.mark.parametrize("case", ["syntax error", "missing", "get_config raises", "unknown ablation"])
def test_a_bad_config_file_is_one_line_before_tensorflow(tmp_path, case):
    config, message = _config_cases(tmp_path)[case]
    code, out, err, seconds, cpu_seconds = progan_train_child(f"--config={config}", "--dataset_dir=unused")
    assert "EXIT 2 TENSORFLOW False" in out, out + err[-2000:]
    assert err.startswith(f"progan-train: error: {message}") and err.count("\n") == 1, err[-2000:]
    assert "Traceback" not in err and cpu_seconds < 2, (seconds, cpu_seconds, err[-2000:])
    print(f"{case}: {seconds:.2f} s ({cpu_seconds:.2f} s CPU)")


def _run_dir(tmp_path):
    """A run directory as progan-train leaves it, to resume (no checkpoint needed to parse the flags)."""
    run_dir = tmp_path / "00000-cpu-fmnist"
    run_dir.mkdir()
    c = load(os.path.join(REPO, "configs", "fashion_mnist_cpu.py")).get_config()
    (run_dir / "config.json").write_text(c.to_json_best_effort(indent=2))
    return run_dir


# Parses progan-train's flags as the console script does and prints the config main() gives the Trainer.
PARSE_CHILD = """
import sys
from progan_tf import train
train._parse_flags(sys.argv)
c = train.FLAGS.config
print("CONFIG", c.desc, c.train.total_kimg, c.train.grid_size, c.sched.minibatch_dict.to_dict(),
      "TENSORFLOW", "tensorflow" in sys.modules)
"""


def test_resume_with_overrides_alone_applies_them_to_the_runs_config(tmp_path):
    run_dir = _run_dir(tmp_path)
    args = [f"--resume={run_dir}", "--config.train.total_kimg=500", "--config.train.grid_size=(2, 3)",
            "--config.sched.minibatch_dict={4: 16}"]
    proc = subprocess.run([sys.executable, "-c", PARSE_CHILD, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert "CONFIG cpu 500.0 (2, 3) {4: 16} TENSORFLOW False" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    # With --config, the file's config is used as before (the run's config.json is not read).
    mnist = os.path.join(REPO, "configs", "mnist.py")
    proc = subprocess.run([sys.executable, "-c", PARSE_CHILD, f"--config={mnist}", *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert "CONFIG mnist 500.0 (2, 3) {4: 16}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    # An override of a field the run's config does not have is named, in one line.
    code, out, err, *_ = progan_train_child(f"--resume={run_dir}", "--config.train.no_such_field=1")
    assert "EXIT 2" in out and "no_such_field" in err and "Traceback" not in err, out + err[-2000:]
    (run_dir / "config.json").unlink()
    code, out, err, *_ = progan_train_child(f"--resume={run_dir}", "--config.train.total_kimg=500")
    assert "EXIT 2" in out and f"--resume: cannot read the run's config {run_dir / 'config.json'}" in err, err

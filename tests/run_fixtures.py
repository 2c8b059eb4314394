"""Tiny trained runs shared by the export and generation tests (trained once per test session)."""
import atexit
import os
import shutil
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST100 = os.path.join(REPO, "tests", "fixtures", "original-format", "fmnist100")

_RUNS = {}
_ROOT = []


def _root() -> str:
    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix="progan-export-tests-"))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


def tiny_run(conditional: bool) -> str:
    """A run directory trained for a few seconds on fmnist100 (32x32 grayscale, 10 labels).

    The unconditional run trains 0.8 kimg and so reaches 32x32 (lod 0); the
    conditional one stops at 0.4 kimg, while fading in 16x16 (lod 1.16).
    """
    if conditional not in _RUNS:
        from progan_tf.config import default_config
        from progan_tf.training import Trainer

        c = default_config()
        for k, v in {"G.fmap_base": 32, "G.fmap_max": 8, "D.fmap_base": 32, "D.fmap_max": 8,
                     "sched.lod_training_kimg": 0.1, "sched.lod_transition_kimg": 0.1, "sched.minibatch_base": 8,
                     "sched.minibatch_dict": {}, "sched.tick_kimg_base": 0.2, "sched.tick_kimg_dict": {},
                     "train.total_kimg": 0.4 if conditional else 0.8, "train.grid_size": (4, 2),
                     "dataset.shuffle_mb": 1}.items():
            group, field = k.split(".")
            c[group][field] = v
        c.dataset.use_labels = conditional
        run_dir = os.path.join(_root(), "conditional" if conditional else "unconditional")
        trainer = Trainer(c, FMNIST100, run_dir)
        try:
            trainer.run()
        finally:
            trainer.close()
        _RUNS[conditional] = run_dir
    return _RUNS[conditional]

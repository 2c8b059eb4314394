"""Presets and ablations."""
import glob
import importlib.util
import os

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
    assert c.dataset.resolution in (32, 256, 1024)


def test_ablations_change_the_right_fields():
    c = load(os.path.join(REPO, "configs", "mnist.py")).get_config(",".join(ABLATIONS.keys() - {"lsgan"}))
    assert c.sched.lod_initial_resolution == 32
    assert (c.G.use_pixelnorm, c.G.use_wscale, c.D.use_wscale) == (False, False, False)
    assert (c.train.G_smoothing, c.train.reset_opt_for_new_lod, c.loss.name) == (0.0, False, "logistic_r1")
    assert c.desc.startswith("mnist-") and "nopixelnorm" in c.desc
    with pytest.raises(ValueError, match="unknown ablation 'no_gan'"):
        apply_ablations(default_config(), "no_gan")

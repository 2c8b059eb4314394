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

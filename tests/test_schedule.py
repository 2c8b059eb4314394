"""The training schedule against values worked out by hand from the original's definition."""
import importlib.util
import os

import pytest

from conftest import REPO
from progan_tf.config import default_config
from progan_tf.schedule import new_block_started, training_schedule


def preset(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("kimg,lod,resolution,alpha", [
    (0, 8.0, 4, 1.0),            # 4x4 stable for the first 600 kimg
    (599.9, 8.0, 4, 1.0),
    (900, 7.5, 8, 0.5),          # half-way through fading in 8x8
    (1200, 7.0, 8, 1.0),         # 8x8 stable
    (1500, 7.0, 8, 1.0),
    (2250, 6.25, 16, 0.75),      # phase 1 (1200-2400): 450 kimg into the 600 kimg transition
    (9500, 1 - 500 / 600, 1024, 500 / 600),
    (9600, 0.0, 1024, 1.0),      # 1024 fully faded in at the end of the 8th phase of 1200 kimg
    (10200, 0.0, 1024, 1.0),
    (20000, 0.0, 1024, 1.0),
])
def test_lod_and_resolution_defaults_1024(kimg, lod, resolution, alpha):
    s = training_schedule(int(kimg * 1000), 10, default_config().sched)
    assert s.lod == pytest.approx(lod)
    assert s.resolution == resolution and s.res == resolution.bit_length() - 1
    assert s.alpha == pytest.approx(alpha)
    assert (s.minibatch, s.G_lrate, s.D_lrate) == (16, 0.001, 0.001)
    assert s.tick_kimg == {4: 160, 8: 140, 16: 120, 1024: 10}[resolution]


@pytest.mark.parametrize("kimg,resolution,minibatch", [
    (0, 4, 16), (5000, 32, 16), (6600, 64, 16), (8000, 128, 16), (9700, 256, 14), (11300, 512, 6),
    (13000, 1024, 3)])
def test_celebahq_v1_minibatch(kimg, resolution, minibatch):
    c = preset("celebahq_v1").sched        # 800 + 800 kimg phases
    s = training_schedule(int(kimg * 1000), 10, c)
    assert s.resolution == resolution and s.minibatch == minibatch


def test_celebahq_v2_1gpu_minibatch_and_lrate():
    c = preset("celebahq_v2_1gpu").sched
    at = lambda kimg: training_schedule(int(kimg * 1000), 10, c)
    assert (at(0).minibatch, at(0).G_lrate) == (128, 0.001)
    assert at(4000).resolution == 32 and at(4000).minibatch == 64
    s = at(10500)                     # 1024 fades in from 9000 to 9600 kimg, then stays
    assert (s.resolution, s.minibatch, s.G_lrate, s.D_lrate, s.tick_kimg) == (1024, 4, 0.0015, 0.0015, 10)
    assert at(9300).lod == pytest.approx(0.5) and at(9300).minibatch == 4 and at(9300).alpha == 0.5
    assert at(8999).resolution == 512 and at(8999).minibatch == 4


def test_replicas_round_the_minibatch_and_cap_it():
    c = default_config().sched
    c.minibatch_dict = {4: 14, 8: 64}
    c.max_minibatch_per_replica = {8: 8}
    assert training_schedule(0, 5, c, num_replicas=4).minibatch == 12          # 14 rounded down to 4s
    assert training_schedule(1_200_000, 5, c, num_replicas=2).minibatch == 16  # 64 capped at 8 per replica
    assert training_schedule(1_200_000, 5, c, num_replicas=1).minibatch == 8
    c.minibatch_dict = {4: 2}
    with pytest.raises(ValueError, match="minibatch 0 at 4x4 is smaller than the 4 replicas"):
        training_schedule(0, 5, c, num_replicas=4)


def test_string_keys_from_json_configs_work():
    c = default_config().sched.to_dict()
    c["minibatch_dict"] = {"8": 40}
    c["tick_kimg_dict"] = {"8": 7}
    s = training_schedule(1_200_000, 5, c)
    assert (s.resolution, s.minibatch, s.tick_kimg) == (8, 40, 7)


def test_lod_initial_resolution_and_no_transition():
    c = default_config().sched
    c.lod_initial_resolution = 32
    s = training_schedule(0, 10, c)
    assert (s.lod, s.resolution) == (5.0, 32)
    c.lod_initial_resolution, c.lod_transition_kimg = 4, 0
    s = training_schedule(600_000, 10, c)         # phases of 600 kimg with instant switches
    assert (s.lod, s.resolution, s.alpha) == (7.0, 8, 1.0)


def test_optimizer_reset_points():
    assert new_block_started(8.0, None)             # first iteration
    assert not new_block_started(8.0, 8.0)          # stable 4x4
    assert new_block_started(7.99, 8.0)             # fade-in of 8x8 starts
    assert not new_block_started(7.5, 7.99)
    assert new_block_started(7.0, 7.01)             # fade-in ends
    assert not new_block_started(7.0, 7.0)

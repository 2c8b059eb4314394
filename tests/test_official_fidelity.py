"""Same weights, same inputs, same outputs as the original TF code.

The fixtures in tests/fixtures/official-networks/ are (G, D, Gs) pickles written by the
original code's own pickler from random weights, with the original's outputs at several
lods and its WGAN-GP discriminator loss piece by piece (see that directory's README).
"""
import io
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURES
from progan_tf.layers import EqualizedConv2D, EqualizedConv2DDownscale, EqualizedUpscaleConv2D
from progan_tf.losses import LogisticR1, WGANGP
from progan_tf.networks import Discriminator, Generator
from progan_tf.official import (OfficialFormatError, assign_network_weights, build_networks, network_kwargs,
                                read_network_pickle)

OFFICIAL = os.path.join(FIXTURES, "official-networks")
TOLERANCE = 1e-4


def _networks(name):
    return build_networks(read_network_pickle(os.path.join(OFFICIAL, f"{name}.pkl")))


def _stage(lod, resolution_log2=5):
    """(res, alpha) of a lod: the stage at R / 2**floor(lod), fading with alpha = 1 - frac(lod)."""
    k = int(np.floor(lod))
    return resolution_log2 - k, float(1.0 - (lod - k))


def _box(x_nchw, f):
    """NCHW full-resolution images -> NHWC box-averaged by f (what D's own downscaling computes)."""
    x = x_nchw.transpose(0, 2, 3, 1)
    n, h, w, c = x.shape
    return x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))


def _to_full_nchw(x_nhwc, size=32):
    f = size // x_nhwc.shape[1]
    return x_nhwc.repeat(f, axis=1).repeat(f, axis=2).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("name", ["rgb32-fused", "gray32-cond-nofused"])
def test_networks_reproduce_the_original_outputs_at_every_lod(name):
    G, D, Gs = _networks(name)
    ref = np.load(os.path.join(OFFICIAL, f"{name}-outputs.npz"))
    labels = ref["labels"] if "labels" in ref.files else None
    assert np.abs(_to_full_nchw(Gs(ref["latents"], labels).numpy()) - ref["Gs_images"]).max() <= TOLERANCE
    for i, lod in enumerate(ref["lods"]):
        res, alpha = _stage(lod)
        fakes = _to_full_nchw(G(ref["latents"], labels, res=res, alpha=alpha).numpy())
        assert np.abs(fakes - ref["G_images"][i]).max() <= TOLERANCE, f"G at lod {lod}"
        out = D(_box(ref["D_images"], 2 ** (5 - res)), res=res, alpha=alpha).numpy()
        assert np.abs(out[:, :1] - ref["D_scores"][i]).max() <= TOLERANCE, f"D scores at lod {lod}"
        assert out[:, 1:].shape == ref["D_labels"][i].shape
        np.testing.assert_allclose(out[:, 1:], ref["D_labels"][i], rtol=0, atol=TOLERANCE, err_msg=f"lod {lod}")


def test_fused_and_separate_layers_are_what_the_files_hold():
    G, D, _ = _networks("rgb32-fused")
    assert G.fused_scale and D.fused_scale
    assert isinstance(G.conv0_8x8, EqualizedUpscaleConv2D) and isinstance(D.conv1_32x32, EqualizedConv2DDownscale)
    assert tuple(G.conv0_32x32.kernel.shape) == (3, 3, 16, 32)      # [k, k, out, in] as stored
    G, D, _ = _networks("gray32-cond-nofused")
    assert not G.fused_scale and not D.fused_scale
    assert type(G.conv0_8x8) is EqualizedConv2D and type(D.conv1_32x32) is EqualizedConv2D


def test_the_fused_discriminator_is_not_the_separate_one():
    """The original's fused D applies bias and lrelu after the downscale: another function."""
    fused = _networks("rgb32-fused")[1]
    separate = Discriminator(**{**fused.get_config(), "fused_scale": False})
    separate.set_weights(fused.get_weights())
    x = np.tanh(np.random.RandomState(0).randn(8, 32, 32, 3)).astype(np.float32)
    assert np.abs(fused(x).numpy() - separate(x).numpy()).max() > 1e-3


def test_the_fused_generator_conv_is_upscale_then_the_flipped_conv():
    layer = EqualizedUpscaleConv2D(5, 3)
    layer.build((None, 4, 4, 6))
    x = np.random.RandomState(1).randn(2, 4, 4, 6).astype(np.float32)
    flipped = layer.kernel.numpy()[::-1, ::-1].transpose(0, 1, 3, 2) * layer.runtime_scale
    up = tf.image.resize(x, (8, 8), method="nearest")
    expected = tf.nn.conv2d(up, flipped, 1, "SAME") + layer.bias.numpy()
    assert np.abs(layer(x).numpy() - expected.numpy()).max() < 1e-5
    assert layer.runtime_scale == pytest.approx(np.sqrt(2) / np.sqrt(9 * 6))   # fan-in k*k*in


def test_numpy1_and_numpy2_pickles_hold_the_same_arrays():
    new = read_network_pickle(os.path.join(OFFICIAL, "rgb32-fused.pkl"))
    old = read_network_pickle(os.path.join(OFFICIAL, "rgb32-fused-np1.pkl"))
    for a, b in zip(new, old):
        assert a.name == b.name and a.static_kwargs == b.static_kwargs
        assert a.variables.keys() == b.variables.keys()
        for key in a.variables:
            np.testing.assert_array_equal(a.variables[key], b.variables[key])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_reader_refuses_anything_but_networks_and_arrays(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((_Evil(),)))
    with pytest.raises(OfficialFormatError, match=r"refusing to load (posix|os|nt)\.system"):
        read_network_pickle(str(path))
    path.write_bytes(b"not a pickle")
    with pytest.raises(OfficialFormatError, match="evil.pkl"):
        read_network_pickle(str(path))
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(OfficialFormatError, match="tuple of tfutil.Network"):
        read_network_pickle(str(path))


def test_a_network_of_another_configuration_is_refused_by_variable():
    G, _, _ = read_network_pickle(os.path.join(OFFICIAL, "rgb32-fused.pkl"))
    with pytest.raises(OfficialFormatError, match="Conv0_up"):
        assign_network_weights(Generator(**{**G.static_kwargs, "fused_scale": False}), G)
    with pytest.raises(OfficialFormatError, match="shape"):
        assign_network_weights(Generator(**{**G.static_kwargs, "latent_size": 16}), G)


# --- the WGAN-GP loss, piece by piece ---------------------------------------------------------

WGAN_PIECES = ["real_scores", "fake_scores", "mixed_scores", "mixed_norms", "gradient_penalty", "epsilon_penalty"]


@pytest.mark.parametrize("lod_index", [0, 1, 2, 3])
def test_wgan_gp_equals_the_original_per_lod(lod_index):
    G, D, _ = _networks("rgb32-fused")
    ref = np.load(os.path.join(OFFICIAL, "wgan-gp-rgb32-fused.npz"))
    lod = float(ref["lods"][lod_index])
    res, alpha = _stage(lod)
    reals = _box(ref["reals"], 2 ** int(lod))           # the dataset level of that lod
    loss, stats = WGANGP().d_loss(G, D, ref["latents"], reals, None, res=res, alpha=alpha,
                            mixing_factors=ref["mixing_factors"])
    for key in WGAN_PIECES:
        np.testing.assert_allclose(stats[key].numpy(), ref[key][lod_index], rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(loss.numpy(), ref["d_loss_per_sample"][lod_index], rtol=1e-4, atol=1e-5)
    assert float(np.mean(loss.numpy())) == pytest.approx(float(ref["d_loss_mean"][lod_index]), rel=1e-5)


def test_r1_is_the_squared_gradient_norm_with_respect_to_the_full_resolution_image():
    G, D, _ = _networks("rgb32-fused")
    reals = np.tanh(np.random.RandomState(3).randn(8, 8, 8, 3)).astype(np.float32)    # an 8x8 stage (f = 4)
    z = np.random.RandomState(4).randn(8, 32).astype(np.float32)
    _, stats = LogisticR1().d_loss(G, D, z, reals, None, res=3, alpha=1.0)
    full = tf.convert_to_tensor(reals.repeat(4, axis=1).repeat(4, axis=2))
    with tf.GradientTape() as tape:
        tape.watch(full)
        total = tf.reduce_sum(D(tf.nn.avg_pool2d(full, 4, 4, "VALID"), res=3)[:, 0])
    expected = tf.reduce_sum(tf.square(tape.gradient(total, full)), axis=[1, 2, 3])
    np.testing.assert_allclose(stats["r1_penalty"].numpy(), expected.numpy(), rtol=1e-4)


def test_static_kwargs_map_onto_the_network_options_and_the_rest_is_refused():
    G, D, _ = read_network_pickle(os.path.join(OFFICIAL, "gray32-cond-nofused.pkl"))
    assert network_kwargs(G) == dict(num_channels=1, resolution=32, label_size=10, fmap_base=256, fmap_max=32,
                                     latent_size=32, fused_scale=False)
    assert network_kwargs(D)["fused_scale"] is False
    G.static_kwargs["structure"] = "linear"          # how the original builds its graph: same function
    assert "structure" not in network_kwargs(G)
    for bad, match in (({"use_noise": True}, "option use_noise=True has no progan_tf equivalent"),
                       ({"dtype": "int8"}, "unsupported dtype='int8'"),
                       ({"num_channels": 4}, "num_channels=4")):
        record = read_network_pickle(os.path.join(OFFICIAL, "gray32-cond-nofused.pkl"))[0]
        record.static_kwargs.update(bad)
        with pytest.raises(OfficialFormatError, match=match):
            network_kwargs(record)
    D.build_func_name = "D_stylegan"
    with pytest.raises(OfficialFormatError, match="D_stylegan"):
        network_kwargs(D)

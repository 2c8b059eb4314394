"""Each custom layer against independent NumPy math, plus config round trips and bad input."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import np_conv2d_same, np_downscale, np_upscale
from progan_tf.layers import (Downscale2D, EqualizedConv2D, EqualizedDense, MinibatchStdDev, PixelNorm,
                              Upscale2D, WeightedSum)


def rand(*shape):
    return np.random.randn(*shape).astype(np.float32)


def test_pixelnorm_matches_numpy():
    x = rand(3, 4, 5, 7)
    y = PixelNorm()(x).numpy()
    ref = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    # Works on latent vectors (rank 2) too, with a custom epsilon.
    z = rand(4, 9)
    np.testing.assert_allclose(PixelNorm(epsilon=1e-4)(z).numpy(),
                               z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-4), rtol=1e-5)


@pytest.mark.parametrize("gain", [math.sqrt(2.0), 1.0, math.sqrt(2.0) / 4])
def test_equalized_dense_runtime_scaling(gain):
    layer = EqualizedDense(6, gain=gain)
    x = rand(5, 2, 2, 3)  # rank-4 input is flattened, fan_in = 12
    layer.build(x.shape)
    np.testing.assert_array_equal(layer.bias.numpy(), 0.0)  # biases start at zero
    layer.bias.assign(rand(6))
    y = layer(x).numpy()
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    assert w.shape == (12, 6) and b.shape == (6,)
    ref = x.reshape(5, 12) @ (w * gain / math.sqrt(12)) + b
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_equalized_weights_are_standard_normal():
    layer = EqualizedConv2D(64, 3)
    layer.build((None, 8, 8, 64))
    w = layer.kernel.numpy()
    assert abs(w.std() - 1.0) < 0.02 and abs(w.mean()) < 0.02
    # Without wscale the init carries the He scale and no runtime scaling is applied.
    plain = EqualizedConv2D(64, 3, use_wscale=False)
    plain.build((None, 8, 8, 64))
    assert abs(plain.kernel.numpy().std() - math.sqrt(2.0) / math.sqrt(9 * 64)) < 0.002
    x = rand(1, 4, 4, 64)
    np.testing.assert_allclose(plain(x).numpy(), np_conv2d_same(x, plain.kernel.numpy()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size,gain", [(3, math.sqrt(2.0)), (1, 1.0), (3, 0.5)])
def test_equalized_conv_matches_numpy(kernel_size, gain):
    layer = EqualizedConv2D(5, kernel_size, gain=gain)
    x = rand(2, 6, 6, 4)
    layer.build(x.shape)
    layer.bias.assign(rand(5))
    y = layer(x).numpy()
    fan_in = kernel_size * kernel_size * 4
    ref = np_conv2d_same(x, layer.kernel.numpy() * gain / math.sqrt(fan_in)) + layer.bias.numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def np_minibatch_stddev(x, group_size):
    n = x.shape[0]
    g = min(group_size, n)
    m = n // g
    out = np.empty((n,), dtype=np.float64)
    for j in range(m):
        members = x[j::m].astype(np.float64)          # sample n is in group n % m
        std = np.sqrt(members.var(axis=0) + 1e-8)
        out[j::m] = std.mean()
    feat = np.broadcast_to(out[:, None, None, None], x.shape[:3] + (1,))
    return np.concatenate([x, feat], axis=-1)


@pytest.mark.parametrize("batch,group_size", [(8, 4), (12, 4), (2, 4), (6, 2), (6, 3), (5, 1), (4, 4)])
def test_minibatch_stddev_matches_numpy(batch, group_size):
    x = rand(batch, 4, 4, 3) * np.arange(1, batch + 1, dtype=np.float32)[:, None, None, None]
    y = MinibatchStdDev(group_size)(x).numpy()
    assert y.shape == (batch, 4, 4, 4)
    np.testing.assert_allclose(y, np_minibatch_stddev(x, group_size), rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_groups_are_strided():
    # Samples 0 and 2 form one group, 1 and 3 the other: only group 1 varies.
    x = np.zeros((4, 2, 2, 1), np.float32)
    x[1], x[3] = 1.0, 3.0
    y = MinibatchStdDev(2)(x).numpy()[..., 1]
    np.testing.assert_allclose(y[0], 1e-4, rtol=1e-3)
    np.testing.assert_allclose(y[1], 1.0, rtol=1e-6)


def test_minibatch_stddev_rejects_indivisible_batch():
    with pytest.raises(ValueError, match=r"batch size 6 .*group size 4"):
        MinibatchStdDev(4)(rand(6, 4, 4, 2))
    fn = tf.function(lambda x: MinibatchStdDev(4)(x),
                     input_signature=[tf.TensorSpec([None, 4, 4, 2], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="group_size=4"):
        fn(rand(6, 4, 4, 2))
    with pytest.raises(ValueError, match="group_size must be a positive integer, got 0"):
        MinibatchStdDev(0)


def test_weighted_sum_lerp_and_ends():
    old, new = rand(2, 4, 4, 3), rand(2, 4, 4, 3)
    ws = WeightedSum()
    np.testing.assert_array_equal(ws(old, new, alpha=0.0).numpy(), old)
    np.testing.assert_array_equal(ws(old, new, alpha=1.0).numpy(), new)
    np.testing.assert_allclose(ws(old, new, alpha=tf.constant(0.3)).numpy(), old * 0.7 + new * 0.3, rtol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, 2])
def test_weighted_sum_rejects_alpha_outside_unit_interval(bad):
    old = rand(1, 2, 2, 1)
    with pytest.raises(ValueError, match=f"alpha must be in \\[0, 1\\], got {float(bad)!r}"):
        WeightedSum()(old, old, alpha=bad)
    with pytest.raises(ValueError, match="alpha must be in"):
        WeightedSum()(old, old, alpha=tf.constant(bad, tf.float32))
    fn = tf.function(lambda a: WeightedSum()(old, old, alpha=a))
    with pytest.raises(tf.errors.InvalidArgumentError, match="alpha must be in"):
        fn(tf.constant(bad, tf.float32))


def test_weighted_sum_alpha_changes_do_not_retrace():
    old, new = rand(2, 4, 4, 3), rand(2, 4, 4, 3)
    ws = WeightedSum()
    alpha = tf.Variable(0.0)
    fn = tf.function(lambda a: ws(old, new, alpha=a))
    for value in (0.0, 0.25, 0.5, 1.0):
        alpha.assign(value)
        np.testing.assert_allclose(fn(alpha).numpy(), old * (1 - value) + new * value, rtol=1e-6, atol=1e-7)
        fn(tf.constant(value))
    assert fn.experimental_get_tracing_count() == 2  # one for the variable, one for tensors


def test_upscale_and_downscale_match_numpy():
    x = rand(2, 4, 6, 3)
    np.testing.assert_array_equal(Upscale2D()(x).numpy(), np_upscale(x))
    np.testing.assert_array_equal(Upscale2D(4)(x).numpy(), np_upscale(x, 4))
    np.testing.assert_allclose(Downscale2D()(x).numpy(), np_downscale(x), rtol=1e-6)
    np.testing.assert_allclose(Downscale2D()(Upscale2D()(x)).numpy(), x, rtol=1e-6)


def _weighted_layers():
    return [
        (EqualizedDense(4, gain=0.5, use_bias=True), rand(3, 6)),
        (EqualizedConv2D(4, 3, gain=1.0), rand(3, 5, 5, 2)),
        (EqualizedConv2D(2, 1, use_wscale=False), rand(3, 5, 5, 2)),
    ]


@pytest.mark.parametrize("layer,x", _weighted_layers())
def test_weighted_layer_config_round_trip(layer, x):
    y = layer(x).numpy()
    clone = layer.__class__.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x).numpy(), y)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("layer", [PixelNorm(1e-4), MinibatchStdDev(2), Upscale2D(2), Downscale2D(2)])
def test_stateless_layer_config_round_trip(layer):
    x = rand(4, 4, 4, 3)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()
    np.testing.assert_array_equal(restored(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("name", ["EqualizedConv2DDownscale", "EqualizedUpscaleConv2D"])
def test_fused_convs_round_trip_their_config_and_refuse_even_kernels(name):
    from progan_tf import layers

    cls = getattr(layers, name)
    layer = cls(6, 3, gain=1.5, name="fused")
    clone = cls.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.gain, clone.name) == (6, 3, 1.5, "fused")
    with pytest.raises(ValueError, match="kernel_size must be odd, got 4"):
        cls(6, 4)

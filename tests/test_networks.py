"""Generator and discriminator: sizes, stages, fading, stage-only compute, round trips, bad input."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import np_downscale, np_upscale
from progan_tf.networks import Discriminator, Generator, num_features, resolution_log2

B32 = dict(resolution=32, num_channels=1, fmap_base=2048, fmap_max=256)
SMALL = dict(resolution=64, num_channels=3, fmap_base=128, fmap_max=16)


def test_parameter_counts_match_the_original():
    g, d = Generator(resolution=1024, num_channels=3), Discriminator(resolution=1024, num_channels=3)
    assert g.count_params() == 23_079_115
    assert d.count_params() == 23_087_249
    assert g.latent_size == 512
    g, d = Generator(**B32), Discriminator(**B32)
    assert g.count_params() == 4_442_756
    assert d.count_params() == 4_446_337
    assert g.latent_size == 256


def test_num_features_formula():
    assert [num_features(s) for s in range(10)] == [512, 512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert [num_features(s, 2048, 1.0, 256) for s in range(6)] == [256, 256, 256, 256, 128, 64]
    assert num_features(3, 8192, 0.5, 10_000) == int(8192 / 2 ** 1.5)


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64, 128, 256, 512, 1024])
def test_output_shapes_at_every_stage(resolution):
    # Traced, not run: the graph's static shapes are what a forward pass produces.
    kw = dict(resolution=resolution, num_channels=3, label_size=2)
    if resolution < 1024:
        kw.update(fmap_base=256, fmap_max=32)
    g, d = Generator(**kw), Discriminator(**kw)
    for res in range(2, resolution_log2(resolution) + 1):
        size = 2 ** res
        g_fn = tf.function(lambda z, y, a: g(z, y, res=res, alpha=a)).get_concrete_function(
            tf.TensorSpec([8, g.latent_size]), tf.TensorSpec([8, 2]), tf.TensorSpec([]))
        assert g_fn.structured_outputs.shape.as_list() == [8, size, size, 3]
        d_fn = tf.function(lambda x, a: d(x, res=res, alpha=a)).get_concrete_function(
            tf.TensorSpec([8, size, size, 3]), tf.TensorSpec([]))
        assert d_fn.structured_outputs.shape.as_list() == [8, 3]


@pytest.mark.parametrize("res", [2, 3, 4, 5, 6])
def test_stage_traces_only_its_blocks(res):
    g, d = Generator(**SMALL), Discriminator(**SMALL)
    size = 2 ** res
    g_fn = tf.function(lambda z, a: g(z, res=res, alpha=a)).get_concrete_function(
        tf.TensorSpec([4, g.latent_size]), tf.TensorSpec([]))
    d_fn = tf.function(lambda x, a: d(x, res=res, alpha=a)).get_concrete_function(
        tf.TensorSpec([4, size, size, 3]), tf.TensorSpec([]))
    for net, fn in ((g, g_fn), (d, d_fn)):
        captured = {v.ref() for v in fn.graph.variables}
        expected = {v.value.ref() for v in net.active_variables(res)}
        assert captured == expected
        # The biggest convolution in the graph works at this stage's resolution, not above.
        conv_sizes = [op.outputs[0].shape[1] for op in fn.graph.get_operations() if op.type == "Conv2D"]
        assert max(conv_sizes) == size


def test_one_trace_per_stage_whatever_alpha():
    g, d = Generator(**SMALL), Discriminator(**SMALL)
    alpha = tf.Variable(0.0)
    z = tf.random.normal([4, g.latent_size])
    fns = {res: tf.function(lambda z, a, res=res: d(g(z, res=res, alpha=a), res=res, alpha=a))
           for res in (3, 4)}
    for res, fn in fns.items():
        for value in (0.0, 0.3, 0.9, 1.0):
            alpha.assign(value)
            fn(z, alpha)
        assert fn.experimental_get_tracing_count() == 1


def _perturb(layer):
    for w in layer.weights:
        w.assign(w + 0.5)


@pytest.mark.parametrize("res", [3, 4, 5, 6])
def test_generator_fade_in(res):
    g = Generator(**SMALL)
    z = tf.random.normal([4, g.latent_size])
    prev = g(z, res=res - 1).numpy()                       # stable previous stage
    old = g(z, res=res, alpha=tf.constant(0.0)).numpy()
    np.testing.assert_allclose(old, np_upscale(prev), rtol=1e-5, atol=1e-5)
    new = g(z, res=res, alpha=tf.constant(1.0)).numpy()
    np.testing.assert_array_equal(new, g(z, res=res).numpy())  # blended at 1 == new path alone
    mid = g(z, res=res, alpha=tf.constant(0.25)).numpy()
    np.testing.assert_allclose(mid, 0.75 * old + 0.25 * new, rtol=1e-5, atol=1e-5)
    # The new path ignores the old toRGB; the old path ignores the new block.
    _perturb(g.to_rgb[res - 1])
    np.testing.assert_array_equal(g(z, res=res, alpha=tf.constant(1.0)).numpy(), new)
    for conv in g.convs[res]:
        _perturb(conv)
    _perturb(g.to_rgb[res])
    np.testing.assert_allclose(g(z, res=res, alpha=tf.constant(0.0)).numpy(),
                               np_upscale(g(z, res=res - 1).numpy()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("res", [3, 4, 5, 6])
def test_discriminator_fade_in(res):
    d = Discriminator(**SMALL)
    size = 2 ** res
    x = np.random.uniform(-1, 1, (4, size, size, 3)).astype(np.float32)
    old = d(x, res=res, alpha=tf.constant(0.0)).numpy()
    np.testing.assert_allclose(old, d(np_downscale(x), res=res - 1).numpy(), rtol=1e-4, atol=1e-5)
    new = d(x, res=res, alpha=tf.constant(1.0)).numpy()
    np.testing.assert_array_equal(new, d(x, res=res).numpy())
    _perturb(d.from_rgb[res - 1])
    np.testing.assert_array_equal(d(x, res=res, alpha=tf.constant(1.0)).numpy(), new)
    _perturb(d.from_rgb[res])
    for conv in d.convs[res]:
        _perturb(conv)
    np.testing.assert_allclose(d(x, res=res, alpha=tf.constant(0.0)).numpy(),
                               d(np_downscale(x), res=res - 1).numpy(), rtol=1e-4, atol=1e-5)


def test_labels_condition_generator_and_discriminator_outputs_logits():
    g = Generator(resolution=8, num_channels=1, label_size=3, fmap_base=64, fmap_max=16)
    d = Discriminator(resolution=8, num_channels=1, label_size=3, fmap_base=64, fmap_max=16)
    z = tf.random.normal([4, g.latent_size])
    a, b = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], np.eye(3, dtype=np.float32)[[1, 2, 0, 1]]
    assert not np.allclose(g(z, a).numpy(), g(z, b).numpy())
    assert d(g(z, a)).shape == (4, 4)
    with pytest.raises(ValueError, match="label_size=3"):
        g(z)


@pytest.mark.parametrize("label_size", [0, 4])
def test_keras_round_trip(tmp_path, label_size):
    kw = dict(resolution=16, num_channels=3, label_size=label_size, fmap_base=64, fmap_max=16)
    g, d = Generator(**kw, use_pixelnorm=True), Discriminator(**kw, mbstd_group_size=2)
    z = tf.random.normal([4, g.latent_size])
    y = tf.one_hot([0, 1, 2, 3], label_size) if label_size else None
    alpha = tf.constant(0.6)
    images = g(z, y, res=4, alpha=alpha)
    for net, args in ((g, (z, y)), (d, (images,))):
        expected = net(*args, res=4, alpha=alpha).numpy()
        clone = net.__class__.from_config(net.get_config())
        clone.set_weights(net.get_weights())
        np.testing.assert_array_equal(clone(*args, res=4, alpha=alpha).numpy(), expected)
        path = str(tmp_path / f"{net.name}.keras")
        net.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded) is type(net) and loaded.get_config() == net.get_config()
        np.testing.assert_array_equal(loaded(*args, res=4, alpha=alpha).numpy(), expected)


@pytest.mark.parametrize("resolution", [3, 48, 2048, 2, 1000, 0, "32", 32.0])
def test_bad_resolution_is_named(resolution):
    with pytest.raises(ValueError, match=f"power of two between 4 and 1024, got {resolution!r}"):
        Generator(resolution=resolution)
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(resolution=resolution)


def test_bad_stage_and_inputs_are_named():
    g, d = Generator(resolution=16, fmap_base=64, fmap_max=16), Discriminator(resolution=16, fmap_base=64, fmap_max=16)
    z = tf.random.normal([4, g.latent_size])
    with pytest.raises(ValueError, match=r"\[2, 4\].*got 5"):
        g(z, res=5)
    with pytest.raises(ValueError, match="got 1"):
        d(tf.zeros([4, 2, 2, 1]), res=1)
    with pytest.raises(ValueError, match=r"expects images of shape \[N, 8, 8, 1\], got \(4, 16, 16, 1\)"):
        d(tf.zeros([4, 16, 16, 1]), res=3)
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\], got 1.2"):
        g(z, res=3, alpha=1.2)
    with pytest.raises(ValueError, match="num_channels must be 1 or 3, got 4"):
        Generator(num_channels=4)
    with pytest.raises(ValueError, match="batch size 6"):
        d(tf.zeros([6, 4, 4, 1]), res=2)


def test_tf_checkpoint_holds_every_variable(tmp_path):
    kw = dict(resolution=16, num_channels=3, label_size=2, fmap_base=64, fmap_max=16)
    g, d = Generator(**kw), Discriminator(**kw)
    prefix = tf.train.Checkpoint(G=g, D=d).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(prefix) if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(g.weights) + len(d.weights)
    g2, d2 = Generator(**kw), Discriminator(**kw)
    tf.train.Checkpoint(G=g2, D=d2).read(prefix).assert_consumed()
    for a, b in zip(g.weights + d.weights, g2.weights + d2.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

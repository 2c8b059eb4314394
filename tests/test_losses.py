"""Losses against hand-computed values and a finite-difference gradient penalty."""
import numpy as np
import pytest
import tensorflow as tf

from progan_tf import losses
from progan_tf.networks import Discriminator, Generator

N, S, C, L = 4, 4, 1, 3


class LinearD:
    """D(x) = [sum(w * x) + c, x_flat @ V]: its input gradient is w for every sample."""

    resolution_log2 = 2    # a 4x4 network: the stage is the full resolution

    def __init__(self, label_size=L):
        rng = np.random.RandomState(1)
        self.w = rng.randn(S, S, C).astype(np.float32) * 0.2
        self.c = 0.3
        self.v = rng.randn(S * S * C, label_size).astype(np.float32)

    def np(self, x):
        flat = x.reshape(len(x), -1)
        return (x * self.w).sum(axis=(1, 2, 3)) + self.c, flat @ self.v

    def __call__(self, x, res=None, alpha=1.0):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        score = tf.reduce_sum(x * self.w, axis=[1, 2, 3]) + self.c
        return tf.concat([score[:, None], flat @ self.v], axis=1)


class ConstantG:
    """Returns fixed fakes; records the labels it was given."""

    def __init__(self, fakes):
        self.fakes = fakes
        self.labels = None

    def __call__(self, latents, labels=None, res=None, alpha=1.0):
        self.labels = labels
        return tf.constant(self.fakes)


def np_xent(labels, logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -(labels * log_softmax).sum(axis=1)


def softplus(x):
    return np.log1p(np.exp(x))


@pytest.fixture
def batch():
    rng = np.random.RandomState(2)
    reals = rng.uniform(-1, 1, (N, S, S, C)).astype(np.float32)
    fakes = rng.uniform(-1, 1, (N, S, S, C)).astype(np.float32)
    labels = np.eye(L, dtype=np.float32)[[0, 2, 1, 2]]
    return reals, fakes, labels, tf.zeros([N, 8])


def test_wgan_gp_d_loss_by_hand(batch):
    reals, fakes, labels, z = batch
    D, G = LinearD(), ConstantG(fakes)
    loss, stats = losses.WGANGP().d_loss(G, D, z, reals, labels, res=2, alpha=1.0,
                                   mixing_factors=tf.constant([0.1, 0.5, 0.9, 0.3]))
    real_s, real_l = D.np(reals)
    fake_s, fake_l = D.np(fakes)
    norm = np.sqrt((D.w.astype(np.float64) ** 2).sum())
    expected = (fake_s - real_s + 10.0 * (norm - 1.0) ** 2 + 0.001 * real_s ** 2
                + np_xent(labels, real_l) + np_xent(labels, fake_l))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["mixed_norms"].numpy(), np.full(N, norm), rtol=1e-5)
    np.testing.assert_allclose(stats["epsilon_penalty"].numpy(), real_s ** 2, rtol=1e-5)
    np.testing.assert_allclose(stats["label_penalty_reals"].numpy(), np_xent(labels, real_l), rtol=1e-5)
    np.testing.assert_array_equal(G.labels, labels)  # D step: fakes use the reals' labels


def test_wgan_gp_options_and_unconditional(batch):
    reals, fakes, _, z = batch
    D, G = LinearD(label_size=0), ConstantG(fakes)
    loss, stats = losses.WGANGP(wgan_lambda=2.0, wgan_epsilon=0.5, wgan_target=2.0).d_loss(
        G, D, z, reals, None, res=2)
    real_s, _ = D.np(reals)
    fake_s, _ = D.np(fakes)
    norm = np.sqrt((D.w.astype(np.float64) ** 2).sum())
    expected = fake_s - real_s + 2.0 / 4.0 * (norm - 2.0) ** 2 + 0.5 * real_s ** 2
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert "label_penalty_reals" not in stats


def test_generator_losses_by_hand(batch):
    _, fakes, labels, z = batch
    D, G = LinearD(), ConstantG(fakes)
    fake_s, fake_l = D.np(fakes)
    xent = np_xent(labels, fake_l)
    for loss_object, expected in ((losses.WGANGP(), -fake_s + xent),
                                  (losses.LogisticR1(), softplus(-fake_s) + xent),
                                  (losses.LSGAN(), 0.5 * (fake_s - 1) ** 2 + xent)):
        loss, _ = loss_object.g_loss(G, D, z, labels, res=2, alpha=1.0)
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-5)
    loss, _ = losses.WGANGP(cond_weight=0.0).g_loss(G, D, z, labels, res=2)
    np.testing.assert_allclose(loss.numpy(), -fake_s, rtol=1e-5, atol=1e-6)


def test_logistic_r1_and_lsgan_d_by_hand(batch):
    reals, fakes, labels, z = batch
    D, G = LinearD(), ConstantG(fakes)
    real_s, real_l = D.np(reals)
    fake_s, fake_l = D.np(fakes)
    xent = np_xent(labels, real_l) + np_xent(labels, fake_l)
    loss, stats = losses.LogisticR1(r1_gamma=4.0).d_loss(G, D, z, reals, labels, res=2)
    w2 = (D.w.astype(np.float64) ** 2).sum()
    np.testing.assert_allclose(loss.numpy(), softplus(fake_s) + softplus(-real_s) + 2.0 * w2 + xent,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["r1_penalty"].numpy(), np.full(N, w2), rtol=1e-5)
    loss, _ = losses.LSGAN().d_loss(G, D, z, reals, labels, res=2)
    np.testing.assert_allclose(loss.numpy(), 0.5 * (real_s - 1) ** 2 + 0.5 * fake_s ** 2 + xent,
                               rtol=1e-5, atol=1e-5)


def test_penalties_below_full_resolution_are_taken_at_its_scale(batch):
    """A 4x4 stage of a 16x16 network: the norm w.r.t. the 16x16 image is the stage norm / 4."""
    reals, fakes, labels, z = batch
    d = LinearD()
    d.resolution_log2 = 4
    norm = np.sqrt((d.w ** 2).sum())
    _, stats = losses.WGANGP().d_loss(ConstantG(fakes), d, z, reals, labels, res=2)
    np.testing.assert_allclose(stats["mixed_norms"].numpy(), [norm / 4] * N, rtol=1e-5)
    np.testing.assert_allclose(stats["gradient_penalty"].numpy(), [(norm / 4 - 1) ** 2] * N, rtol=1e-5)
    _, stats = losses.LogisticR1().d_loss(ConstantG(fakes), d, z, reals, labels, res=2)
    np.testing.assert_allclose(stats["r1_penalty"].numpy(), [norm ** 2 / 16] * N, rtol=1e-5)


def test_gradient_penalty_matches_finite_differences():
    """A real (tiny, float64) D: the penalty's gradient norm equals a central-difference estimate."""
    kw = dict(resolution=8, num_channels=1, fmap_base=16, fmap_max=4, dtype="float64")
    G, D = Generator(**kw, latent_size=4), Discriminator(**kw, mbstd_group_size=1)
    rng = np.random.RandomState(3)
    reals = rng.uniform(-1, 1, (2, 8, 8, 1))
    z = tf.constant(rng.randn(2, 4))
    u = np.array([0.25, 0.7])
    alpha = tf.constant(0.4, tf.float64)
    _, stats = losses.WGANGP().d_loss(G, D, z, reals, res=3, alpha=alpha, mixing_factors=u)
    fakes = G(z, res=3, alpha=alpha).numpy()
    mixed = reals + (fakes - reals) * u[:, None, None, None]
    h = 1e-5
    for i in range(2):
        grad = np.zeros(mixed[i].size)
        for k in range(mixed[i].size):
            plus, minus = mixed[i:i + 1].copy(), mixed[i:i + 1].copy()
            plus.flat[k] += h
            minus.flat[k] -= h
            grad[k] = (D(plus, res=3, alpha=alpha).numpy()[0, 0] - D(minus, res=3, alpha=alpha).numpy()[0, 0]) / (2 * h)
        norm = np.linalg.norm(grad)
        np.testing.assert_allclose(stats["mixed_norms"].numpy()[i], norm, rtol=1e-5)
        np.testing.assert_allclose(stats["gradient_penalty"].numpy()[i], (norm - 1) ** 2, rtol=1e-4)


def test_losses_differentiate_the_right_network():
    kw = dict(resolution=8, num_channels=1, fmap_base=32, fmap_max=8)
    G, D = Generator(**kw), Discriminator(**kw)
    z, reals = tf.random.normal([4, G.latent_size]), tf.random.uniform([4, 8, 8, 1], -1, 1)
    alpha = tf.constant(0.5)
    for cls in losses.LOSSES.values():
        pair = cls()
        @tf.function
        def grads():
            with tf.GradientTape(persistent=True) as tape:
                d_loss, _ = pair.d_loss(G, D, z, reals, res=3, alpha=alpha)
                g_loss, _ = pair.g_loss(G, D, z, res=3, alpha=alpha)
                d_loss, g_loss = tf.reduce_mean(d_loss), tf.reduce_mean(g_loss)
            return (tape.gradient(d_loss, D.active_variables(3)), tape.gradient(d_loss, G.trainable_variables),
                    tape.gradient(g_loss, G.active_variables(3)))
        d_grads, d_grads_of_g, g_grads = grads()
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in d_grads), pair.name
        assert all(g is None for g in d_grads_of_g), pair.name  # the D step never backprops into G
        assert all(g is not None for g in g_grads), pair.name


def test_make_loss_from_the_config_group_of_the_named_loss():
    from progan_tf.config import default_config

    c = default_config()
    loss = losses.make_loss(c.loss)
    assert isinstance(loss, losses.WGANGP) and (loss.wgan_lambda, loss.wgan_epsilon, loss.wgan_target) == (10, 0.001, 1)
    assert loss.d_inputs == ("mixing_factors", "loss_scale")
    c.loss.name, c.loss.logistic_r1.r1_gamma, c.loss.cond_weight = "logistic_r1", 5.0, 0.5
    loss = losses.make_loss(c.loss)
    assert isinstance(loss, losses.LogisticR1) and (loss.r1_gamma, loss.cond_weight) == (5.0, 0.5)
    assert loss.d_inputs == ("loss_scale",)
    c.loss.name = "lsgan"
    assert isinstance(losses.make_loss(c.loss), losses.LSGAN) and losses.LSGAN.d_inputs == ()
    c.loss.name = "wgan"
    with pytest.raises(ValueError, match="unknown loss 'wgan'; choose one of logistic_r1, lsgan, wgan_gp"):
        losses.make_loss(c.loss)
    with pytest.raises(ValueError, match="loss.wgan_gp: unknown option.s. r1_gamma; wgan_gp takes wgan_lambda"):
        losses.make_loss({"name": "wgan_gp", "wgan_gp": {"r1_gamma": 1.0}})


def test_a_saved_config_with_flat_loss_options_is_brought_to_the_groups():
    import json

    from ml_collections import config_dict

    from conftest import FIXTURES
    from progan_tf.config import complete_saved_config

    with open(f"{FIXTURES}/legacy-run-v0/config.json") as f:
        saved = json.load(f)
    saved["loss"].update(wgan_lambda=7.0, r1_gamma=3.0)
    c = config_dict.ConfigDict(saved)
    c.lock()
    complete_saved_config(c)
    assert "wgan_lambda" not in c.loss and c.loss.wgan_gp.wgan_lambda == 7.0 and c.loss.logistic_r1.r1_gamma == 3.0
    assert c.loss.wgan_gp.wgan_epsilon == 0.001 and c.loss.cond_weight == 1.0
    assert c.G.fused_scale is False and c.D.fused_scale is False
    assert isinstance(losses.make_loss(c.loss), losses.WGANGP)

"""GAN losses (docs/method.md#losses) as small objects, made from the config by ``make_loss``.

A loss is a :class:`GANLoss` holding its own options (``config.loss.<name>.*``, plus
the shared ``config.loss.cond_weight``) with two methods

    d_loss(G, D, latents, reals, real_labels, *, res, alpha, fake_labels=None, **inputs)
    g_loss(G, D, latents, fake_labels, *, res, alpha)

returning ``(per_sample_loss [N] float32, stats)`` where ``stats`` is a dict of
per-sample tensors for logging (scores, penalties). ``G(latents, labels, res=,
alpha=)`` returns images and ``D(images, res=, alpha=)`` returns ``[N, 1 + L]``:
column 0 is the score, the rest label logits. The trainer reduces the per-sample
losses (sum divided by the *global* batch under ``tf.distribute``).

A loss declares the extra inputs its D loss takes in ``d_inputs``: ``mixing_factors``
(per-sample U(0, 1) draws for the interpolates, which the trainer draws from its
seeded stream) and ``loss_scale`` (the float16 loss scale, for an inner gradient).
The trainer passes exactly those.

In the D step the fakes are generated with the reals' labels (as the original
does) unless ``fake_labels`` is given; ``G`` is not differentiated there.
When labels are present both losses add the AC-GAN softmax cross-entropy of the
label logits, weighted by ``cond_weight``: for reals and fakes in D, for fakes in G.
"""

from __future__ import annotations

import inspect
from typing import ClassVar, Dict, Tuple, Type

import tensorflow as tf


def _split(d_out):
    d_out = tf.cast(d_out, tf.float32)
    return d_out[:, 0], d_out[:, 1:]


def _has_labels(labels, logits) -> bool:
    return labels is not None and labels.shape[-1] != 0 and logits.shape[-1] != 0


def label_penalty(labels, logits):
    """Softmax cross-entropy of label logits against (one-hot) labels, per sample."""
    return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits)


def _fakes_for_d(G, latents, labels, res, alpha):
    return tf.stop_gradient(G(latents, labels, res=res, alpha=alpha))


def _add_d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits, cond_weight):
    if _has_labels(real_labels, real_logits):
        stats["label_penalty_reals"] = label_penalty(real_labels, real_logits)
        stats["label_penalty_fakes"] = label_penalty(fake_labels, fake_logits)
        loss += (stats["label_penalty_reals"] + stats["label_penalty_fakes"]) * cond_weight
    return loss


def _add_g_label_terms(loss, stats, fake_labels, fake_logits, cond_weight):
    if _has_labels(fake_labels, fake_logits):
        stats["label_penalty_fakes"] = label_penalty(fake_labels, fake_logits)
        loss += stats["label_penalty_fakes"] * cond_weight
    return loss


def input_gradients(D, images, res, alpha, loss_scale=1.0):
    """Scores of D on ``images`` and the gradient of their sum w.r.t. the images.

    The inner tape is created here so that the sum being differentiated is
    computed inside it (docs/method.md#tensorflow); the outer tape of the trainer
    still records everything, giving the penalty's double backward. Under
    float16, ``loss_scale`` (the optimizer's loss scale) keeps the inner
    backward pass from underflowing; it is divided out again here.
    """
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        d_out = D(images, res=res, alpha=alpha)
        scores, logits = _split(d_out)
        total = tf.reduce_sum(scores) * tf.cast(loss_scale, tf.float32)
    grads = tf.cast(tape.gradient(total, images), tf.float32) / tf.cast(loss_scale, tf.float32)
    return scores, logits, grads


def _sample_norm(x):
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=[1, 2, 3]))


def full_resolution_factor(D, res) -> float:
    """``f = 2**(log2(R) - res)``: how much smaller the gradient is w.r.t. the full-resolution image.

    The original always feeds D full-resolution images (a lower stage's images are
    nearest-upscaled and D box-downscales them again), so its penalties differentiate
    with respect to the R x R image. Each stage pixel is then the mean of f*f full
    pixels, so the full-resolution gradient norm is the stage-resolution norm over f.
    The penalties are computed at the stage's resolution (cheap) and divided by f
    (the norm) or f**2 (the squared norm). See docs/method.md#penalty-scale.
    """
    res = D.resolution_log2 if res is None else int(res)
    return float(2 ** (D.resolution_log2 - res))


class GANLoss:
    """A D and G loss pair with its options. Subclasses set ``name`` and ``d_inputs``."""

    name: ClassVar[str] = ""
    d_inputs: ClassVar[Tuple[str, ...]] = ()      # extra inputs of d_loss the trainer provides

    def __init__(self, cond_weight: float = 1.0):
        self.cond_weight = float(cond_weight)

    def _fakes_and_scores(self, G, D, latents, reals, real_labels, fake_labels, res, alpha):
        fake_labels = real_labels if fake_labels is None else fake_labels
        fakes = _fakes_for_d(G, latents, fake_labels, res, alpha)
        return fakes, tf.cast(reals, fakes.dtype), fake_labels

    def _d_label_terms(self, loss, stats, real_labels, fake_labels, real_logits, fake_logits):
        return _add_d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits, self.cond_weight)

    def _g_scores(self, G, D, latents, fake_labels, res, alpha):
        return _split(D(G(latents, fake_labels, res=res, alpha=alpha), res=res, alpha=alpha))

    def _g_loss_from(self, loss, fake_scores, fake_logits, fake_labels):
        stats = {"fake_scores": fake_scores}
        return _add_g_label_terms(loss, stats, fake_labels, fake_logits, self.cond_weight), stats

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class WGANGP(GANLoss):
    """The paper's WGAN-GP: ``D(fake) - D(real) + lambda/target**2 * (||grad D(xhat)|| / f - target)**2
    + epsilon * D(real)**2`` for D and ``-D(G(z))`` for G; ``f`` is :func:`full_resolution_factor`."""

    name = "wgan_gp"
    d_inputs = ("mixing_factors", "loss_scale")

    def __init__(self, wgan_lambda: float = 10.0, wgan_epsilon: float = 0.001, wgan_target: float = 1.0,
                 cond_weight: float = 1.0):
        super().__init__(cond_weight)
        self.wgan_lambda, self.wgan_epsilon, self.wgan_target = float(wgan_lambda), float(wgan_epsilon), float(wgan_target)

    def d_loss(self, G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None,
               mixing_factors=None, loss_scale=1.0):
        fakes, reals, fake_labels = self._fakes_and_scores(G, D, latents, reals, real_labels, fake_labels, res, alpha)
        real_scores, real_logits = _split(D(reals, res=res, alpha=alpha))
        fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
        loss = fake_scores - real_scores

        if mixing_factors is None:
            mixing_factors = tf.random.uniform([tf.shape(reals)[0], 1, 1, 1], 0.0, 1.0)
        u = tf.cast(tf.reshape(mixing_factors, [-1, 1, 1, 1]), reals.dtype)
        mixed = reals + (fakes - reals) * u
        mixed_scores, _, mixed_grads = input_gradients(D, mixed, res, alpha, loss_scale)
        mixed_norms = _sample_norm(mixed_grads) / full_resolution_factor(D, res)
        gradient_penalty = tf.square(mixed_norms - self.wgan_target)
        loss += gradient_penalty * (self.wgan_lambda / self.wgan_target ** 2)

        epsilon_penalty = tf.square(real_scores)
        loss += epsilon_penalty * self.wgan_epsilon
        stats = {"real_scores": real_scores, "fake_scores": fake_scores, "mixed_scores": mixed_scores,
                 "mixed_norms": mixed_norms, "gradient_penalty": gradient_penalty,
                 "epsilon_penalty": epsilon_penalty}
        return self._d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits), stats

    def g_loss(self, G, D, latents, fake_labels=None, *, res=None, alpha=1.0):
        fake_scores, fake_logits = self._g_scores(G, D, latents, fake_labels, res, alpha)
        return self._g_loss_from(-fake_scores, fake_scores, fake_logits, fake_labels)


class LogisticR1(GANLoss):
    """Non-saturating logistic loss with the R1 penalty: ``softplus(D(fake)) + softplus(-D(real))
    + gamma/2 * ||grad_real D(real)||**2 / f**2`` for D and ``softplus(-D(G(z)))`` for G."""

    name = "logistic_r1"
    d_inputs = ("loss_scale",)

    def __init__(self, r1_gamma: float = 10.0, cond_weight: float = 1.0):
        super().__init__(cond_weight)
        self.r1_gamma = float(r1_gamma)

    def d_loss(self, G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None,
               loss_scale=1.0):
        fakes, reals, fake_labels = self._fakes_and_scores(G, D, latents, reals, real_labels, fake_labels, res, alpha)
        fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
        real_scores, real_logits, real_grads = input_gradients(D, reals, res, alpha, loss_scale)
        loss = tf.nn.softplus(fake_scores) + tf.nn.softplus(-real_scores)
        r1_penalty = tf.reduce_sum(tf.square(real_grads), axis=[1, 2, 3]) / full_resolution_factor(D, res) ** 2
        loss += r1_penalty * (self.r1_gamma * 0.5)
        stats = {"real_scores": real_scores, "fake_scores": fake_scores, "r1_penalty": r1_penalty}
        return self._d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits), stats

    def g_loss(self, G, D, latents, fake_labels=None, *, res=None, alpha=1.0):
        fake_scores, fake_logits = self._g_scores(G, D, latents, fake_labels, res, alpha)
        return self._g_loss_from(tf.nn.softplus(-fake_scores), fake_scores, fake_logits, fake_labels)


class LSGAN(GANLoss):
    """Least squares (Mao et al. 2017, a=0, b=c=1): ``0.5 * (D(real) - 1)**2 + 0.5 * D(fake)**2``
    for D and ``0.5 * (D(G(z)) - 1)**2`` for G."""

    name = "lsgan"

    def d_loss(self, G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None):
        fakes, reals, fake_labels = self._fakes_and_scores(G, D, latents, reals, real_labels, fake_labels, res, alpha)
        real_scores, real_logits = _split(D(reals, res=res, alpha=alpha))
        fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
        loss = 0.5 * tf.square(real_scores - 1.0) + 0.5 * tf.square(fake_scores)
        stats = {"real_scores": real_scores, "fake_scores": fake_scores}
        return self._d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits), stats

    def g_loss(self, G, D, latents, fake_labels=None, *, res=None, alpha=1.0):
        fake_scores, fake_logits = self._g_scores(G, D, latents, fake_labels, res, alpha)
        return self._g_loss_from(0.5 * tf.square(fake_scores - 1.0), fake_scores, fake_logits, fake_labels)


LOSSES: Dict[str, Type[GANLoss]] = {cls.name: cls for cls in (WGANGP, LogisticR1, LSGAN)}


def make_loss(loss_config) -> GANLoss:
    """The loss ``loss_config.name`` with its options ``loss_config.<name>`` and ``cond_weight``.

    An unknown name or option is a ``ValueError`` naming it and what there is instead.
    """
    name = loss_config.get("name")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    cls, options = LOSSES[name], dict(loss_config.get(name) or {})
    accepted = [p for p in inspect.signature(cls).parameters if p != "cond_weight"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"loss.{name}: unknown option(s) {', '.join(unknown)}; {name} takes "
                         f"{', '.join(accepted) or 'no options'}")
    return cls(**options, cond_weight=loss_config.get("cond_weight", 1.0))

"""GAN losses (docs/method.md, section 3), picked by name with ``get_loss``.

Each loss is a pair of small functions

    d_loss(G, D, latents, reals, real_labels, *, res, alpha, fake_labels=None, **options)
    g_loss(G, D, latents, fake_labels, *, res, alpha, **options)

returning ``(per_sample_loss [N] float32, stats)`` where ``stats`` is a dict of
per-sample tensors for logging (scores, penalties). ``G(latents, labels, res=,
alpha=)`` returns images and ``D(images, res=, alpha=)`` returns ``[N, 1 + L]``:
column 0 is the score, the rest label logits. The trainer reduces the per-sample
losses (sum divided by the *global* batch under ``tf.distribute``).

In the D step the fakes are generated with the reals' labels (as the original
does) unless ``fake_labels`` is given; ``G`` is not differentiated there.
When labels are present both losses add the AC-GAN softmax cross-entropy of the
label logits, weighted by ``cond_weight``: for reals and fakes in D, for fakes in G.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

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


def input_gradients(D, images, res, alpha, gradient_scale=1.0):
    """Scores of D on ``images`` and the gradient of their sum w.r.t. the images.

    The inner tape is created here so that the sum being differentiated is
    computed inside it (docs/method.md, section 7); the outer tape of the trainer
    still records everything, giving the penalty's double backward. Under
    float16, ``gradient_scale`` (the optimizer's loss scale) keeps the inner
    backward pass from underflowing; it is divided out again here.
    """
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        d_out = D(images, res=res, alpha=alpha)
        scores, logits = _split(d_out)
        total = tf.reduce_sum(scores) * tf.cast(gradient_scale, tf.float32)
    grads = tf.cast(tape.gradient(total, images), tf.float32) / tf.cast(gradient_scale, tf.float32)
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
    (the norm) or f**2 (the squared norm). See docs/method.md, "Losses".
    """
    res = D.resolution_log2 if res is None else int(res)
    return float(2 ** (D.resolution_log2 - res))


# --- WGAN-GP (the paper's) -------------------------------------------------------------------

def d_wgan_gp(G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None,
              wgan_lambda=10.0, wgan_epsilon=0.001, wgan_target=1.0, cond_weight=1.0,
              mixing_factors=None, gradient_scale=1.0):
    """``D(fake) - D(real) + lambda/target**2 * (||grad D(xhat)|| - target)**2 + eps * D(real)**2``."""
    fake_labels = real_labels if fake_labels is None else fake_labels
    fakes = _fakes_for_d(G, latents, fake_labels, res, alpha)
    reals = tf.cast(reals, fakes.dtype)
    real_scores, real_logits = _split(D(reals, res=res, alpha=alpha))
    fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
    loss = fake_scores - real_scores

    if mixing_factors is None:
        mixing_factors = tf.random.uniform([tf.shape(reals)[0], 1, 1, 1], 0.0, 1.0)
    u = tf.cast(tf.reshape(mixing_factors, [-1, 1, 1, 1]), reals.dtype)
    mixed = reals + (fakes - reals) * u
    mixed_scores, _, mixed_grads = input_gradients(D, mixed, res, alpha, gradient_scale)
    mixed_norms = _sample_norm(mixed_grads) / full_resolution_factor(D, res)
    gradient_penalty = tf.square(mixed_norms - wgan_target)
    loss += gradient_penalty * (wgan_lambda / wgan_target ** 2)

    epsilon_penalty = tf.square(real_scores)
    loss += epsilon_penalty * wgan_epsilon
    stats = {"real_scores": real_scores, "fake_scores": fake_scores, "mixed_scores": mixed_scores,
             "mixed_norms": mixed_norms, "gradient_penalty": gradient_penalty,
             "epsilon_penalty": epsilon_penalty}
    loss = _add_d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits, cond_weight)
    return loss, stats


def g_wgan(G, D, latents, fake_labels=None, *, res=None, alpha=1.0, cond_weight=1.0):
    """``-D(G(z))`` (+ label cross-entropy of the fakes)."""
    fake_scores, fake_logits = _split(D(G(latents, fake_labels, res=res, alpha=alpha), res=res, alpha=alpha))
    stats = {"fake_scores": fake_scores}
    loss = _add_g_label_terms(-fake_scores, stats, fake_labels, fake_logits, cond_weight)
    return loss, stats


# --- Non-saturating logistic with R1 ---------------------------------------------------------

def d_logistic_r1(G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None,
                  r1_gamma=10.0, cond_weight=1.0, gradient_scale=1.0):
    """``softplus(D(fake)) + softplus(-D(real)) + gamma/2 * ||grad_real D(real)||**2``."""
    fake_labels = real_labels if fake_labels is None else fake_labels
    fakes = _fakes_for_d(G, latents, fake_labels, res, alpha)
    fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
    real_scores, real_logits, real_grads = input_gradients(D, tf.cast(reals, fakes.dtype), res, alpha,
                                                           gradient_scale)
    loss = tf.nn.softplus(fake_scores) + tf.nn.softplus(-real_scores)
    r1_penalty = tf.reduce_sum(tf.square(real_grads), axis=[1, 2, 3]) / full_resolution_factor(D, res) ** 2
    loss += r1_penalty * (r1_gamma * 0.5)
    stats = {"real_scores": real_scores, "fake_scores": fake_scores, "r1_penalty": r1_penalty}
    loss = _add_d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits, cond_weight)
    return loss, stats


def g_logistic_ns(G, D, latents, fake_labels=None, *, res=None, alpha=1.0, cond_weight=1.0):
    """Non-saturating ``softplus(-D(G(z)))``."""
    fake_scores, fake_logits = _split(D(G(latents, fake_labels, res=res, alpha=alpha), res=res, alpha=alpha))
    stats = {"fake_scores": fake_scores}
    loss = _add_g_label_terms(tf.nn.softplus(-fake_scores), stats, fake_labels, fake_logits, cond_weight)
    return loss, stats


# --- Least squares (Mao et al. 2017, a=0, b=c=1) --------------------------------------------

def d_lsgan(G, D, latents, reals, real_labels=None, *, res=None, alpha=1.0, fake_labels=None,
            cond_weight=1.0):
    """``0.5 * (D(real) - 1)**2 + 0.5 * D(fake)**2``."""
    fake_labels = real_labels if fake_labels is None else fake_labels
    fakes = _fakes_for_d(G, latents, fake_labels, res, alpha)
    real_scores, real_logits = _split(D(tf.cast(reals, fakes.dtype), res=res, alpha=alpha))
    fake_scores, fake_logits = _split(D(fakes, res=res, alpha=alpha))
    loss = 0.5 * tf.square(real_scores - 1.0) + 0.5 * tf.square(fake_scores)
    stats = {"real_scores": real_scores, "fake_scores": fake_scores}
    loss = _add_d_label_terms(loss, stats, real_labels, fake_labels, real_logits, fake_logits, cond_weight)
    return loss, stats


def g_lsgan(G, D, latents, fake_labels=None, *, res=None, alpha=1.0, cond_weight=1.0):
    """``0.5 * (D(G(z)) - 1)**2``."""
    fake_scores, fake_logits = _split(D(G(latents, fake_labels, res=res, alpha=alpha), res=res, alpha=alpha))
    stats = {"fake_scores": fake_scores}
    loss = _add_g_label_terms(0.5 * tf.square(fake_scores - 1.0), stats, fake_labels, fake_logits, cond_weight)
    return loss, stats


class GANLoss(NamedTuple):
    name: str
    d_loss: Callable
    g_loss: Callable


LOSSES = {
    "wgan_gp": GANLoss("wgan_gp", d_wgan_gp, g_wgan),
    "logistic_r1": GANLoss("logistic_r1", d_logistic_r1, g_logistic_ns),
    "lsgan": GANLoss("lsgan", d_lsgan, g_lsgan),
}


def get_loss(name: str) -> GANLoss:
    """The (D, G) loss pair called ``name``: one of ``wgan_gp``, ``logistic_r1``, ``lsgan``."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}") from None

"""What one training step is: the compiled D and G steps of a stage, with their random streams.

``TrainingSteps.for_stage(res, minibatch)`` gives the stage's pair of ``tf.function``s
(built once per stage, so each traces once; the fade-in alpha is a tensor argument):

* ``d_step(reals, labels, alpha, iteration, ema_beta)``: one D update on a global batch of
  uint8 reals, then the moving average ``Gs`` follows G;
* ``g_step(alpha, iteration)``: one G update.

Both return their statistics summed over replicas as global-batch means, plus
``Skipped/D`` or ``Skipped/G`` (1 when the update was skipped for non-finite gradients,
as the original does; docs/method.md#non-finite). How steps are looped, and when
checkpoints and summaries happen, is the trainer's business (``progan_tf.training``).

Determinism: every random draw of a step (latents, gradient-penalty mixing, mirror flips,
fake labels) comes from stateless RNG seeded by the config's seed and the iteration
counter, drawn for the whole global batch and sliced per replica. A run resumed from a
checkpoint, or split over several replicas, therefore draws exactly what one
uninterrupted single-device run draws.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import keras
import numpy as np
import tensorflow as tf

from progan_tf.datasets import reader as data_lib
from progan_tf.ema import update_ema
from progan_tf.losses import GANLoss

SKIPPED_PREFIX = "Skipped/"     # step statistics: 1 when that step's update was skipped

# Purposes of the stateless random streams (the first seed word is config.seed + purpose).
_RNG_D_LATENTS, _RNG_MIXING, _RNG_MIRROR, _RNG_G_LATENTS, _RNG_G_LABELS = range(5)


@dataclasses.dataclass
class StepModels:
    """The networks and optimizers a step updates (``D_opt``/``G_opt`` may be loss-scale wrappers)."""
    G: keras.Model
    D: keras.Model
    Gs: keras.Model
    G_opt: keras.optimizers.Optimizer
    D_opt: keras.optimizers.Optimizer


class TrainingSteps:
    """Builds and caches the compiled steps of each stage."""

    def __init__(self, models: StepModels, loss: GANLoss, strategy: tf.distribute.Strategy, *, seed: int,
                 labels: np.ndarray, mirror_augment: bool, loss_scaling: bool, jit_compile: bool):
        self.models, self.loss, self.strategy = models, loss, strategy
        self.seed = int(seed)
        self.labels = labels                       # [num_images, label_size]; label_size 0: unconditional
        self.mirror_augment = bool(mirror_augment)
        self.loss_scaling = bool(loss_scaling)
        self.jit_compile = bool(jit_compile)
        self.num_replicas = strategy.num_replicas_in_sync
        self.compiled: Dict[Tuple[int, int], tuple] = {}

    def for_stage(self, res: int, minibatch: int):
        """``(d_step, g_step)`` of the stage at ``2**res`` pixels with a global batch of ``minibatch``."""
        key = (res, minibatch)
        if key not in self.compiled:
            self.compiled[key] = self._compile(res, minibatch)
        return self.compiled[key]

    # --- random streams -----------------------------------------------------------------

    def _seed(self, purpose: int, iteration):
        return tf.stack([tf.cast(self.seed + purpose, tf.int64), tf.cast(iteration, tf.int64)])

    def _replica_indices(self, local_batch: int):
        """Global indices of this replica's samples: replica k holds ``k, k+R, k+2R, ...``."""
        ctx = tf.distribute.get_replica_context()
        return tf.cast(ctx.replica_id_in_sync_group, tf.int32) + self.num_replicas * tf.range(local_batch)

    def _normal(self, purpose, iteration, minibatch, size, idx):
        return tf.gather(tf.random.stateless_normal([minibatch, size], self._seed(purpose, iteration)), idx)

    # --- the per-replica work -----------------------------------------------------------

    def _d_replica_fn(self, res: int, minibatch: int):
        m, loss, R = self.models, self.loss, self.num_replicas
        local, latent_size, conditional = minibatch // R, m.G.latent_size, self.labels.shape[1] > 0
        wants_mixing = "mixing_factors" in loss.d_inputs
        scales_penalty = self.loss_scaling and "loss_scale" in loss.d_inputs

        def d_replica(reals, labels, alpha, iteration):
            idx = self._replica_indices(local)
            x = data_lib.to_float(reals)
            if self.mirror_augment:
                x = data_lib.mirror(x, self._seed(_RNG_MIRROR, iteration), minibatch, idx)
            if res > 2:
                x = data_lib.fade_lod(x, 1.0 - alpha)
            z = self._normal(_RNG_D_LATENTS, iteration, minibatch, latent_size, idx)
            extra = {}
            if wants_mixing:
                extra["mixing_factors"] = tf.gather(
                    tf.random.stateless_uniform([minibatch], self._seed(_RNG_MIXING, iteration)), idx)
            if scales_penalty:
                extra["loss_scale"] = m.D_opt.dynamic_scale
            labels = labels if conditional else None
            per_sample, stats, skipped = self._minimize(m.D_opt, m.D.active_variables(res), minibatch, lambda: (
                loss.d_loss(m.G, m.D, z, x, labels, res=res, alpha=alpha, **extra)))
            return {**_sums({"Loss/D": per_sample, **{f"Loss/{k}": v for k, v in stats.items()}}, minibatch),
                    f"{SKIPPED_PREFIX}D": skipped / R}

        return d_replica

    def _g_replica_fn(self, res: int, minibatch: int):
        m, loss, R = self.models, self.loss, self.num_replicas
        local, latent_size = minibatch // R, m.G.latent_size
        all_labels = tf.constant(self.labels)
        num_images, conditional = self.labels.shape[0], self.labels.shape[1] > 0

        def g_replica(alpha, iteration):
            idx = self._replica_indices(local)
            z = self._normal(_RNG_G_LATENTS, iteration, minibatch, latent_size, idx)
            fake_labels = None
            if conditional:            # fake labels are drawn from the dataset's labels
                picks = tf.random.stateless_uniform([minibatch], self._seed(_RNG_G_LABELS, iteration),
                                                    maxval=num_images, dtype=tf.int32)
                fake_labels = tf.gather(all_labels, tf.gather(picks, idx))
            per_sample, stats, skipped = self._minimize(m.G_opt, m.G.active_variables(res), minibatch, lambda: (
                loss.g_loss(m.G, m.D, z, fake_labels, res=res, alpha=alpha)))
            return {**_sums({"Loss/G": per_sample, **{f"Loss/G_{k}": v for k, v in stats.items()}}, minibatch),
                    f"{SKIPPED_PREFIX}G": skipped / R}

        return g_replica

    def _minimize(self, optimizer, variables, global_batch: int, loss_fn):
        """One optimizer step on this replica's share of ``loss_fn()``'s per-sample losses.

        The sum is divided by the *global* batch (Keras optimizers sum gradients over replicas).
        As the original does, the update is skipped when any gradient of any replica is not
        finite (docs/method.md#non-finite); under float16 the loss is scaled and the
        loss-scale optimizer unscales, skips the same steps and lowers its scale.
        Returns ``(per-sample loss, stats, 1.0 if the update was skipped else 0.0)``.
        """
        with tf.GradientTape() as tape:
            per_sample, stats = loss_fn()
            total = tf.reduce_sum(per_sample) / global_batch
            if self.loss_scaling:
                total = optimizer.scale_loss(total)
        grads = tape.gradient(total, variables)
        finite = all_replicas_finite(grads)
        if self.loss_scaling:
            optimizer.apply(grads, variables)
        else:
            apply_if(finite, optimizer, grads, variables)
        return per_sample, stats, 1.0 - tf.cast(finite, tf.float32)

    # --- compiled steps -----------------------------------------------------------------

    def _compile(self, res: int, minibatch: int):
        d_replica, g_replica = self._d_replica_fn(res, minibatch), self._g_replica_fn(res, minibatch)
        strategy, m, R = self.strategy, self.models, self.num_replicas
        if self.jit_compile and R > 1:   # XLA compiles the per-replica work; the all-reduce stays outside
            d_replica, g_replica = (tf.function(f, jit_compile=True) for f in (d_replica, g_replica))
        outer_jit = self.jit_compile and R == 1

        def reduced(sums):
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

        @tf.function(jit_compile=outer_jit)
        def d_step(reals, labels, alpha, iteration, ema_beta):
            sums = strategy.run(d_replica, args=(reals, labels, alpha, iteration))
            update_ema(m.Gs, m.G, ema_beta)
            return reduced(sums)

        @tf.function(jit_compile=outer_jit)
        def g_step(alpha, iteration):
            return reduced(strategy.run(g_replica, args=(alpha, iteration)))

        return d_step, g_step


def _all_finite(grads):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])


def all_replicas_finite(grads):
    """Whether every gradient of every replica is finite (the same answer on all replicas)."""
    bad = 1.0 - tf.cast(_all_finite(grads), tf.float32)
    bad = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, bad)
    return tf.equal(bad, 0.0)


def apply_if(finite, optimizer, grads, variables):
    """``optimizer.apply(grads, variables)`` only where ``finite`` (a replica-context bool that all
    replicas agree on); otherwise the step leaves weights, moments and the iteration count alone.

    A cond in replica context may not hold a ``merge_call``, which Keras' apply uses under
    strategies that merge; there the cond is taken in cross-replica context, as Keras'
    own LossScaleOptimizer does.
    """
    def apply():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, apply, lambda: tf.constant(False))
        return

    def cross_replica(distribution, finite, grads):
        def apply_each():
            distribution.extended.call_for_each_replica(lambda g: optimizer.apply(g, variables), args=(grads,))
            return tf.constant(True)
        tf.cond(distribution.experimental_local_results(finite)[0], apply_each, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))


def _sums(values: dict, global_batch: int) -> dict:
    """Per-replica share of each statistic's global-batch mean."""
    return {k: tf.reduce_sum(tf.cast(v, tf.float32)) / global_batch for k, v in values.items()}

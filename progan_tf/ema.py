"""The generator's exponential moving average (``Gs``, docs/method.md).

``Gs`` is a separate model with G's configuration whose weights follow G:
after every training iteration ``w_Gs <- w_G + beta * (w_Gs - w_G)`` with
beta 0.999. Keras' optimizer ``use_ema`` is not used because it overwrites
the live weights when swapping; ``Gs`` must stay a model of its own.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def clone_model(model: keras.Model, **config_changes) -> keras.Model:
    """A new model of the same class and config (with ``config_changes``) holding a copy of ``model``'s weights.

    The changes must keep the weights' shapes, e.g. ``dtype``, ``name`` or ``normalize_latents``.
    """
    copy = model.__class__.from_config({**model.get_config(), **config_changes})
    copy.set_weights(model.get_weights())
    return copy


def update_ema(average: keras.Model, source: keras.Model, beta=0.999):
    """Move ``average``'s weights towards ``source``'s: ``a <- s + beta * (a - s)``.

    Works eagerly, inside a ``tf.function`` and in a ``tf.distribute``
    cross-replica context. ``beta`` may be a float or a scalar tensor.
    """
    if len(average.weights) != len(source.weights):
        raise ValueError(f"EMA model has {len(average.weights)} weights, source has {len(source.weights)}")
    for avg, src in zip(average.weights, source.weights):
        b = tf.cast(beta, avg.dtype)
        a, s = tf.convert_to_tensor(avg), tf.cast(tf.convert_to_tensor(src), avg.dtype)
        avg.assign(s + b * (a - s))

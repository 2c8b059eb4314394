"""ProGAN's custom Keras 3 layers (NHWC, TensorFlow backend).

Every layer is serialisable (``get_config``) and registered under the package
name ``progan_tf`` so models holding them can be saved and reloaded by Keras.
The maths follows docs/method.md#networks (Karras et al. 2018, section 4):

* ``EqualizedDense`` / ``EqualizedConv2D``: weights stored as N(0, 1) samples
  and multiplied at run time by ``gain / sqrt(fan_in)`` ("equalized learning
  rate"), biases start at zero.
* ``PixelNorm``: ``x * rsqrt(mean(x**2 over channels) + eps)``.
* ``MinibatchStdDev``: one extra feature map holding the mean standard
  deviation of each group of samples.
* ``WeightedSum``: the fade-in lerp, with alpha passed as a tensor so changing
  it never re-traces a ``tf.function``.
* ``Upscale2D`` (nearest) and ``Downscale2D`` (2x2 average).
* ``EqualizedUpscaleConv2D`` / ``EqualizedConv2DDownscale``: the original's fused
  up/downscale convolutions (``fused_scale``), one 4x4 stride-2 (transposed) conv each.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "progan_tf"


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _at_least_float32(x):
    """``x`` in float32 if it is a 16-bit float, else unchanged (float64 stays float64)."""
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def check_alpha(alpha):
    """Validate a fade-in alpha and return it.

    Python numbers and eager tensors are checked at once (``ValueError`` naming
    the value); symbolic tensors get a graph assertion, which raises
    ``InvalidArgumentError`` when the step runs.
    """
    if isinstance(alpha, numbers.Number) or isinstance(alpha, np.ndarray):
        value = float(np.asarray(alpha))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {value!r}")
        return alpha
    if tf.executing_eagerly() and hasattr(alpha, "numpy"):
        value = float(np.asarray(alpha.numpy()))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {value!r}")
        return alpha
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(alpha, tf.cast(0.0, alpha.dtype), message="alpha must be in [0, 1]"),
        tf.debugging.assert_less_equal(alpha, tf.cast(1.0, alpha.dtype), message="alpha must be in [0, 1]"),
    ]):
        return tf.identity(alpha)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelNorm(keras.layers.Layer):
    """Normalises each pixel's feature vector to unit average square.

    The reduction runs in (at least) float32 whatever the compute dtype, as the
    original does, so that mixed precision keeps its accuracy.
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x32 = _at_least_float32(x)
        scale = tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return tf.cast(x32 * scale, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class _EqualizedBase(keras.layers.Layer):
    """Shared weight handling of the equalized-learning-rate layers."""

    def __init__(self, gain: float = math.sqrt(2.0), use_wscale: bool = True, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.gain = float(gain)
        self.use_wscale = bool(use_wscale)
        self.use_bias = bool(use_bias)

    def _make_kernel(self, shape, fan_in: int):
        """Stored N(0, 1) and scaled by ``gain / sqrt(fan_in)`` at run time (or He-initialised
        and used as stored, without ``use_wscale``)."""
        he_std = self.gain / math.sqrt(fan_in)
        init_std, self.runtime_scale = (1.0, he_std) if self.use_wscale else (he_std, 1.0)
        self.kernel = self.add_weight(
            name="kernel", shape=shape,
            initializer=keras.initializers.RandomNormal(stddev=init_std))

    def _make_bias(self, units: int):
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(units,), initializer="zeros")

    def _scaled_kernel(self):
        kernel = tf.convert_to_tensor(self.kernel)
        kernel = tf.cast(kernel, self.compute_dtype)
        return kernel * tf.cast(self.runtime_scale, kernel.dtype) if self.runtime_scale != 1.0 else kernel

    def _add_bias(self, x):
        if self.bias is None:
            return x
        return tf.nn.bias_add(x, tf.cast(tf.convert_to_tensor(self.bias), x.dtype))

    def get_config(self):
        return {**super().get_config(), "gain": self.gain, "use_wscale": self.use_wscale,
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedDense(_EqualizedBase):
    """Dense layer with run-time weight scaling ``gain / sqrt(fan_in)``.

    Inputs of rank > 2 are flattened first (the original's dense does the same).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int("units", units)

    def build(self, input_shape):
        fan_in = int(np.prod(input_shape[1:]))
        self._make_kernel((fan_in, self.units), fan_in)
        self._make_bias(self.units)

    def call(self, x):
        if x.shape.rank != 2:
            x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
        return self._add_bias(tf.matmul(x, self._scaled_kernel()))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class _EqualizedConvBase(_EqualizedBase):
    """Options shared by the equalized convolutions: ``filters`` and ``kernel_size``."""

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


class _FusedConvBase(_EqualizedConvBase):
    """An odd k x k kernel applied as one stride-2 (k+1) x (k+1) conv (see ``_summed_shifts``)."""

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedConv2D(_EqualizedConvBase):
    """Stride-1 'SAME' 2-D convolution (NHWC) with run-time weight scaling."""

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        k = self.kernel_size
        self._make_kernel((k, k, in_channels, self.filters), k * k * in_channels)
        self._make_bias(self.filters)

    def call(self, x):
        kernel = self._scaled_kernel()
        if self.kernel_size == 1:
            # A 1x1 conv is a matmul over channels; this form is cheaper on CPUs.
            y = tf.einsum("nhwc,cd->nhwd", x, kernel[0, 0])
        else:
            y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        return self._add_bias(y)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)


def _summed_shifts(kernel):
    """The 3x3 (k x k) kernel zero-padded by one and its four (k+1) x (k+1) shifts summed.

    A k x k conv applied after a nearest x2 upscale, or followed by a 2x2 box average,
    is a single stride-2 (k+1) x (k+1) conv with this kernel (times 0.25 for the average).
    """
    k = tf.pad(kernel, [[1, 1], [1, 1], [0, 0], [0, 0]])
    return k[1:, 1:] + k[:-1, 1:] + k[1:, :-1] + k[:-1, :-1]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedConv2DDownscale(_FusedConvBase):
    """A 3x3 conv fused with the 2x2 box downscale: one 4x4 stride-2 'SAME' conv (NHWC).

    The discriminator's last conv of each block from 8x8 up under ``fused_scale``
    (the original's default). The kernel is stored as a plain ``[k, k, in, out]`` conv
    kernel with fan-in ``k*k*in``; it is padded, summed over its four shifts and
    multiplied by 0.25 at run time. Bias (and the caller's activation) come after the
    downscale, so this is not the function of conv3x3 + bias + lrelu + average
    (``fused_scale=False``). See docs/method.md#fused-scale.
    """

    def build(self, input_shape):
        in_channels, k = int(input_shape[-1]), self.kernel_size
        self._make_kernel((k, k, in_channels, self.filters), k * k * in_channels)
        self._make_bias(self.filters)

    def call(self, x):
        kernel = _summed_shifts(self._scaled_kernel()) * tf.cast(0.25, x.dtype)
        return self._add_bias(tf.nn.conv2d(x, kernel, strides=2, padding="SAME"))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else h // 2, None if w is None else w // 2, self.filters)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EqualizedUpscaleConv2D(_FusedConvBase):
    """A nearest x2 upscale fused with a 3x3 conv: one 4x4 stride-2 transposed conv (NHWC).

    The generator's first conv of each block from 8x8 up under ``fused_scale`` (the
    original's default). The kernel is stored in the transposed-conv layout
    ``[k, k, out, in]`` with fan-in ``k*k*in``, as the original stores it, so its
    weights map over unchanged; at run time it is padded and summed over its four
    shifts (no 0.25). As a function this equals upscale followed by a 'SAME' k x k
    conv with the kernel flipped in space, but it does 4 instead of 9 multiply-adds
    per output pixel and channel pair. See docs/method.md#fused-scale.
    """

    def build(self, input_shape):
        in_channels, k = int(input_shape[-1]), self.kernel_size
        self._make_kernel((k, k, self.filters, in_channels), k * k * in_channels)
        self._make_bias(self.filters)

    def call(self, x):
        kernel = _summed_shifts(self._scaled_kernel())
        h, w = x.shape[1], x.shape[2]
        out_shape = tf.stack([tf.shape(x)[0], 2 * h, 2 * w, self.filters])
        y = tf.nn.conv2d_transpose(x, kernel, out_shape, strides=2, padding="SAME")
        return self._add_bias(tf.ensure_shape(y, [None, 2 * h, 2 * w, self.filters]))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MinibatchStdDev(keras.layers.Layer):
    """Appends the average per-group standard deviation as one feature map.

    The batch is split into ``M = N / G`` groups with ``G = min(group_size, N)``;
    sample ``n`` belongs to group ``n % M`` (the original's reshape to
    ``[G, M, ...]``). ``N`` must be divisible by ``G``. Computed in (at least) float32.
    """

    def __init__(self, group_size: int = 4, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.group_size = _positive_int("group_size", group_size)
        self.epsilon = float(epsilon)

    def _group(self, batch):
        if isinstance(batch, int):
            group = min(self.group_size, batch)
            if batch % group:
                raise ValueError(
                    f"MinibatchStdDev: batch size {batch} is not divisible by the group size "
                    f"{group} (group_size={self.group_size}); use a batch that is a multiple of it")
            return group, []
        group = tf.minimum(self.group_size, batch)
        check = tf.debugging.assert_equal(
            batch % group, 0, message=f"MinibatchStdDev: batch size not divisible by group_size={self.group_size}")
        return group, [check]

    def call(self, x):
        batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
        group, checks = self._group(batch)
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        with tf.control_dependencies(checks):
            y = tf.reshape(_at_least_float32(x), [group, -1, h, w, c])
        y = y - tf.reduce_mean(y, axis=0, keepdims=True)
        y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + self.epsilon)   # [M, H, W, C]
        y = tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)               # [M, 1, 1, 1]
        y = tf.tile(tf.cast(y, x.dtype), [group, h, w, 1])                 # [N, H, W, 1]
        return tf.concat([x, y], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedSum(keras.layers.Layer):
    """Fade-in: ``old * (1 - alpha) + new * alpha``.

    ``alpha`` is an input (a Python number, a tensor or a ``tf.Variable``), not
    layer state, so a traced step function takes any alpha without re-tracing.
    The form is exact at both ends: alpha 0 gives ``old`` and 1 gives ``new``.
    Call it as ``WeightedSum()(old, new, alpha=alpha)``.
    """

    def call(self, old, new, alpha=1.0):
        alpha = tf.cast(check_alpha(alpha), new.dtype)
        return old * (1.0 - alpha) + new * alpha

    def compute_output_shape(self, old_shape, new_shape=None, alpha_shape=None):
        return old_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Upscale2D(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer factor (NHWC)."""

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = _positive_int("factor", factor)

    def call(self, x):
        f = self.factor
        if f == 1:
            return x
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        x = tf.reshape(x, [-1, h, 1, w, 1, c])
        x = tf.tile(x, [1, 1, f, 1, f, 1])
        return tf.reshape(x, [-1, h * f, w * f, c])

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, h * self.factor, w * self.factor, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Downscale2D(keras.layers.Layer):
    """Box-filter (average) downsampling by an integer factor (NHWC)."""

    def __init__(self, factor: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.factor = _positive_int("factor", factor)

    def call(self, x):
        f = self.factor
        if f == 1:
            return x
        return tf.nn.avg_pool2d(x, ksize=f, strides=f, padding="VALID")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, h // self.factor, w // self.factor, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

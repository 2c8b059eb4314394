"""ProGAN's growing generator and discriminator (docs/method.md#networks, #growing).

Both networks hold every block and every toRGB/fromRGB from 4x4 to the target
resolution, so any stage can run and all weights exist from construction (the
optimizers and checkpoints see one fixed variable list). A forward pass takes
the stage as ``res`` (log2 of the working resolution, 2 for 4x4) and the fade-in
``alpha``; it computes only the blocks up to ``res``. ``res`` is a Python int,
so wrapping the call in a ``tf.function`` gives one trace per stage; ``alpha``
should then be a tensor or ``tf.Variable`` so it never causes a re-trace.

A Python ``alpha`` of exactly 1 (the default) skips the old path entirely,
which is what inference at a stable stage wants; a tensor alpha always blends.

``fused_scale`` (default True, as the original's TF code) selects the original's fused
up/downscale convolutions for every block from 8x8 up: G's first conv is a 4x4
stride-2 transposed conv stored ``[k, k, out, in]``, D's last conv a 4x4 stride-2 conv
with bias and activation after the downscale. ``False`` gives the separate layers
(G: upscale then conv3x3; D: conv3x3, bias, lrelu, then average), which is also what
every checkpoint written before the option existed holds: a serialised config without
the key loads as ``False``.
"""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf

from progan_tf.layers import (Downscale2D, EqualizedConv2D, EqualizedConv2DDownscale, EqualizedDense,
                              EqualizedUpscaleConv2D, MinibatchStdDev, PixelNorm, Upscale2D, WeightedSum)

_PACKAGE = "progan_tf"
MIN_RESOLUTION, MAX_RESOLUTION = 4, 1024


def resolution_log2(resolution) -> int:
    """log2 of a resolution, which must be a power of two in [4, 1024]."""
    if (isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral)
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION or resolution & (resolution - 1)):
        raise ValueError(f"resolution must be a power of two between {MIN_RESOLUTION} and "
                         f"{MAX_RESOLUTION}, got {resolution!r}")
    return int(resolution).bit_length() - 1


def num_features(stage: int, fmap_base: int = 8192, fmap_decay: float = 1.0, fmap_max: int = 512) -> int:
    """Feature maps of a stage: ``min(int(fmap_base / 2**(stage * fmap_decay)), fmap_max)``."""
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def _is_one(alpha) -> bool:
    return isinstance(alpha, numbers.Number) and float(alpha) == 1.0


class _GrowingNetwork(keras.Model):
    """Configuration and stage checks shared by G and D."""

    def __init__(self, resolution=32, num_channels=1, label_size=0, fmap_base=8192, fmap_decay=1.0,
                 fmap_max=512, use_wscale=True, use_leakyrelu=True, fused_scale=True, **kwargs):
        super().__init__(**kwargs)
        self.resolution = int(resolution)
        self.resolution_log2 = resolution_log2(resolution)
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels!r}")
        if isinstance(label_size, bool) or not isinstance(label_size, numbers.Integral) or label_size < 0:
            raise ValueError(f"label_size must be an integer >= 0, got {label_size!r}")
        self.num_channels = int(num_channels)
        self.label_size = int(label_size)
        self.fmap_base, self.fmap_decay, self.fmap_max = int(fmap_base), float(fmap_decay), int(fmap_max)
        self.use_wscale = bool(use_wscale)
        self.use_leakyrelu = bool(use_leakyrelu)
        self.fused_scale = bool(fused_scale)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A config saved before ``fused_scale`` existed describes the separate (non-fused) layers.
        return super().from_config({"fused_scale": False, **config}, custom_objects)

    def nf(self, stage: int) -> int:
        return num_features(stage, self.fmap_base, self.fmap_decay, self.fmap_max)

    def act(self, x):
        return tf.nn.leaky_relu(x, alpha=0.2) if self.use_leakyrelu else tf.nn.relu(x)

    def check_res(self, res) -> int:
        """The stage to run (``None`` means the full resolution)."""
        if res is None:
            return self.resolution_log2
        if isinstance(res, bool) or not isinstance(res, numbers.Integral) or not 2 <= res <= self.resolution_log2:
            raise ValueError(f"res (log2 of the stage's resolution) must be an integer in "
                             f"[2, {self.resolution_log2}] for a {self.resolution}x{self.resolution} "
                             f"network, got {res!r}")
        return int(res)

    def _per_stage(self, layer_at):
        """``[None, None, layer_at(4), layer_at(8), ...]``: indexed by log2 of the stage's resolution."""
        return [None, None] + [layer_at(2 ** r) for r in range(2, self.resolution_log2 + 1)]

    @property
    def convs(self):
        """``convs[r]``: the 3x3 convs of the block at 2**r pixels (entries 0 and 1 are None)."""
        return self._per_stage(lambda size: [getattr(self, f"conv{k}_{size}x{size}") for k in range(1 if size == 4 else 2)])

    def active_variables(self, res=None):
        """Trainable variables a stage's forward pass can touch (its blocks, the
        current and the previous toRGB/fromRGB), in the model's variable order."""
        res = self.check_res(res)
        active = {id(v) for layer in self._stage_layers(res) for v in layer.trainable_variables}
        return [v for v in self.trainable_variables if id(v) in active]

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "num_channels": self.num_channels,
                "label_size": self.label_size, "fmap_base": self.fmap_base, "fmap_decay": self.fmap_decay,
                "fmap_max": self.fmap_max, "use_wscale": self.use_wscale, "use_leakyrelu": self.use_leakyrelu,
                "fused_scale": self.fused_scale}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Generator(_GrowingNetwork):
    """ProGAN generator: latents (+ one-hot labels) -> NHWC images (linear output, ~[-1, 1]).

    ``G(latents, labels=None, res=None, alpha=1.0)``; ``latent_size`` defaults to nf(0).
    """

    def __init__(self, resolution=32, num_channels=1, label_size=0, fmap_base=8192, fmap_decay=1.0,
                 fmap_max=512, latent_size=None, normalize_latents=True, use_wscale=True,
                 use_pixelnorm=True, pixelnorm_epsilon=1e-8, use_leakyrelu=True, fused_scale=True, **kwargs):
        super().__init__(resolution, num_channels, label_size, fmap_base, fmap_decay, fmap_max,
                         use_wscale, use_leakyrelu, fused_scale, **kwargs)
        self.latent_size = int(latent_size) if latent_size is not None else self.nf(0)
        if self.latent_size < 1:
            raise ValueError(f"latent_size must be positive, got {latent_size!r}")
        self.normalize_latents = bool(normalize_latents)
        self.use_pixelnorm = bool(use_pixelnorm)
        self.pixelnorm_epsilon = float(pixelnorm_epsilon)

        eq = dict(use_wscale=self.use_wscale, dtype=self.dtype_policy)
        self.pixel_norm = PixelNorm(self.pixelnorm_epsilon, name="pixel_norm", dtype=self.dtype_policy)
        self.upscale = Upscale2D(2, name="upscale", dtype=self.dtype_policy)
        self.fade = WeightedSum(name="fade", dtype=self.dtype_policy)
        nf1 = self.nf(1)
        self.dense = EqualizedDense(nf1 * 16, gain=math.sqrt(2.0) / 4, use_bias=False, name="4x4_dense", **eq)
        self.dense_bias = self.add_weight(name="4x4_dense_bias", shape=(nf1,), initializer="zeros")
        # Layers are attributes (not lists) so that tf.train.Checkpoint tracks them:
        # conv{k}_{S}x{S} and to_rgb_{S}x{S} work at S = 2**r pixels.
        for r in range(2, self.resolution_log2 + 1):
            size, nf = 2 ** r, self.nf(r - 1)
            for k in range(1 if r == 2 else 2):
                conv = EqualizedUpscaleConv2D if (k == 0 and r > 2 and self.fused_scale) else EqualizedConv2D
                setattr(self, f"conv{k}_{size}x{size}", conv(nf, 3, name=f"{size}x{size}_conv{k}", **eq))
            setattr(self, f"to_rgb_{size}x{size}",
                    EqualizedConv2D(self.num_channels, 1, gain=1.0, name=f"to_rgb_{size}x{size}", **eq))
        self._build_all()

    @property
    def to_rgb(self):
        """``to_rgb[r]``: the 1x1 output conv at 2**r pixels (entries 0 and 1 are None)."""
        return self._per_stage(lambda size: getattr(self, f"to_rgb_{size}x{size}"))

    def _build_all(self):
        in_dim = self.latent_size + self.label_size
        self.dense.build((None, in_dim))
        convs, to_rgb = self.convs, self.to_rgb
        for r in range(2, self.resolution_log2 + 1):
            size, c_in = 2 ** r, self.nf(max(r - 2, 1))
            for conv in convs[r]:
                in_size = size // 2 if isinstance(conv, EqualizedUpscaleConv2D) else size
                conv.build((None, in_size, in_size, c_in))
                c_in = conv.filters
            to_rgb[r].build((None, size, size, c_in))
        self.built = True

    def _stage_layers(self, res):
        convs, to_rgb = self.convs, self.to_rgb
        layers = [self.dense] + [c for r in range(2, res + 1) for c in convs[r]] + [to_rgb[res]]
        if res > 2:
            layers.append(to_rgb[res - 1])
        return layers

    def active_variables(self, res=None):
        return [self.dense_bias] + super().active_variables(res)

    def _to_rgb(self, r):
        return getattr(self, f"to_rgb_{2 ** r}x{2 ** r}")

    def _norm(self, x):
        return self.pixel_norm(x) if self.use_pixelnorm else x

    def _block(self, x, r):
        if r == 2:
            x = self.dense(x)
            x = tf.reshape(x, [-1, 4, 4, self.nf(1)])
            x = self._norm(self.act(tf.nn.bias_add(x, tf.cast(self.dense_bias, x.dtype))))
        elif not self.fused_scale:
            x = self.upscale(x)      # fused: the first conv upscales
        for k in range(1 if r == 2 else 2):
            x = self._norm(self.act(getattr(self, f"conv{k}_{2 ** r}x{2 ** r}")(x)))
        return x

    def call(self, latents, labels=None, res=None, alpha=1.0):
        res = self.check_res(res)
        x = tf.cast(latents, self.compute_dtype)
        if self.label_size:
            if labels is None:
                raise ValueError(f"this generator is conditional (label_size={self.label_size}): pass labels")
            x = tf.concat([x, tf.cast(labels, x.dtype)], axis=1)
        elif labels is not None and labels.shape[-1]:
            raise ValueError("this generator has label_size=0 but labels were given")
        if x.shape[-1] != self.latent_size + self.label_size:
            raise ValueError(f"expected latents of size {self.latent_size} (+ {self.label_size} labels), "
                             f"got shape {tuple(latents.shape)}")
        if self.normalize_latents:
            x = self.pixel_norm(x)
        for r in range(2, res):
            x = self._block(x, r)
        new = self._to_rgb(res)(self._block(x, res))
        if res > 2 and not _is_one(alpha):
            old = self.upscale(self._to_rgb(res - 1)(x))
            new = self.fade(old, new, alpha=alpha)
        return tf.cast(new, self.variable_dtype)   # images leave in float32 under mixed precision

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size,
                "normalize_latents": self.normalize_latents, "use_pixelnorm": self.use_pixelnorm,
                "pixelnorm_epsilon": self.pixelnorm_epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Discriminator(_GrowingNetwork):
    """ProGAN discriminator: NHWC images in [-1, 1] -> [N, 1 + label_size].

    Column 0 is the score, the rest are label logits (AC-GAN conditioning).
    ``D(images, res=None, alpha=1.0)``; images must be ``2**res`` pixels square.
    """

    def __init__(self, resolution=32, num_channels=1, label_size=0, fmap_base=8192, fmap_decay=1.0,
                 fmap_max=512, mbstd_group_size=4, use_wscale=True, use_leakyrelu=True, fused_scale=True,
                 **kwargs):
        super().__init__(resolution, num_channels, label_size, fmap_base, fmap_decay, fmap_max,
                         use_wscale, use_leakyrelu, fused_scale, **kwargs)
        self.mbstd_group_size = int(mbstd_group_size)
        eq = dict(use_wscale=self.use_wscale, dtype=self.dtype_policy)
        self.downscale = Downscale2D(2, name="downscale", dtype=self.dtype_policy)
        self.fade = WeightedSum(name="fade", dtype=self.dtype_policy)
        self.mbstd = MinibatchStdDev(self.mbstd_group_size, name="minibatch_stddev", dtype=self.dtype_policy) if self.mbstd_group_size > 1 else None
        # Layers are attributes (not lists) so that tf.train.Checkpoint tracks them.
        for r in range(2, self.resolution_log2 + 1):
            size = 2 ** r
            setattr(self, f"from_rgb_{size}x{size}",
                    EqualizedConv2D(self.nf(r - 1), 1, name=f"from_rgb_{size}x{size}", **eq))
            if r == 2:
                self.conv0_4x4 = EqualizedConv2D(self.nf(1), 3, name="4x4_conv0", **eq)
            else:
                setattr(self, f"conv0_{size}x{size}", EqualizedConv2D(self.nf(r - 1), 3, name=f"{size}x{size}_conv0", **eq))
                last = EqualizedConv2DDownscale if self.fused_scale else EqualizedConv2D
                setattr(self, f"conv1_{size}x{size}", last(self.nf(r - 2), 3, name=f"{size}x{size}_conv1", **eq))
        self.dense0 = EqualizedDense(self.nf(0), name="4x4_dense0", **eq)
        self.dense1 = EqualizedDense(1 + self.label_size, gain=1.0, name="4x4_dense1", **eq)
        self._build_all()

    @property
    def from_rgb(self):
        """``from_rgb[r]``: the 1x1 input conv at 2**r pixels (entries 0 and 1 are None)."""
        return self._per_stage(lambda size: getattr(self, f"from_rgb_{size}x{size}"))

    def _build_all(self):
        convs, from_rgb = self.convs, self.from_rgb
        for r in range(2, self.resolution_log2 + 1):
            size = 2 ** r
            from_rgb[r].build((None, size, size, self.num_channels))
            c_in = self.nf(r - 1) + (1 if r == 2 and self.mbstd is not None else 0)
            for conv in convs[r]:
                conv.build((None, size, size, c_in))
                c_in = conv.filters
        self.dense0.build((None, 4, 4, self.nf(1)))
        self.dense1.build((None, self.nf(0)))
        self.built = True

    def _stage_layers(self, res):
        convs, from_rgb = self.convs, self.from_rgb
        layers = [from_rgb[res]] + [c for r in range(2, res + 1) for c in convs[r]] + [self.dense0, self.dense1]
        if res > 2:
            layers.append(from_rgb[res - 1])
        return layers

    def _from_rgb(self, r):
        return getattr(self, f"from_rgb_{2 ** r}x{2 ** r}")

    def _block(self, x, r):
        if r == 2:
            if self.mbstd is not None:
                x = self.mbstd(x)
            x = self.act(self.conv0_4x4(x))
            x = self.act(self.dense0(x))
            return self.dense1(x)
        for k in range(2):
            x = self.act(getattr(self, f"conv{k}_{2 ** r}x{2 ** r}")(x))
        return x if self.fused_scale else self.downscale(x)   # fused: the last conv downscales

    def call(self, images, res=None, alpha=1.0):
        res = self.check_res(res)
        size = 2 ** res
        if tuple(images.shape[1:]) != (size, size, self.num_channels):
            raise ValueError(f"stage res={res} expects images of shape [N, {size}, {size}, "
                             f"{self.num_channels}], got {tuple(images.shape)}")
        images = tf.cast(images, self.compute_dtype)
        x = self._block(self.act(self._from_rgb(res)(images)), res)
        if res > 2 and not _is_one(alpha):
            old = self.act(self._from_rgb(res - 1)(self.downscale(images)))
            x = self.fade(old, x, alpha=alpha)
        for r in range(res - 1, 1, -1):
            x = self._block(x, r)
        return tf.cast(x, self.variable_dtype)    # scores and logits leave in float32

    def get_config(self):
        return {**super().get_config(), "mbstd_group_size": self.mbstd_group_size}


def _summary(argv=None):
    """``python -m progan_tf.networks --resolution=N ...``: parameters per stage of G and D."""
    import argparse

    parser = argparse.ArgumentParser(description=_summary.__doc__)
    for name, default in (("resolution", 32), ("num_channels", 1), ("label_size", 0), ("fmap_base", 8192),
                          ("fmap_max", 512)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = vars(parser.parse_args(argv))
    g, d = Generator(**args), Discriminator(**args)
    print(f"{args}\nlatent size {g.latent_size}; G {g.count_params():,} and D {d.count_params():,} parameters")
    print(f"{'stage':>9} {'G active':>12} {'D active':>12}")
    for res in range(2, g.resolution_log2 + 1):
        n_g = sum(int(tf.size(v)) for v in g.active_variables(res))
        n_d = sum(int(tf.size(v)) for v in d.active_variables(res))
        print(f"{2 ** res:>4}x{2 ** res:<4} {n_g:>12,} {n_d:>12,}")


if __name__ == "__main__":
    _summary()

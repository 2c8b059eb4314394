"""``progan-bench``: the training, generation, input and SWD speed figures, as JSON lines on stdout.

    progan-bench --config=B32                                   # or B128; --seconds=20 --repeats=3
    progan-bench --config=B32 --figures=train_stable_img_s      # one figure
    progan-bench --precision=float32,mixed_bfloat16 --jit_compile=off,on   # one run per combination

Each figure is printed as one JSON object with ``name``, ``median``, ``min``,
``max`` and ``unit`` (plus the config and context), so other tools can read it.
Training figures run the trainer's own compiled steps on a synthetic dataset
written in the normal format, so they measure what ``progan-train`` does.
The configs and how the figures are measured are described in docs/speed.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from progan_tf import toolflags

# TensorFlow and the trainer are imported inside the functions that use them, so that
# `progan-bench --help` answers at once instead of after seconds of imports.

FLAGS = flags.FlagValues()   # own flags, as the other tools: importing this next to other CLIs cannot clash
_d = dict(flag_values=FLAGS)
flags.DEFINE_enum("config", "B32", ["B32", "B128"], "Benchmark config: B32 is 32x32 grayscale, minibatch 32; "
                  "B128 is 128x128 RGB, minibatch 16 (docs/speed.md).", **_d)
flags.DEFINE_float("seconds", 20.0, "Seconds timed per repeat of each figure (after a warm-up).", **_d)
flags.DEFINE_integer("repeats", 3, "Timed repeats per figure (median, min and max are reported).", **_d)
flags.DEFINE_list("figures", ["train_stable_img_s", "train_fade_img_s", "gen_img_s", "train_gflop_s",
                              "data_img_s", "swd_img_s"], "Figures to measure.", **_d)
flags.DEFINE_list("precision", ["float32"], "train.precision settings to measure, e.g. float32,mixed_bfloat16.",
                  **_d)
flags.DEFINE_list("jit_compile", ["off"], "train.jit_compile settings to measure, e.g. off,on.", **_d)
flags.DEFINE_list("fused_scale", ["on", "off"], "G/D.fused_scale settings to measure: on (the original's fused "
                  "up/downscale convolutions, the default) and/or off (separate layers).", **_d)

# name: (resolution, channels, fmap_base, fmap_max, latent, minibatch)
CONFIGS = {"B32": (32, 1, 2048, 256, 256, 32), "B128": (128, 3, 4096, 256, 256, 16)}


# --- FLOP counting from layer shapes ------------------------------------------------------

def conv_channels(layer) -> tuple:
    """``(in, out)`` channels of a conv layer; the fused upscale conv stores ``[k, k, out, in]``."""
    from progan_tf.layers import EqualizedUpscaleConv2D   # TensorFlow: lazy, as at the top

    c_a, c_b = int(layer.kernel.shape[2]), int(layer.kernel.shape[3])
    return (c_b, c_a) if isinstance(layer, EqualizedUpscaleConv2D) else (c_a, c_b)


def conv_flops(layer, size: int) -> int:
    """Multiply-adds x 2 of one conv layer of the block working at ``size`` x ``size`` pixels,
    as executed: a plain k x k conv does k*k per output pixel and channel pair; the fused
    up/downscale convs are one (k+1) x (k+1) stride-2 conv between ``size`` and ``size / 2``
    pixels, (k+1)**2 / 4 per ``size``-resolution pixel (4 for k = 3, instead of 9)."""
    from progan_tf.layers import EqualizedConv2DDownscale, EqualizedUpscaleConv2D

    k = int(layer.kernel.shape[0])
    c_in, c_out = conv_channels(layer)
    if isinstance(layer, (EqualizedUpscaleConv2D, EqualizedConv2DDownscale)):
        return 2 * (k + 1) ** 2 * c_in * c_out * size * size // 4
    return 2 * k * k * c_in * c_out * size * size


def generator_flops(G, res: int) -> int:
    """Forward FLOPs per image of G at stage ``res`` with alpha 1 (dense + convs + toRGB)."""
    total = 2 * G.dense.kernel.shape[0] * G.dense.kernel.shape[1]
    for r in range(2, res + 1):
        total += sum(conv_flops(conv, 2 ** r) for conv in G.convs[r])
    return total + conv_flops(G.to_rgb[res], 2 ** res)


def discriminator_flops(D, res: int) -> int:
    """Forward FLOPs per image of D at stage ``res`` with alpha 1."""
    total = conv_flops(D.from_rgb[res], 2 ** res)
    for r in range(2, res + 1):
        total += sum(conv_flops(conv, 2 ** r) for conv in D.convs[r])
    total += 2 * D.dense0.kernel.shape[0] * D.dense0.kernel.shape[1]
    return total + 2 * D.dense1.kernel.shape[0] * D.dense1.kernel.shape[1]


def training_flops_per_image(G, D, res: int) -> float:
    """Model FLOPs of one real image's D step + G step (WGAN-GP), as docs/speed.md counts them.

    D step: G forward, D forward on reals, fakes and interpolates, the penalty's
    input gradient (one more D pass), and a backward of twice the forward for
    reals, fakes and the penalty's double backward (8 D passes in all).
    G step: G and D forward, D backward to its input only, G backward (2 G passes).
    """
    fg, fd = generator_flops(G, res), discriminator_flops(D, res)
    d_step = fg + 3 * fd + fd + 8 * fd
    g_step = fg + fd + fd + 2 * fg
    return float(d_step + g_step)


# --- timing -------------------------------------------------------------------------------

def timed(fn, seconds: float, repeats: int, items_per_call: int):
    """Items per second of ``fn`` (called until ``seconds`` pass), ``repeats`` times."""
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += items_per_call
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rates.append(n / elapsed)
    return rates


def figure(name: str, values, unit: str, **extra) -> dict:
    return {"name": name, "median": statistics.median(values), "min": min(values), "max": max(values),
            "unit": unit, **extra}


def conv_rate_step(G, minibatch: int, dtype="float32"):
    """A ``tf.function`` running a plain 3x3 conv of each of G's conv shapes (8x8 and up; a
    fused layer counts as the 3x3 conv it fuses) forward, input gradient and weight gradient
    once, and the FLOPs it performs: the machine's reference rate for 3x3 convolutions.

    Every result feeds the returned value: an op whose output is unused is dead
    code that grappler prunes, and the rate would count work never done (the
    forward conv, whose output only the gradient's seed depends on, is the trap).
    """
    import tensorflow as tf

    convs, flops = [], 0
    for r in range(3, G.resolution_log2 + 1):
        for conv in G.convs[r]:
            size, (c_in, c_out) = 2 ** r, conv_channels(conv)
            x = tf.cast(tf.random.normal([minibatch, size, size, c_in]), dtype)
            w = tf.Variable(tf.cast(tf.random.normal([3, 3, c_in, c_out]), dtype))
            convs.append((x, w))
            flops += 3 * minibatch * 2 * 9 * c_in * c_out * size * size   # forward, input grad, weight grad

    @tf.function
    def conv_step():
        total = 0.0
        for x, w in convs:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.conv2d(x, w, 1, "SAME")
                s = tf.reduce_sum(y)
            gx, gw = tape.gradient(s, [x, w])
            total += tf.cast(tf.reduce_sum(y[:1, :1, :1]) + tf.reduce_sum(gx[:1, :1, :1])
                             + tf.reduce_sum(gw[:1, :1, :1]), tf.float32)
        return total

    return conv_step, flops


def machine_rates(G, minibatch: int, seconds: float, repeats: int, dtype="float32"):
    """Measured GFLOP/s of a 2048^3 matmul and of G's 3x3 convs (forward + backward) in ``dtype``."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([2048, 2048]), dtype)
    b = tf.cast(tf.random.normal([2048, 2048]), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    matmul()
    matmul_rates = [r * 2 * 2048 ** 3 / 1e9 for r in timed(lambda: matmul().numpy(), seconds / 2, repeats, 1)]

    conv_step, flops = conv_rate_step(G, minibatch, dtype)
    conv_step()
    conv_rates = [r * flops / 1e9 for r in timed(lambda: conv_step().numpy(), seconds / 2, repeats, 1)]
    return matmul_rates, conv_rates


_MACHINE_RATES = {}


def _machine_rates_once(config: str, G, minibatch: int, seconds: float, repeats: int, dtype: str):
    """`machine_rates`, measured once per config and dtype in a process (they do not depend on
    the precision or XLA setting being benchmarked)."""
    key = (config, dtype)
    if key not in _MACHINE_RATES:
        _MACHINE_RATES[key] = machine_rates(G, minibatch, seconds, repeats, dtype)
    return _MACHINE_RATES[key]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> dict:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            words = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        words = set()
    return {"amx_bf16": "amx_bf16" in words, "avx512_bf16": "avx512_bf16" in words, "avx512f": "avx512f" in words}


def write_synthetic_dataset(path: str, resolution: int, channels: int, num_images: int) -> None:
    """A random-image dataset in the normal TFRecord-pyramid format (through the dataset tool)."""
    from progan_tf.datasets import writer

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(num_images, channels, resolution, resolution), dtype=np.uint8)
    writer.write_dataset(path, num_images, lambda i: images[i], lambda i: f"synthetic image {i}",
                               labels=None, opts=writer.WriteOptions(shuffle=False, progress=False))


def run_benchmark(name: str, seconds: float, repeats: int, figures, precision: str = "float32",
                  jit_compile: str = "off", fused_scale: bool = True) -> list:
    import tensorflow as tf

    from progan_tf.datasets import reader as data_lib
    from progan_tf.config import default_config
    from progan_tf.training import Trainer

    resolution, channels, fmap_base, fmap_max, latent, minibatch = CONFIGS[name]
    config = default_config()
    config.desc = f"bench-{name}"
    for net in (config.G, config.D):
        net.fmap_base, net.fmap_max = fmap_base, fmap_max
    config.G.latent_size = latent
    config.G.fused_scale = config.D.fused_scale = bool(fused_scale)
    config.dataset.use_labels = False
    config.dataset.shuffle_mb = 64
    config.train.precision, config.train.jit_compile = precision, jit_compile
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = os.path.join(tmp, "data")
        write_synthetic_dataset(dataset, resolution, channels, 2048)
        trainer = Trainer(config, dataset, os.path.join(tmp, "run"))
        context = {"config": name, "tensorflow": tf.__version__, "threads": os.cpu_count(),
                   "devices": [d.name for d in tf.config.list_logical_devices()], "xla": trainer.jit_compile,
                   "precision": trainer.precision, "fused_scale": bool(fused_scale), "cpu": cpu_model(),
                   **cpu_flags(),
                   "gpus": len(tf.config.list_physical_devices("GPU"))}
        res = trainer.info.resolution_log2
        d_step, g_step = trainer.step_functions(res, minibatch)

        def train_rate(alpha):
            it = data_lib.stage_input(trainer.info, res, minibatch, trainer.strategy, seed=config.seed,
                                      shuffle_mb=config.dataset.shuffle_mb, num_workers=trainer.num_workers)
            a = tf.constant(alpha, tf.float32)
            beta = tf.constant(trainer.ema_beta(minibatch), tf.float32)

            def step():
                reals, labels = next(it)
                d_step(reals, labels, a, trainer.iteration, beta)
                out = g_step(a, trainer.iteration)
                trainer.iteration.assign_add(1)
                out["Loss/G"].numpy()
            for _ in range(2):
                step()
            return timed(step, seconds, repeats, minibatch)

        stable = None
        if "train_stable_img_s" in figures or "train_gflop_s" in figures:
            stable = train_rate(1.0)
            if "train_stable_img_s" in figures:
                results.append(figure("train_stable_img_s", stable, "img/s", **context))
        if "train_fade_img_s" in figures:
            results.append(figure("train_fade_img_s", train_rate(0.5), "img/s", **context))
        if "gen_img_s" in figures:
            gen = tf.function(lambda z: trainer.Gs(z, res=res))
            z = tf.random.normal([256, trainer.latent_size])
            gen(z)
            results.append(figure("gen_img_s", timed(lambda: gen(z).numpy(), seconds, repeats, 256), "img/s",
                                  batch=256, **context))
        if "train_gflop_s" in figures:
            per_image = training_flops_per_image(trainer.G, trainer.D, res)
            gflops = [r * per_image / 1e9 for r in stable]
            compute_dtype = "bfloat16" if "bfloat16" in trainer.precision else (
                "float16" if "float16" in trainer.precision else "float32")
            results.append(figure("train_gflop_s", gflops, "GFLOP/s", gflop_per_image=per_image / 1e9, **context))
            rates = {}
            for dtype in dict.fromkeys(("float32", "bfloat16", compute_dtype)):
                rates[dtype] = _machine_rates_once(name, trainer.G, minibatch, seconds, repeats, dtype)
                matmul, conv = rates[dtype]
                results.append(figure("conv3x3_fwd_bwd_gflop_s", conv, "GFLOP/s", kernel_dtype=dtype, **context))
                results.append(figure("matmul_gflop_s", matmul, "GFLOP/s", kernel_dtype=dtype, **context))
            matmul, conv = rates[compute_dtype]
            results.append(figure("mfu", [g / statistics.median(conv) for g in gflops], "fraction of conv rate",
                                  kernel_dtype=compute_dtype,
                                  of_matmul=statistics.median(gflops) / statistics.median(matmul), **context))
        if "data_img_s" in figures:
            ds = iter(data_lib.make_dataset(dataset, res, minibatch, shuffle_mb=64, seed=0))
            next(ds)
            results.append(figure("data_img_s", timed(lambda: next(ds)[0].numpy(), seconds, repeats, minibatch),
                                  "img/s", **context))
        trainer.close()
    if "swd_img_s" in figures:
        results.append(figure("swd_img_s", swd_rate(seconds, repeats), "img/s per side", resolution=32,
                              channels=3, **context))
    return results


def swd_rate(seconds: float, repeats: int, num_images: int = 2048):
    """Images per second (per side) through SWD descriptor extraction and distance, 32x32 RGB,
    the paper's settings (128 neighbourhoods per image and level, 4 x 128 directions)."""
    from progan_tf.metrics.swd import swd

    rng = np.random.RandomState(0)
    a = rng.randint(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    b = rng.randint(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    return timed(lambda: swd([a], [b], num_images), seconds, repeats, num_images)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from progan_tf.train import configure_tensorflow

    configure_tensorflow()   # the TensorFlow settings progan-train runs with

    fused_settings = []
    for value in FLAGS.fused_scale:
        if value not in ("on", "off"):
            raise app.UsageError(f"--fused_scale: expected on and/or off, got {value!r}")
        fused_settings.append(value == "on")
    for precision in FLAGS.precision:
        for jit in FLAGS.jit_compile:
            for fused in fused_settings:
                for result in run_benchmark(FLAGS.config, FLAGS.seconds, FLAGS.repeats, FLAGS.figures, precision,
                                            jit, fused):
                    print(json.dumps(result), flush=True)
    sys.stdout.flush()


def run():
    """Console-script entry point (``progan-bench``)."""
    toolflags.run_app("progan-bench", FLAGS, main, toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

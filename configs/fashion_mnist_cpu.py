"""Small, fast CPU config for Fashion-MNIST (32x32 grayscale, 10 classes): the README demo.

Not one of the original's presets: narrow networks (fmap_base 512, at most 128 maps),
short phases and large minibatches at low resolution, so that 2 CPU cores reach 32x32
within about ten minutes. Conditional on the 10 classes (the original's ``-cond``), so
that ``progan-generate --classes`` can show one row per garment.
Ablations: --config=configs/fashion_mnist_cpu.py:no_ema,lsgan (see progan_tf.config.ABLATIONS).
"""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "cpu"
    c.dataset.resolution = 32
    c.dataset.num_channels = 1
    c.dataset.use_labels = True
    c.G.fmap_base = c.D.fmap_base = 512
    c.G.fmap_max = c.D.fmap_max = 128
    c.sched.lod_training_kimg = 15
    c.sched.lod_transition_kimg = 15
    c.sched.minibatch_base = 32
    c.sched.minibatch_dict = {4: 64, 8: 64, 16: 32, 32: 32}
    c.sched.tick_kimg_base = 10
    c.sched.tick_kimg_dict = {4: 10, 8: 10, 16: 10, 32: 10}
    c.train.total_kimg = 400
    # Phases of 15 kimg are ~250-500 steps: the original's fixed 0.999 per step would leave Gs
    # far behind G, so smooth over a half-life of 2 kimg instead.
    c.train.G_smoothing_kimg = 2.0
    c.train.network_snapshot_ticks = 2
    c.train.grid_size = (10, 10)
    return apply_ablations(c, ablations)

"""MNIST / Fashion-MNIST (32x32 grayscale) with the paper's networks: the original's ``-mnist``
dataset line (no mirroring) with ``-preset-v2-1gpu`` (minibatch {4: 128, 8: 128, 16: 128,
32: 64}, 12,000 kimg). Unconditional unless ``--config.dataset.use_labels=True`` (``-cond``).

    progan-train --config=configs/mnist.py --dataset_dir=datasets/mnist
"""
from progan_tf.config import apply_ablations, default_config, preset_v2_1gpu


def get_config(ablations=None):
    c = preset_v2_1gpu(default_config())
    c.desc = "mnist"
    c.dataset.resolution = 32
    c.dataset.num_channels = 1
    return apply_ablations(c, ablations)

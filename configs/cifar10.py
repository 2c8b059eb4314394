"""CIFAR-10 (32x32 RGB): the original's ``-cifar10`` dataset line (no mirroring) with
``-preset-v2-1gpu`` (minibatch {4: 128, 8: 128, 16: 128, 32: 64}, 12,000 kimg). Unconditional,
as the paper's inception score of 8.80; add ``--config.dataset.use_labels=True`` for the
original's ``-cond`` line.

    progan-train --config=configs/cifar10.py --dataset_dir=datasets/cifar10
"""
from progan_tf.config import apply_ablations, default_config, preset_v2_1gpu


def get_config(ablations=None):
    c = preset_v2_1gpu(default_config())
    c.desc = "cifar10"
    c.dataset.resolution = 32
    c.dataset.num_channels = 3
    return apply_ablations(c, ablations)

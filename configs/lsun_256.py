"""An LSUN category (e.g. bedroom) at 256x256 RGB: the original's ``-lsun-<category>`` dataset
lines (mirror augment) with ``-preset-v2-1gpu`` and ``-fp32``. Unconditional.

    progan-train --config=configs/lsun_256.py --dataset_dir=datasets/bedroom
"""
from progan_tf.config import apply_ablations, default_config, preset_v2_1gpu


def get_config(ablations=None):
    c = preset_v2_1gpu(default_config())
    c.desc = "lsun256"
    c.dataset.resolution = 256
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    return apply_ablations(c, ablations)

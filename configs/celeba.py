"""CelebA at 128x128 (``progan-dataset create_celeba``): the original's ``-celeba`` dataset line
(mirror augment) with ``-preset-v2-1gpu`` and ``-fp32``. Unconditional.

    progan-train --config=configs/celeba.py --dataset_dir=datasets/celeba
"""
from progan_tf.config import apply_ablations, default_config, preset_v2_1gpu


def get_config(ablations=None):
    c = preset_v2_1gpu(default_config())
    c.desc = "celeba"
    c.dataset.resolution = 128
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    return apply_ablations(c, ablations)

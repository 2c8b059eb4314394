"""CelebA-HQ 1024x1024 as the original's default config: the ``-celebahq`` dataset line
(mirror augment), ``-preset-v2-1gpu`` and ``-fp32`` (see ``progan_tf.config.preset_v2_1gpu``).
Unconditional.

    progan-train --config=configs/celebahq_v2_1gpu.py --dataset_dir=datasets/celebahq
"""
from progan_tf.config import apply_ablations, default_config, preset_v2_1gpu


def get_config(ablations=None):
    c = preset_v2_1gpu(default_config())
    c.desc = "celebahq-v2-1gpu"
    c.dataset.resolution = 1024
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    return apply_ablations(c, ablations)

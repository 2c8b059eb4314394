"""The paper's CelebA-HQ 1024x1024 run: the original's ``-celebahq`` dataset line (mirror
augment), ``-preset-v1-1gpu`` (minibatch-stddev groups of 16; minibatch 16 up to 128x128,
14 at 256, 6 at 512, 3 at 1024; 800 kimg phases; 19,000 kimg) and ``-fp32`` (at most
{256: 16, 512: 8, 1024: 4} per device). Unconditional.

    progan-train --config=configs/celebahq_v1.py --dataset_dir=datasets/celebahq
"""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "celebahq-v1"
    c.dataset.resolution = 1024
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    c.D.mbstd_group_size = 16
    c.sched.minibatch_base = 16
    c.sched.minibatch_dict = {256: 14, 512: 6, 1024: 3}
    c.sched.lod_training_kimg = 800
    c.sched.lod_transition_kimg = 800
    c.sched.max_minibatch_per_replica = {256: 16, 512: 8, 1024: 4}
    c.train.total_kimg = 19000
    return apply_ablations(c, ablations)

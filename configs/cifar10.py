"""CIFAR-10 (32x32 RGB), unconditional as in the paper's inception score of 8.80."""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "cifar10"
    c.dataset.resolution = 32
    c.dataset.num_channels = 3
    c.dataset.use_labels = False
    c.train.mirror_augment = True
    c.train.total_kimg = 15000
    return apply_ablations(c, ablations)

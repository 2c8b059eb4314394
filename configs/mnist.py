"""MNIST / Fashion-MNIST (32x32 grayscale) with the paper's networks, as the original's '-mnist' preset."""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "mnist"
    c.dataset.resolution = 32
    c.dataset.num_channels = 1
    c.dataset.use_labels = False      # the original trains unconditionally unless '-cond' is chosen
    c.train.total_kimg = 6000
    return apply_ablations(c, ablations)

"""LSUN (e.g. bedroom) at 256x256 RGB, the original's v2 one-GPU schedule up to 256."""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "lsun256"
    c.dataset.resolution = 256
    c.dataset.num_channels = 3
    c.dataset.use_labels = False
    c.sched.minibatch_base = 4
    c.sched.minibatch_dict = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}
    c.train.total_kimg = 12000
    return apply_ablations(c, ablations)

"""The original's CelebA-HQ 1024x1024 preset v2 for one GPU: 12,000 kimg, lr 0.0015 at 1024."""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "celebahq-v2-1gpu"
    c.dataset.resolution = 1024
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    c.sched.minibatch_base = 4
    c.sched.minibatch_dict = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
    c.sched.G_lrate_dict = {1024: 0.0015}
    c.sched.D_lrate_dict = {1024: 0.0015}
    c.train.total_kimg = 12000
    return apply_ablations(c, ablations)

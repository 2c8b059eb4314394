"""The paper's CelebA-HQ 1024x1024 run (preset v1, one GPU): minibatch 16 up to 128x128,
14 at 256, 6 at 512, 3 at 1024; 800 kimg phases; 19,000 kimg in all."""
from progan_tf.config import apply_ablations, default_config


def get_config(ablations=None):
    c = default_config()
    c.desc = "celebahq-v1"
    c.dataset.resolution = 1024
    c.dataset.num_channels = 3
    c.train.mirror_augment = True
    c.sched.minibatch_base = 16
    c.sched.minibatch_dict = {256: 14, 512: 6, 1024: 3}
    c.sched.lod_training_kimg = 800
    c.sched.lod_transition_kimg = 800
    c.train.total_kimg = 19000
    return apply_ablations(c, ablations)

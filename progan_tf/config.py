"""The training configuration: fields grouped as in the original's ``config.py``.

Presets in ``configs/`` start from ``default_config()`` and change what they
need; every field can be overridden on the command line
(``--config.sched.minibatch_base=32``). Unknown fields are rejected by
ml_collections (the config is locked).
"""

from __future__ import annotations

import ml_collections


def _dict(**kwargs) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(kwargs)


def default_config() -> ml_collections.ConfigDict:
    """The original's defaults (one replica), before any preset."""
    c = ml_collections.ConfigDict()
    c.desc = "progan"
    c.seed = 1000                         # the original's random_seed

    c.train = _dict(
        total_kimg=15000.0,
        D_repeats=1,                      # D steps per G step
        minibatch_repeats=4,              # iterations between schedule updates
        reset_opt_for_new_lod=True,
        G_smoothing=0.999,                # EMA beta of Gs per D step (0 disables the average: Gs = G)
        G_smoothing_kimg=0.0,             # > 0: EMA half-life in kimg instead (beta from the minibatch)
        mirror_augment=False,
        image_snapshot_ticks=1,
        network_snapshot_ticks=10,
        keep_checkpoints=5,               # newest checkpoints kept on disk
        grid_size=(8, 8),                 # columns, rows of reals.png / fakes*.png
        max_time_minutes=0.0,             # stop (with a checkpoint) after this long; 0 = no limit
        check_finite_every=4,             # iterations between reads of the step statistics (skipped updates, losses)
        metrics="",                       # metrics during training: comma list of swd, fid, is, msssim; "" = none
        metrics_ticks=10,                 # evaluate them every this many ticks (and at the end)
        metrics_num_images=10000,         # images per side; at most the dataset's image count
        metrics_inception_weights="imagenet",  # FID/IS InceptionV3 weights: imagenet (Keras download) or a local .h5
        metrics_feature_extractor="",     # FID features from this SavedModel dir or .keras/.h5 model instead
        metrics_extractor_output="",      # its output key (SavedModel) or layer name (Keras); "" = the only one
        precision="float32",              # float32 | mixed_bfloat16 | mixed_float16 | auto
        jit_compile="off",                # XLA for the step functions: off | on | auto
    )
    c.sched = _dict(
        lod_initial_resolution=4,
        lod_training_kimg=600.0,
        lod_transition_kimg=600.0,
        minibatch_base=16,
        minibatch_dict={},
        max_minibatch_per_replica={},
        G_lrate_base=0.001,
        G_lrate_dict={},
        D_lrate_base=0.001,
        D_lrate_dict={},
        tick_kimg_base=160.0,
        tick_kimg_dict={4: 160, 8: 140, 16: 120, 32: 100, 64: 80, 128: 60, 256: 40, 512: 20, 1024: 10},
    )
    c.G = _dict(
        fmap_base=8192, fmap_decay=1.0, fmap_max=512, latent_size=0,   # 0: latent size = nf(0)
        normalize_latents=True, use_wscale=True, use_pixelnorm=True, pixelnorm_epsilon=1e-8,
        use_leakyrelu=True,
        fused_scale=True,                 # the original's fused upscale + conv (docs/method.md#fused-scale)
    )
    c.D = _dict(fmap_base=8192, fmap_decay=1.0, fmap_max=512, mbstd_group_size=4, use_wscale=True,
                fused_scale=True)         # the original's fused conv + downscale
    c.G_opt = _dict(beta_1=0.0, beta_2=0.99, epsilon=1e-8)
    c.D_opt = _dict(beta_1=0.0, beta_2=0.99, epsilon=1e-8)
    c.loss = _dict(
        name="wgan_gp",                   # wgan_gp | logistic_r1 | lsgan (progan_tf.losses.LOSSES)
        cond_weight=1.0,                  # AC-GAN label terms, every loss
        wgan_gp=_dict(wgan_lambda=10.0, wgan_epsilon=0.001, wgan_target=1.0),
        logistic_r1=_dict(r1_gamma=10.0),
        lsgan=_dict(),
    )
    c.dataset = _dict(
        resolution=0,                     # 0: take it from the dataset; else must match it
        num_channels=0,                   # 0: take it from the dataset; else must match it
        use_labels=False,                 # condition on the dataset's labels (the original's '-cond' runs)
        shuffle_mb=4096,
        max_resume_skip=1_000_000,        # images a resumed stage may skip to reproduce the data order
    )
    c.lock()
    return c


# Fields added after run directories were first written, with the value that reproduces
# what such a run did: its networks were built without the fused layers.
_ADDED_FIELDS = {("G", "fused_scale"): False, ("D", "fused_scale"): False}


# Loss options that were once flat fields of config.loss, by the loss that owns them now.
_FLAT_LOSS_OPTIONS = {"wgan_gp": ("wgan_lambda", "wgan_epsilon", "wgan_target"), "logistic_r1": ("r1_gamma",),
                      "lsgan": ()}


def complete_saved_config(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's saved ``config.json``, brought (in place) to today's layout: fields added since it
    was written get the value that reproduces that run, and the once-flat loss options move
    into their loss's group (``loss.wgan_lambda`` -> ``loss.wgan_gp.wgan_lambda``)."""
    missing = [(group, field) for group, field in _ADDED_FIELDS if field not in c[group]]
    flat = [name for name in _FLAT_LOSS_OPTIONS if name not in c.loss]
    if not missing and not flat:
        return c
    with c.unlocked():
        for group, field in missing:
            c[group][field] = _ADDED_FIELDS[(group, field)]
        defaults = default_config().loss
        for name in flat:
            group = ml_collections.ConfigDict(defaults[name].to_dict())
            for option in _FLAT_LOSS_OPTIONS[name]:
                if option in c.loss:
                    group[option] = c.loss[option]
                    del c.loss[option]
            c.loss[name] = group
    return c


def preset_v2_1gpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The original's in-effect preset lines ``-preset-v2-1gpu`` and ``-fp32``:
    minibatch {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4} (base 4),
    learning rate 0.0015 at 1024, 12,000 kimg; at most {256: 16, 512: 8, 1024: 4} per device."""
    c.sched.minibatch_base = 4
    c.sched.minibatch_dict = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
    c.sched.G_lrate_dict = {1024: 0.0015}
    c.sched.D_lrate_dict = {1024: 0.0015}
    c.sched.max_minibatch_per_replica = {256: 16, 512: 8, 1024: 4}
    c.train.total_kimg = 12000
    return c


ABLATIONS = {
    "no_growing": "train at full resolution from the start, as the original's '-nogrowing' line "
                  "(lod_initial_resolution = the dataset's, no phases, 10,000 kimg)",
    "no_pixelnorm": "G without pixelwise feature normalisation (G.use_pixelnorm = False)",
    "no_equalized_lr": "plain He-initialised weights, no run-time scaling (G/D.use_wscale = False)",
    "no_mbstd": "D without the minibatch standard deviation layer (D.mbstd_group_size = 0)",
    "no_ema": "show/export G itself instead of its moving average (train.G_smoothing = 0)",
    "no_opt_reset": "keep Adam's moments when a block is introduced (train.reset_opt_for_new_lod = False)",
    "logistic_r1": "non-saturating logistic loss with R1 penalty instead of WGAN-GP",
    "lsgan": "least-squares GAN loss instead of WGAN-GP",
}


class UnknownAblationError(ValueError):
    """An ablation name that is not one of ``ABLATIONS`` (progan-train reports it in one line)."""


def apply_ablations(config: ml_collections.ConfigDict, spec: str | None) -> ml_collections.ConfigDict:
    """Applies comma-separated ablations (``configs/x.py:no_ema,lsgan``); see ``ABLATIONS``."""
    for name in filter(None, (spec or "").split(",")):
        if name == "no_growing":
            config.sched.lod_initial_resolution = config.dataset.resolution or 1024
            config.sched.lod_training_kimg = config.sched.lod_transition_kimg = 0.0
            config.train.total_kimg = 10000.0
        elif name == "no_pixelnorm":
            config.G.use_pixelnorm = False
        elif name == "no_equalized_lr":
            config.G.use_wscale = config.D.use_wscale = False
        elif name == "no_mbstd":
            config.D.mbstd_group_size = 0
        elif name == "no_ema":
            config.train.G_smoothing, config.train.G_smoothing_kimg = 0.0, 0.0
        elif name == "no_opt_reset":
            config.train.reset_opt_for_new_lod = False
        elif name in ("logistic_r1", "lsgan"):
            config.loss.name = name
        else:
            raise UnknownAblationError(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)}")
        config.desc += f"-{name.replace('_', '')}"
    return config

"""A run directory written before fused scale existed (tests/fixtures/legacy-run-v0) keeps working.

It was written by progan-train at commit f2036df (a conditional 32x32 run on fmnist100 with
tiny networks, stopped at 448 images, lod 1.0); ``outputs.npz`` holds what that code's G, Gs
and D computed from its checkpoint for fixed inputs.
"""
import json
import os
import shutil

import numpy as np
from ml_collections import config_dict

from conftest import FIXTURES
from progan_tf.layers import EqualizedConv2D
from progan_tf.snapshot import load_snapshot
from progan_tf.training import Trainer

LEGACY = os.path.join(FIXTURES, "legacy-run-v0")
DATASET = os.path.join(FIXTURES, "original-format", "fmnist100")


def test_a_legacy_checkpoint_loads_as_the_separate_layers_with_the_same_outputs():
    snap = load_snapshot(LEGACY, with_discriminator=True)
    assert not snap.G.fused_scale and not snap.Gs.fused_scale and not snap.D.fused_scale
    assert type(snap.G.conv0_8x8) is EqualizedConv2D and type(snap.D.conv1_8x8) is EqualizedConv2D
    ref = np.load(os.path.join(LEGACY, "outputs.npz"))
    for res in (4, 5):
        np.testing.assert_allclose(snap.Gs(ref["latents"], ref["labels"], res=res).numpy(), ref[f"Gs_res{res}"],
                                   atol=1e-5)
        np.testing.assert_allclose(snap.G(ref["latents"], ref["labels"], res=res).numpy(), ref[f"G_res{res}"],
                                   atol=1e-5)
    np.testing.assert_allclose(snap.D(ref["D_images"], res=5).numpy(), ref["D_res5"], atol=1e-5)


def test_a_legacy_run_resumes(tmp_path):
    run_dir = str(tmp_path / "00000-cpu-fmnist100")
    shutil.copytree(LEGACY, run_dir)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = config_dict.ConfigDict(json.load(f))
    config.lock()
    config.train.total_kimg = 0.5
    trainer = Trainer(config, DATASET, run_dir, resume_from=run_dir)
    try:
        assert int(trainer.nimg.numpy()) == 448
        assert not trainer.G.fused_scale and not trainer.D.fused_scale
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["stopped_by"] == "done" and summary["kimg"] >= 0.5
    assert os.path.basename(summary["checkpoint"]).startswith("ckpt-5")
    assert "Resumed from" in open(os.path.join(run_dir, "log.txt")).read()

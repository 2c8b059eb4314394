"""progan-import: an original network pickle becomes a run directory every tool accepts."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ml_collections import config_dict

from conftest import FIXTURES, REPO
from progan_tf import rundir
from progan_tf.official_import import ImportFailed, import_official, nimg_at_lod
from progan_tf.schedule import training_schedule
from progan_tf.snapshot import load_snapshot
from progan_tf.training import Trainer

OFFICIAL = os.path.join(FIXTURES, "official-networks")
RGB100 = os.path.join(FIXTURES, "original-format", "rgb100")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("imports") / "rgb32")
    prefix = import_official(os.path.join(OFFICIAL, "rgb32-fused-np1.pkl"), run_dir)
    return run_dir, prefix


def test_the_imported_networks_give_the_original_outputs(imported):
    run_dir, prefix = imported
    assert os.path.basename(prefix) == "ckpt-3600000"              # lod 0 on the default schedule at 32x32
    snap = load_snapshot(run_dir, with_discriminator=True)
    ref = np.load(os.path.join(OFFICIAL, "rgb32-fused-outputs.npz"))
    images = snap.Gs(ref["latents"]).numpy().transpose(0, 3, 1, 2)
    assert np.abs(images - ref["Gs_images"]).max() <= 1e-4
    scores = snap.D(ref["D_images"].transpose(0, 2, 3, 1)).numpy()
    assert np.abs(scores - ref["D_scores"][0]).max() <= 1e-4
    assert snap.G.fused_scale and snap.D.fused_scale
    info = rundir.checkpoint_info(prefix)
    assert (info.nimg, info.lod, info.resolution) == (3_600_000, 0.0, 32)


def test_the_schedule_position_is_the_first_at_the_file_lod():
    c = config_dict.ConfigDict({"lod_initial_resolution": 4, "lod_training_kimg": 600, "lod_transition_kimg": 600,
                                "minibatch_base": 16, "minibatch_dict": {}, "max_minibatch_per_replica": {},
                                "G_lrate_base": 0.001, "G_lrate_dict": {}, "D_lrate_base": 0.001, "D_lrate_dict": {},
                                "tick_kimg_base": 160, "tick_kimg_dict": {}})
    for lod in (3.0, 2.5, 1.0, 0.0):
        nimg = nimg_at_lod(c, 5, lod)
        assert training_schedule(nimg, 5, c).lod == pytest.approx(lod)
        assert nimg == 0 or training_schedule(nimg - 1, 5, c).lod > lod


def test_an_imported_run_fine_tunes_with_fresh_adam(imported, tmp_path):
    source, _ = imported
    run_dir = str(tmp_path / "finetune")
    import shutil
    shutil.copytree(source, run_dir)
    with open(os.path.join(run_dir, rundir.CONFIG_FILE)) as f:
        config = config_dict.ConfigDict(json.load(f))
    config.lock()
    config.train.total_kimg = 3600.1
    config.dataset.shuffle_mb = 1
    trainer = Trainer(config, RGB100, run_dir, resume_from=run_dir)
    try:
        assert int(trainer.nimg.numpy()) == 3_600_000 and int(trainer.D_adam.iterations.numpy()) == 0
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["stopped_by"] == "done" and summary["resolution"] == 32 and summary["lod"] == 0.0
    assert int(trainer.D_adam.iterations.numpy()) > 0


def test_generate_and_export_accept_the_imported_run(imported, tmp_path):
    run_dir, _ = imported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-m", "progan_tf.generate", run_dir, str(tmp_path / "png"), "--seeds=0-1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len([n for n in os.listdir(tmp_path / "png") if n.endswith(".png")]) == 2
    out = subprocess.run([sys.executable, "-m", "progan_tf.export", run_dir, str(tmp_path / "saved")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert tf.saved_model.contains_saved_model(str(tmp_path / "saved"))


def _original_uint8(images_nchw):
    """The original's import_example.py conversion: (x + 1) * 127.5, rounded and clipped, as NHWC."""
    return np.clip(np.rint((images_nchw.transpose(0, 2, 3, 1) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def test_generate_from_latents_gives_the_original_images(imported, tmp_path):
    import PIL.Image

    run_dir, _ = imported
    ref = np.load(os.path.join(OFFICIAL, "rgb32-fused-outputs.npz"))
    np.save(tmp_path / "latents.npy", ref["latents"])
    out = subprocess.run([sys.executable, "-m", "progan_tf.generate", run_dir, str(tmp_path / "png"),
                          f"--latents={tmp_path / 'latents.npy'}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    got = np.stack([np.asarray(PIL.Image.open(tmp_path / "png" / f"latent{i:04d}.png")) for i in range(6)])
    assert np.abs(got.astype(int) - _original_uint8(ref["Gs_images"]).astype(int)).max() <= 1
    np.save(tmp_path / "bad.npy", ref["latents"][:, :5])
    out = subprocess.run([sys.executable, "-m", "progan_tf.generate", run_dir, str(tmp_path / "png2"),
                          f"--latents={tmp_path / 'bad.npy'}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 1 and "shape (6, 5)" in out.stderr and "[N, 32]" in out.stderr


BARE_TF_CHILD = """
import sys
sys.path.append(sys.argv[1])
try:
    import progan_tf
    sys.exit("progan_tf is importable in the child")
except ImportError:
    pass
import numpy as np
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[2]).signatures["serving_default"]
np.save(sys.argv[4], sig(latents=tf.constant(np.load(sys.argv[3])))["images"].numpy())
"""


def test_import_export_and_serving_without_the_package_give_the_original_images(imported, tmp_path):
    import sysconfig

    run_dir, _ = imported
    ref = np.load(os.path.join(OFFICIAL, "rgb32-fused-outputs.npz"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-m", "progan_tf.export", run_dir, str(tmp_path / "saved")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    np.save(tmp_path / "latents.npy", ref["latents"])
    (tmp_path / "child.py").write_text(BARE_TF_CHILD)
    bare = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    child = subprocess.run([sys.executable, "-I", "-S", str(tmp_path / "child.py"), sysconfig.get_paths()["purelib"],
                            str(tmp_path / "saved"), str(tmp_path / "latents.npy"), str(tmp_path / "images.npy")],
                           cwd=tmp_path, env=bare, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    served = np.load(tmp_path / "images.npy")
    assert served.dtype == np.uint8
    assert np.abs(served.astype(int) - _original_uint8(ref["Gs_images"]).astype(int)).max() <= 1


class _Evil:
    """Unpickled unrestricted, this would create the file ``pwned`` in the current directory."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_gs_is_not_g(imported):
    snap = load_snapshot(imported[0])
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(snap.G.get_weights(), snap.Gs.get_weights()))


def test_bad_files_and_existing_directories_are_refused_and_leave_nothing(imported, tmp_path):
    from progan_tf.official import OfficialFormatError

    run_dir, _ = imported
    with pytest.raises(ImportFailed, match="already exists"):
        import_official(os.path.join(OFFICIAL, "rgb32-fused.pkl"), run_dir)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps((_Evil(),)))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(OfficialFormatError, match="refusing to load (posix|os).system"):
            import_official(str(evil), str(tmp_path / "evil-run"))
    finally:
        os.chdir(cwd)
    assert sorted(os.listdir(tmp_path)) == ["evil.pkl"]             # no "pwned", no run directory
    good = open(os.path.join(OFFICIAL, "rgb32-fused.pkl"), "rb").read()
    cases = {"truncated.pkl": (good[:len(good) // 2], "not a readable network pickle"),
             "text.pkl": (b"hello", "not a readable network pickle"),
             "list.pkl": (pickle.dumps([1, 2, 3]), "expected a tuple of tfutil.Network"),
             "theano.pkl": (b"\x80\x02cnetwork\nNetwork\nq\x00)\x81q\x01.", "Theano-era network pickle")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(OfficialFormatError, match=message):
            import_official(str(tmp_path / name), str(tmp_path / f"{name}-run"))
        assert not os.path.exists(tmp_path / f"{name}-run")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]   # no half-written directory
    out = subprocess.run([sys.executable, "-m", "progan_tf.official_import", str(evil), str(tmp_path / "x")],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 1 and "progan-import: error:" in out.stderr and "Traceback" not in out.stderr


def test_the_file_lod_becomes_the_schedule_position(tmp_path, monkeypatch):
    """A snapshot written mid-training (G's lod 1.5: fading in 16x16 of a 32x32 network)."""
    from progan_tf import official

    real_read = official.read_network_pickle

    def read_at_lod(path):
        records = real_read(path)
        for record in records:
            record.variables["lod"] = np.float32(1.5)
        return records

    monkeypatch.setattr(official, "read_network_pickle", read_at_lod)
    prefix = import_official(os.path.join(OFFICIAL, "rgb32-fused.pkl"), str(tmp_path / "mid"))
    info = rundir.checkpoint_info(prefix)
    assert (info.lod, info.resolution) == (1.5, 16)
    with open(tmp_path / "mid" / rundir.CONFIG_FILE) as f:
        sched = config_dict.ConfigDict(json.load(f)).sched
    assert training_schedule(info.nimg, 5, sched).lod == pytest.approx(1.5)
    assert os.path.basename(prefix) == f"ckpt-{info.nimg}"

"""Damaged and mismatched checkpoints (progan_tf.checkpoints) in progan-train --resume, progan-generate,
progan-export and progan-metrics: a damaged latest checkpoint of a run falls back to the newest older one
with a warning naming it, a damaged checkpoint named by the user is a clean error, and only a real
mismatch of names or shapes suggests another config."""
import json
import logging
import os
import shutil

import pytest
import tensorflow as tf

from progan_tf import export, generate, rundir
from progan_tf.metrics import cli as metrics_cli
from progan_tf.snapshot import DamagedSnapshotError, SnapshotError, load_snapshot
from progan_tf.training import Trainer, TrainingError
from test_training import DATASET, cli_flags, progan_train, tiny_config

HINT = "another config or dataset"
# 4x4 only (one traced stage), a tick and a checkpoint every 32 images: ckpt-32, ckpt-64, ckpt-96.
RUN = {"train.total_kimg": 0.096, "sched.tick_kimg_base": 0.032, "train.network_snapshot_ticks": 1,
       "sched.lod_training_kimg": 10.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("ckpt-run") / "00000-tiny")
    trainer = Trainer(tiny_config(**RUN), DATASET, run_dir)
    try:
        trainer.run()
    finally:
        trainer.close()
    assert [os.path.basename(p) for p in rundir.list_checkpoints(run_dir)] == ["ckpt-32", "ckpt-64", "ckpt-96"]
    return run_dir


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the three-checkpoint run."""
    path = str(tmp_path / "00000-tiny")
    shutil.copytree(trained, path)
    return path


def ckpt(run_dir, nimg):
    return os.path.join(run_dir, "checkpoints", f"ckpt-{nimg}")


def truncate(prefix):
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def flip_a_byte_of_gs(prefix):
    """Flips one byte inside a Gs weight (read by every tool), so its checksum fails."""
    reader = tf.train.load_checkpoint(prefix)
    key = max((k for k in reader.get_variable_to_shape_map() if k.startswith("Gs/") and "VARIABLE_VALUE" in k),
              key=lambda k: reader.get_tensor(k).size)
    value = reader.get_tensor(key).tobytes()
    path = prefix + ".data-00000-of-00001"
    data = bytearray(open(path, "rb").read())
    assert data.count(value) == 1
    data[data.find(value) + len(value) // 2] ^= 0xFF
    open(path, "wb").write(data)


def state_paths(run_dir):
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    return [os.path.basename(p) for p in state.all_model_checkpoint_paths], os.path.basename(
        state.model_checkpoint_path)


def test_older_checkpoints_and_latest(run):
    assert rundir.resolve_checkpoint(run).latest
    assert not rundir.resolve_checkpoint(ckpt(run, 96)).latest
    assert not rundir.resolve_checkpoint(run, "64").latest
    assert rundir.older_checkpoints(ckpt(run, 96)) == [ckpt(run, 64), ckpt(run, 32)]
    assert rundir.older_checkpoints(ckpt(run, 32)) == []


def test_resume_falls_back_from_a_truncated_newest_checkpoint(run):
    truncate(ckpt(run, 96))
    # Go on to 0.16 kimg with ticks of 48 images (4 steps of 8 per update: checkpoints at 128 and 160),
    # keeping 2 checkpoints.
    config = tiny_config(**{**RUN, "train.total_kimg": 0.16, "sched.tick_kimg_base": 0.048,
                            "train.keep_checkpoints": 2})
    trainer = Trainer(config, DATASET, run, resume_from=run)
    try:
        assert int(trainer.nimg.numpy()) == 64 and trainer.restored_from == ckpt(run, 64)
        assert int(trainer.tick.numpy()) == 2
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["kimg"] == pytest.approx(0.16) and summary["checkpoint"] == ckpt(run, 160)
    log = open(os.path.join(run, "log.txt")).read()
    assert (f"checkpoint {ckpt(run, 96)} is damaged (truncated file: Read less bytes than requested); "
            f"using ckpt-64") in log
    assert f"Resumed from {ckpt(run, 64)} at kimg 0.1" in log
    ticks = rundir.read_ticks(run)
    # tick 3 (to 96, the damaged checkpoint), tick 3 again (to 128: resumed from 64), tick 4 (to 160)
    assert [(t.tick, t.kimg) for t in ticks[-3:]] == [(3, 0.1), (3, 0.1), (4, 0.2)]
    # The checkpoint manager forgot the damaged checkpoint: it is neither latest nor pruned, and the
    # keep_checkpoints=2 pruning removed 32 and 64. Its files are left in place.
    assert state_paths(run) == (["ckpt-128", "ckpt-160"], "ckpt-160")
    assert [os.path.basename(p) for p in rundir.list_checkpoints(run)] == ["ckpt-96", "ckpt-128", "ckpt-160"]
    assert rundir.resolve_checkpoint(run).checkpoint == ckpt(run, 160)
    assert load_snapshot(run).nimg == 160


def test_a_resume_that_is_already_done_names_the_restored_checkpoint(run):
    truncate(ckpt(run, 96))
    trainer = Trainer(tiny_config(**{**RUN, "train.total_kimg": 0.064}), DATASET, run, resume_from=run)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    assert summary["checkpoint"] == ckpt(run, 64)
    assert state_paths(run) == (["ckpt-32", "ckpt-64"], "ckpt-64")


def test_progan_train_strict_resume_stops_at_a_damaged_checkpoint(run):
    truncate(ckpt(run, 96))
    strict = progan_train([f"--resume={run}", f"--dataset_dir={DATASET}", "--strict_resume"] + cli_flags(**RUN),
                          timeout=300)
    assert strict.returncode != 0 and "Traceback" not in strict.stderr, strict.stderr[-3000:]
    assert (f"--resume: cannot restore checkpoint {ckpt(run, 96)}: it is damaged or unreadable (truncated "
            f"file") in strict.stderr, strict.stderr[-3000:]
    assert "--strict_resume: not falling back to an older checkpoint (ckpt-64, ckpt-32)" in strict.stderr
    assert HINT not in strict.stderr
    assert state_paths(run) == (["ckpt-32", "ckpt-64", "ckpt-96"], "ckpt-96")   # nothing changed


@pytest.mark.slow
def test_progan_train_resume_falls_back_to_the_previous_checkpoint(run):
    """The command line end to end (the trainer's fallback itself is tested in-process above)."""
    truncate(ckpt(run, 96))
    resumed = progan_train([f"--resume={run}", f"--dataset_dir={DATASET}"] + cli_flags(**RUN), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint {ckpt(run, 96)} is damaged (truncated file" in resumed.stderr
    assert "using ckpt-64" in resumed.stderr and f"Resumed from {ckpt(run, 64)}" in resumed.stderr
    assert load_snapshot(ckpt(run, 96)).nimg == 96   # trained again from 64 and rewritten


def test_an_explicitly_named_damaged_checkpoint_is_an_error(run, capsys):
    truncate(ckpt(run, 96))
    message = f"cannot restore checkpoint {ckpt(run, 96)}: it is damaged or unreadable (truncated file"
    with pytest.raises(TrainingError, match="^--resume: " + message.replace("(", r"\(")):
        Trainer(tiny_config(**RUN), DATASET, run, resume_from=ckpt(run, 96))
    with pytest.raises(DamagedSnapshotError, match=message.replace("(", r"\(")):
        load_snapshot(ckpt(run, 96))
    out = os.path.join(run, "out")
    for tool, cli, args in (("progan-generate", generate.cli, [out, "--seeds=1"]), ("progan-export", export.cli, [out])):
        assert cli([tool, ckpt(run, 96), *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{tool}: error: {message}") and len(err.splitlines()) == 1, err
    assert not os.path.exists(os.path.join(run, "out"))


def test_generate_and_export_use_the_previous_checkpoint_with_a_warning(run, tmp_path, caplog):
    truncate(ckpt(run, 96))
    with caplog.at_level(logging.WARNING):
        assert generate.cli(["progan-generate", run, str(tmp_path / "fallback"), "--seeds=1"]) == 0
        assert export.cli(["progan-export", run, str(tmp_path / "export")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = f"checkpoint {ckpt(run, 96)} is damaged (truncated file: Read less bytes than requested); using ckpt-64"
    assert warnings.count(expected) == 2, warnings
    assert generate.cli(["progan-generate", ckpt(run, 64), str(tmp_path / "64"), "--seeds=1"]) == 0
    assert (tmp_path / "fallback" / "seed0001.png").read_bytes() == (tmp_path / "64" / "seed0001.png").read_bytes()
    metadata = json.load(open(rundir.export_metadata_path(str(tmp_path / "export"))))
    assert metadata["training"]["nimg"] == 64 and metadata["training"]["checkpoint"].endswith("ckpt-64")


def test_metrics_on_a_run_skips_a_damaged_checkpoint_with_a_warning(run, tmp_path, caplog, capsys):
    truncate(ckpt(run, 64))
    args = ["progan-metrics", "--metrics=swd", "--num_images=16", "--batch_size=16", f"--dataset_dir={DATASET}",
            f"--cache_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out'}"]
    with caplog.at_level(logging.WARNING):
        assert metrics_cli.cli(args + [run]) == 0
    out = capsys.readouterr().out
    assert "ckpt-32" in out and "ckpt-96" in out and "ckpt-64 " not in out
    assert any(f"cannot restore checkpoint {ckpt(run, 64)}: it is damaged" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    assert metrics_cli.cli(args + [ckpt(run, 64)]) == 1   # named alone: an error
    assert f"progan-metrics: error: cannot restore checkpoint {ckpt(run, 64)}: it is damaged" in capsys.readouterr().err


def test_a_flipped_byte_is_damage_not_another_config(run, caplog):
    flip_a_byte_of_gs(ckpt(run, 96))
    with pytest.raises(DamagedSnapshotError, match="Checksum does not match") as e:
        load_snapshot(ckpt(run, 96))
    assert HINT not in str(e.value)
    with pytest.raises(TrainingError, match="Checksum does not match") as e:
        Trainer(tiny_config(**RUN), DATASET, run, resume_from=ckpt(run, 96))
    assert HINT not in str(e.value)
    with caplog.at_level(logging.WARNING):
        assert load_snapshot(run).nimg == 64
    assert any("ckpt-96 is damaged (" in r.getMessage() and "Checksum does not match" in r.getMessage()
               and HINT not in r.getMessage() for r in caplog.records)


def test_a_real_mismatch_still_suggests_another_config(run, caplog):
    networks = rundir.read_json(os.path.join(run, "networks.json"))
    networks["G"]["fmap_max"] = 16   # networks.json of another size
    rundir.write_json(os.path.join(run, "networks.json"), networks)
    with caplog.at_level(logging.WARNING), pytest.raises(SnapshotError, match=HINT) as e:
        load_snapshot(run)
    assert not isinstance(e.value, DamagedSnapshotError)
    assert ckpt(run, 96) in str(e.value) and "incompatible tensor with shape" in str(e.value)
    assert not [r for r in caplog.records if r.name == "absl" and r.levelno >= logging.WARNING]   # no fallback
    with pytest.raises(TrainingError, match=HINT):
        Trainer(tiny_config(**{**RUN, "G.fmap_max": 16}), DATASET, run, resume_from=run)
    with pytest.raises(TrainingError, match=HINT):   # and behind a damaged latest, the older one's mismatch
        truncate(ckpt(run, 96))
        Trainer(tiny_config(**{**RUN, "G.fmap_max": 16}), DATASET, run, resume_from=run)


def test_when_no_checkpoint_restores_every_one_is_named(run):
    for nimg in (32, 64, 96):
        truncate(ckpt(run, nimg))
    with pytest.raises(TrainingError) as e:
        Trainer(tiny_config(**RUN), DATASET, run, resume_from=run)
    message = str(e.value)
    assert message.startswith(f"--resume: cannot restore any checkpoint in {os.path.join(run, 'checkpoints')}: "
                              "each is damaged or unreadable: ")
    for nimg in (96, 64, 32):
        assert f"ckpt-{nimg} (truncated file: Read less bytes than requested)" in message
    assert HINT not in message

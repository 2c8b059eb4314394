"""The run directory: creation, checkpoint resolution, per-checkpoint info, the tick log; old runs still read."""
import os
import shutil

import pytest

from conftest import FIXTURES
from progan_tf import rundir

LEGACY = os.path.join(FIXTURES, "legacy-run-v0")


def _fake_checkpoint(directory, nimg, latest=True):
    """The files tf.train.CheckpointManager writes for ckpt-<nimg> (contents do not matter here)."""
    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, f"ckpt-{nimg}")
    for suffix in (".index", ".data-00000-of-00001"):
        open(prefix + suffix, "wb").close()
    if latest:
        with open(os.path.join(directory, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "ckpt-{nimg}"\nall_model_checkpoint_paths: "ckpt-{nimg}"\n')
    return prefix


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "00003-cpu-fmnist"
    ckpts = path / rundir.CHECKPOINT_DIR
    _fake_checkpoint(str(ckpts), 96, latest=False)
    _fake_checkpoint(str(ckpts), 1024, latest=False)
    _fake_checkpoint(str(ckpts), 448)           # the latest is the one the checkpoint file names
    return str(path)


def test_create_run_numbers_after_the_highest(tmp_path):
    first = rundir.create_run(str(tmp_path / "results"), "cpu-fmnist")
    assert os.path.basename(first) == "00000-cpu-fmnist" and os.path.isdir(first)
    os.makedirs(tmp_path / "results" / "00007-other")
    os.makedirs(tmp_path / "results" / "notes")          # not a run: ignored
    assert os.path.basename(rundir.create_run(str(tmp_path / "results"), "x")) == "00008-x"


def test_resolve_latest_by_name_and_by_prefix(run_dir):
    ckpts = os.path.join(run_dir, "checkpoints")
    latest = rundir.Resolved(os.path.join(ckpts, "ckpt-448"), run_dir)
    assert rundir.resolve_checkpoint(run_dir) == latest
    assert rundir.resolve_checkpoint(ckpts) == latest
    assert rundir.resolve_checkpoint(run_dir + "/") == latest
    assert rundir.resolve_checkpoint(run_dir, "ckpt-96").checkpoint == os.path.join(ckpts, "ckpt-96")
    assert rundir.resolve_checkpoint(run_dir, "1024").checkpoint == os.path.join(ckpts, "ckpt-1024")
    assert rundir.resolve_checkpoint(os.path.join(ckpts, "ckpt-96")) == rundir.Resolved(
        os.path.join(ckpts, "ckpt-96"), run_dir)
    assert rundir.list_checkpoints(run_dir) == [os.path.join(ckpts, f"ckpt-{n}") for n in (96, 448, 1024)]
    assert [rundir.checkpoint_nimg(p) for p in rundir.list_checkpoints(run_dir)] == [96, 448, 1024]


def test_a_checkpoint_outside_a_run_and_a_bare_checkpoint_directory(tmp_path):
    lone = _fake_checkpoint(str(tmp_path / "copied"), 64)
    assert rundir.resolve_checkpoint(lone) == rundir.Resolved(lone, str(tmp_path / "copied"))
    assert rundir.resolve_checkpoint(str(tmp_path / "copied")).checkpoint == lone   # no checkpoints/ inside


def test_bad_paths_name_the_path(run_dir, tmp_path):
    cases = [
        ((str(tmp_path / "nowhere"),), "nowhere: no such run directory or checkpoint"),
        ((os.path.join(run_dir, "checkpoints", "ckpt-5"),), "ckpt-5: no such run directory or checkpoint"),
        ((run_dir, "ckpt-5"), "no checkpoint ckpt-5 in "),
        ((os.path.join(run_dir, "checkpoints", "ckpt-96"), "ckpt-96"), "needs a run directory"),
        ((str(tmp_path),), f"{tmp_path}: no checkpoint in {tmp_path}"),
    ]
    (tmp_path / "a-file").write_text("x")
    cases.append(((str(tmp_path / "a-file"),), "a-file: neither a run directory nor a checkpoint"))
    for args, message in cases:
        with pytest.raises(rundir.RunDirError, match=message) as e:
            rundir.resolve_checkpoint(*args)
        assert os.path.normpath(args[0]) in str(e.value)
    assert "there are: ckpt-96, ckpt-448, ckpt-1024" in str(pytest.raises(
        rundir.RunDirError, rundir.resolve_checkpoint, run_dir, "ckpt-5").value)


def test_latest_checkpoint_gone_or_absolute(tmp_path):
    ckpts = tmp_path / "checkpoints"
    prefix = _fake_checkpoint(str(ckpts), 10)
    os.remove(prefix + ".index")
    assert rundir.latest_checkpoint(str(ckpts)) is None                       # the named checkpoint is gone
    other = _fake_checkpoint(str(tmp_path / "elsewhere"), 20, latest=False)
    (ckpts / "checkpoint").write_text(f'model_checkpoint_path: "{other}"\n')
    assert rundir.latest_checkpoint(str(ckpts)) == other
    assert rundir.latest_checkpoint(str(tmp_path / "none")) is None


def test_run_dir_of():
    assert rundir.run_dir_of("/r/00001-x/checkpoints/ckpt-5") == "/r/00001-x"
    assert rundir.run_dir_of("/r/copied/ckpt-5") == "/r/copied"


def test_checkpoint_info_is_written_read_and_pruned(run_dir):
    ckpts = os.path.join(run_dir, "checkpoints")
    for nimg, lod in ((96, 2.0), (448, 1.16)):
        rundir.write_checkpoint_info(os.path.join(ckpts, f"ckpt-{nimg}"), rundir.CheckpointInfo(nimg, lod, 16))
    info = rundir.checkpoint_info(os.path.join(ckpts, "ckpt-448"))
    assert info == rundir.CheckpointInfo(448, 1.16, 16) and info.kimg == 0.448
    for suffix in (".index", ".data-00000-of-00001"):   # the checkpoint manager deleted ckpt-96
        os.remove(os.path.join(ckpts, "ckpt-96" + suffix))
    rundir.prune_checkpoint_info(ckpts)
    assert sorted(f for f in os.listdir(ckpts) if f.endswith(".json")) == ["ckpt-448.json"]


def test_the_legacy_run_resolves_and_its_lod_is_read_from_the_checkpoint(tmp_path):
    legacy = shutil.copytree(LEGACY, tmp_path / "legacy")   # a copy: the fixture is never written
    prefix = os.path.join(legacy, "checkpoints", "ckpt-448")
    assert rundir.resolve_checkpoint(str(legacy)) == rundir.Resolved(prefix, str(legacy))
    assert not os.path.exists(prefix + ".json")                  # written before ckpt-<n>.json existed
    info = rundir.checkpoint_info(prefix)
    assert info.nimg == 448 and info.lod == pytest.approx(1.0) and info.resolution is None
    assert rundir.read_run_info(str(legacy))["dataset_dir"].endswith("fmnist100")
    assert rundir.read_json(os.path.join(legacy, rundir.NETWORKS_FILE))["resolution"] == 32
    ticks = rundir.read_ticks(str(legacy))
    assert [(t.tick, t.kimg, t.lod, t.minibatch, t.time_s) for t in ticks] == [
        (1, 0.2, 2.08, 8, 5), (2, 0.4, 1.0, 8, 8), (3, 0.6, 0.24, 8, 12)]
    assert ticks[1].sec_per_tick == 3.0 and ticks[1].sec_per_kimg == 13.48 and ticks[1].maintenance == 0.3


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (65, "1m 05s"), (3725, "1h 02m 05s"),
                                           (2 * 86400 + 3 * 3600 + 4 * 60, "2d 03h 04m")])
def test_time_format_round_trip(seconds, text):
    assert rundir.format_time(seconds) == text and rundir.parse_time(text) == seconds


def test_tick_line_round_trip():
    line = rundir.format_tick(12, 1234.5, 3.25, 64, 3725.4, 61.25, 12.5, 0.75)
    assert line == ("tick 12    kimg 1234.5   lod 3.25  minibatch 64   time 1h 02m 05s   sec/tick 61.2    "
                    "sec/kimg 12.50   maintenance 0.8")
    assert rundir.parse_tick(line) == rundir.Tick(12, 1234.5, 3.25, 64, 3725, 61.2, 12.5, 0.8)
    assert rundir.parse_tick(line + "\n") == rundir.parse_tick(line)
    short = "tick 2     kimg 20.2     lod 2.00  minibatch 64   time 1h 00m 00s   sec/tick 100.0"
    assert rundir.parse_tick(short) == rundir.Tick(2, 20.2, 2.0, 64, 3600, 100.0, None, None)
    for other in ("Training fmnist100 32x32x1", "Resumed from x at kimg 0.2", ""):
        assert rundir.parse_tick(other) is None
    skipped = rundir.format_tick(3, 0.6, 0.0, 8, 12, 3.5, 1.0, 0.1, {"D": 2, "G": 0})
    assert skipped.endswith("maintenance 0.1 skipped D 2 G 0")
    assert rundir.parse_tick(skipped).skipped == {"D": 2, "G": 0} and rundir.parse_tick(line).skipped == {}
    assert rundir.format_tick(3, 0.6, 0.0, 8, 12, 3.5, 1.0, 0.1, {"D": 0, "G": 0}) == \
        rundir.format_tick(3, 0.6, 0.0, 8, 12, 3.5, 1.0, 0.1)


def test_json_files_are_written_atomically(tmp_path):
    path = str(tmp_path / "summary.json")
    rundir.write_json(path, {"kimg": 0.4})
    rundir.write_json(path, {"kimg": 0.6})
    assert rundir.read_json(path) == {"kimg": 0.6} and os.listdir(tmp_path) == ["summary.json"]


def test_fakes_and_saved_models(tmp_path):
    assert rundir.fakes_file(12) == "fakes000012.png"
    for name in ("fakes000000.png", "fakes000012.png", "fakes.png", "reals.png"):
        (tmp_path / name).write_bytes(b"")
    assert rundir.list_fakes(str(tmp_path)) == {0: str(tmp_path / "fakes000000.png"),
                                                12: str(tmp_path / "fakes000012.png")}
    assert not rundir.is_saved_model(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert rundir.is_saved_model(str(tmp_path))
    assert rundir.export_metadata_path("/e") == os.path.join("/e", "assets", rundir.EXPORT_METADATA_FILE)

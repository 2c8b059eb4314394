"""progan-generate: PNGs by seed, grids, class rows, truncation, videos, training-progress videos."""
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from progan_tf import export, generate
from run_fixtures import tiny_run


def _gen(*argv) -> int:
    return generate.cli(["progan-generate", *map(str, argv)])


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path))


@pytest.fixture(scope="module")
def uncond_export(tmp_path_factory):
    run_dir = tiny_run(conditional=False)
    out = tmp_path_factory.mktemp("gen-export") / "uncond"
    export.export_run(run_dir, str(out))
    return run_dir, str(out)


@pytest.fixture(scope="module")
def cond_export(tmp_path_factory):
    run_dir = tiny_run(conditional=True)
    out = tmp_path_factory.mktemp("gen-export") / "cond"
    export.export_run(run_dir, str(out), label_names=[f"c{i}" for i in range(10)])
    return run_dir, str(out)


def test_per_seed_pngs_are_reproducible_from_checkpoint_and_saved_model(uncond_export, tmp_path):
    run_dir, saved = uncond_export
    assert _gen(run_dir, tmp_path / "a", "--seeds=3,1,5-6") == 0
    assert _gen(run_dir, tmp_path / "b", "--seeds=1,3,5-6", "--batch_size=3") == 0
    assert _gen(saved, tmp_path / "c", "--seeds=5-6,1,3") == 0
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == ["seed0001.png", "seed0003.png", "seed0005.png", "seed0006.png"]
    for name in names:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    assert _png(tmp_path / "a" / "seed0001.png").shape == (32, 32)
    assert not np.array_equal(_png(tmp_path / "a" / "seed0001.png"), _png(tmp_path / "a" / "seed0003.png"))


def test_grid_matches_the_single_images(uncond_export, tmp_path):
    saved = uncond_export[1]
    assert _gen(saved, tmp_path, "--seeds=0-4", "--grid", "--grid_cols=3") == 0
    assert _gen(saved, tmp_path / "single", "--seeds=0-4") == 0
    grid = _png(tmp_path / "grid.png")
    assert grid.shape == (64, 96)
    assert np.array_equal(grid[32:64, 0:32], _png(tmp_path / "single" / "seed0003.png"))
    assert np.all(grid[32:64, 64:96] == 0)             # the unused sixth cell


def test_random_seeds_and_truncation(uncond_export, tmp_path):
    assert _gen(uncond_export[1], tmp_path / "r", "--num=3", "--random_seed=4") == 0
    assert len(os.listdir(tmp_path / "r")) == 3
    assert _gen(uncond_export[1], tmp_path / "t", "--num=4", "--grid", "--grid_cols=4", "--truncation_psi=0") == 0
    grid = _png(tmp_path / "t" / "grid.png")
    assert all(np.array_equal(grid[:, :32], grid[:, 32 * k:32 * (k + 1)]) for k in range(4))   # the average image


def test_class_rows_and_labels(cond_export, tmp_path):
    run_dir, saved = cond_export
    assert _gen(saved, tmp_path / "rows", "--class_rows", "--seeds=3,4") == 0
    grid = _png(tmp_path / "rows" / "grid.png")
    assert grid.shape == (10 * 16, 2 * 16)              # the export stopped at 16x16; one row per class
    assert _gen(run_dir, tmp_path / "one", "--seeds=4", "--labels=7") == 0
    assert os.listdir(tmp_path / "one") == ["seed0004-class7.png"]
    assert np.array_equal(_png(tmp_path / "one" / "seed0004-class7.png"), grid[7 * 16:8 * 16, 16:32])
    assert _gen(saved, tmp_path / "each", "--seeds=1-3", "--labels=0,0,9") == 0
    assert sorted(os.listdir(tmp_path / "each")) == ["seed0001-class0.png", "seed0002-class0.png",
                                                     "seed0003-class9.png"]
    assert _gen(saved, tmp_path / "default", "--seeds=12") == 0
    assert os.listdir(tmp_path / "default") == ["seed0012-class2.png"]         # seed % label_size


def test_gif_interpolation_video(uncond_export, tmp_path):
    assert _gen(uncond_export[1], tmp_path, "--video", "--video_format=gif", "--duration_sec=1", "--fps=6",
                "--video_grid=2,1", "--smoothing_sec=0.5", "--image_zoom=2") == 0
    gif = PIL.Image.open(tmp_path / "interpolation.gif")
    assert gif.n_frames == 6 and gif.size == (128, 64)
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB"), np.int32))
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])
    assert _gen(uncond_export[1], tmp_path / "psi0", "--video", "--video_format=gif", "--duration_sec=0.5",
                "--fps=6", "--truncation_psi=0") == 0
    gif = PIL.Image.open(tmp_path / "psi0" / "interpolation.gif")
    frames, total_ms = [], 0
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
        total_ms += gif.info["duration"]
    # the average image throughout (Pillow merges identical frames into one longer frame)
    assert all(np.array_equal(frames[0], f) for f in frames) and abs(total_ms - 500) <= 30


def test_webp_interpolation_video_is_lossless(uncond_export, tmp_path):
    args = ["--video", "--duration_sec=1", "--fps=5", "--video_grid=2,1", "--image_zoom=2"]
    assert _gen(uncond_export[1], tmp_path / "webp", *args, "--video_format=webp") == 0
    assert _gen(uncond_export[1], tmp_path / "gif", *args, "--video_format=gif") == 0

    def frames(path):
        im = PIL.Image.open(path)
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return im, out

    webp, webp_frames = frames(tmp_path / "webp" / "interpolation.webp")
    assert webp.format == "WEBP" and webp.n_frames == 5 and webp.size == (128, 64)
    _, gif_frames = frames(tmp_path / "gif" / "interpolation.gif")
    # Grayscale frames have at most 256 colours, so the GIF is exact too: the two must agree pixel for pixel.
    assert len(gif_frames) == 5 and all(np.array_equal(a, b) for a, b in zip(webp_frames, gif_frames))


def test_mp4_interpolation_video(cond_export, tmp_path):
    import imageio.v2 as imageio

    assert _gen(cond_export[1], tmp_path, "--video", "--video_format=mp4", "--duration_sec=0.5", "--fps=10",
                "--labels=3") == 0
    frames = [f for f in imageio.get_reader(str(tmp_path / "interpolation.mp4"), format="FFMPEG").iter_data()]
    assert len(frames) == 5 and frames[0].shape == (16, 16, 3)


def test_interpolation_latents_are_a_smooth_loop():
    lat = generate.interpolation_latents(120, 3, 16, smoothing_frames=10, random_seed=1000)
    assert lat.shape == (120, 3, 16)
    assert np.sqrt(np.mean(lat ** 2)) == pytest.approx(1.0, rel=1e-5)
    step = np.abs(np.diff(lat, axis=0)).mean()
    assert step < 0.2 * np.abs(lat).mean()                              # smooth in time
    assert np.abs(lat[0] - lat[-1]).mean() < 2 * step                    # and wraps around
    assert np.array_equal(lat, generate.interpolation_latents(120, 3, 16, 10, 1000))


def _fake_run(run_dir, with_log=True):
    os.makedirs(run_dir)
    for k, value in [(0, 30), (10, 120), (20, 240)]:
        PIL.Image.fromarray(np.full((64, 96, 3), value, np.uint8)).save(os.path.join(run_dir, f"fakes{k:06d}.png"))
    if with_log:
        with open(os.path.join(run_dir, "log.txt"), "w") as f:
            f.write("Training x 32x32x1\n"
                    "tick 1     kimg 10.0     lod 2.50  minibatch 64   time 1m 40s       sec/tick 100.0\n"
                    "tick 2     kimg 20.2     lod 2.00  minibatch 64   time 1h 00m 00s   sec/tick 100.0\n")


def test_progress_video_from_fakes(tmp_path):
    run_dir = tmp_path / "run"
    _fake_run(str(run_dir))
    snaps = generate.progress_snapshots(str(run_dir))
    assert [(t, os.path.basename(p), k, lod) for t, p, k, lod in snaps] == [
        (100, "fakes000010.png", 10.0, 2.5), (3600, "fakes000020.png", 20.2, 2.0)]
    assert _gen("--progress_video=" + str(run_dir), tmp_path / "out", "--video_format=gif", "--duration_sec=2",
                "--fps=5", "--time_warp=1") == 0
    gif = PIL.Image.open(tmp_path / "out" / "progress.gif")
    assert gif.n_frames == 10 and gif.size == (96, 64)
    gif.seek(0)
    assert np.median(np.asarray(gif.convert("L"))) == 120              # fakes000010 until 3600 s
    gif.seek(9)
    assert np.median(np.asarray(gif.convert("L"))) == 240


def test_progress_video_without_log_and_real_run(tmp_path):
    run_dir = tmp_path / "nolog"
    _fake_run(str(run_dir), with_log=False)
    assert [k for _, _, k, _ in generate.progress_snapshots(str(run_dir))] == [0, 10, 20]
    real = tiny_run(conditional=True)
    assert _gen("--progress_video=" + real, tmp_path / "out", "--video_format=gif", "--duration_sec=0.4",
                "--fps=5") == 0
    assert PIL.Image.open(tmp_path / "out" / "progress.gif").n_frames == 2


def test_errors(uncond_export, cond_export, tmp_path, capsys):
    saved = uncond_export[1]
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "seed0001.png").write_bytes(b"old")
    cases = [
        ((saved, tmp_path / "o", "--seeds=1"), "seed0001.png exists (pass --overwrite"),
        ((saved, tmp_path / "x", "--seeds=1-x"), "not a seed or an ascending range"),
        ((saved, tmp_path / "x", "--seeds=5-2"), "not a seed or an ascending range"),
        ((saved, tmp_path / "x", "--labels=1"), "unconditional"),
        ((saved, tmp_path / "x", "--class_rows"), "unconditional"),
        ((saved, tmp_path / "x", "--resolution=16"), "generates 32x32 only"),
        ((tmp_path / "nope", tmp_path / "x"), "no such run directory or checkpoint"),
        ((cond_export[1], tmp_path / "x", "--labels=c11"), "not a class index or name"),
        ((cond_export[1], tmp_path / "x", "--labels=10"), "out of range for 10 labels"),
        ((cond_export[1], tmp_path / "x", "--seeds=1-3", "--labels=1,2"), "one class or one per image"),
        ((cond_export[0], tmp_path / "x", "--resolution=32"), "training had only reached 16x16"),
        (("--progress_video=" + str(tmp_path), tmp_path / "x"), "no fakes*.png"),
    ]
    for argv, message in cases:
        assert _gen(*argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.startswith("progan-generate: error: ") and len(err.splitlines()) == 1, err
    assert (tmp_path / "o" / "seed0001.png").read_bytes() == b"old"
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")
    assert _gen(saved, tmp_path / "o", "--seeds=1", "--overwrite") == 0
    assert (tmp_path / "o" / "seed0001.png").read_bytes()[:4] == b"\x89PNG"
    assert _gen(saved) == 2


def test_console_scripts(uncond_export, tmp_path):
    """The installed entry points (absl app.run, flag parsing, exit codes), end to end."""
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ok = subprocess.run([os.path.join(bindir, "progan-generate"), uncond_export[1], str(tmp_path), "--seeds=2-3",
                         "--grid"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "Wrote" in ok.stdout and _png(tmp_path / "grid.png").shape == (32, 64)
    bad = subprocess.run([os.path.join(bindir, "progan-export"), uncond_export[0], str(tmp_path / "e"),
                          "--resolution=x"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "progan-export: error:" in bad.stderr and "--resolution" in bad.stderr

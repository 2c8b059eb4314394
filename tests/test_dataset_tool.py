"""Tests for the progan-dataset command and the writing side of progan_tf.datasets.

Expected values come from the format's definition computed here in NumPy/PIL
(exact block means + rint, the seed-123 permutation, standard source layouts)
and from files written by the original NVIDIA tool (tests/fixtures/original-format).
"""
import filecmp
import gzip
import importlib
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from progan_tf.datasets import cli, fileformat, inspection, reader, writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import (celeba, cifar_svhn, common, image_folder, lsun, mnist,
                                        tfds_images)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "original-format")
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
TOOL = [sys.executable, "-m", "progan_tf.datasets"]  # the tree under test, not an installed script


# ------------------------------------------------------------------------------ helpers

def exact_level(nchw, k):
    """Level k below the top: exact mean over 2^k x 2^k blocks, rint half-even, uint8."""
    n, c, h, w = nchw.shape
    f = 2 ** k
    x = nchw.astype(np.float64).reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))
    return np.rint(x).clip(0, 255).astype(np.uint8)


def perm(n, seed=123):
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    return order


def read_all(path, res_log2=None):
    xs, ys = zip(*reader.iterate_images(str(path), res_log2))
    return np.concatenate(xs), np.concatenate(ys)


def read_nchw(path, res_log2=None):
    x, y = read_all(path, res_log2)
    return x.transpose(0, 3, 1, 2), y


def run_cli(*argv):
    """Runs the CLI in-process with fresh flag values; returns the exit status."""
    with flagsaver.flagsaver():
        return cli.cli(["progan-dataset"] + [str(a) for a in argv])


def opts(**kw):
    kw.setdefault("num_workers", 0)
    return writer.WriteOptions(**kw)


def write_idx(dirname, images, labels, prefix="train"):
    os.makedirs(dirname, exist_ok=True)
    n, h, w = images.shape
    with gzip.open(os.path.join(dirname, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())
    with gzip.open(os.path.join(dirname, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


def save_pngs(dirname, hwc_list, names=None):
    os.makedirs(dirname, exist_ok=True)
    paths = []
    for i, img in enumerate(hwc_list):
        p = os.path.join(dirname, names[i] if names else f"im{i:03d}.png")
        PIL.Image.fromarray(img.squeeze(-1) if img.ndim == 3 and img.shape[2] == 1 else img).save(p)
        paths.append(p)
    return paths


def random_rgb(n, h, w, seed=0):
    return [np.random.RandomState(seed + i).randint(0, 256, (h, w, 3)).astype(np.uint8)
            for i in range(n)]


# ------------------------------------------------------------------------------ format

def test_byte_for_byte_against_original_fixture(tmp_path):
    """Rebuild the IDX input of fmnist100 from the fixture, convert it, compare bytes."""
    fx = os.path.join(FIXTURES, "fmnist100")
    x, y = read_nchw(fx)
    order = perm(100)
    images = np.zeros_like(x)
    images[order] = x  # undo the original's shuffle: record j is image order[j]
    labels = np.zeros(100, np.uint8)
    labels[order] = y.argmax(1)
    assert np.all(images[:, :, :2] == 0) and np.all(images[:, :, 30:] == 0)
    write_idx(tmp_path / "idx", images[:, 0, 2:30, 2:30], labels)
    out = tmp_path / "fmnist100"
    assert run_cli("create_mnist", out, tmp_path / "idx", "--num_workers=2") == 0
    assert sorted(os.listdir(out)) == sorted(os.listdir(fx))
    for fn in os.listdir(fx):
        assert filecmp.cmp(os.path.join(fx, fn), out / fn, shallow=False), fn


def test_example_bytes_match_protobuf_serializer():
    img = np.random.RandomState(0).randint(0, 256, (3, 8, 8)).astype(np.uint8)
    ex = tf.train.Example(features=tf.train.Features(feature={
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=img.shape)),
        "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img.tobytes()]))}))
    assert fileformat.serialize_example(img) == ex.SerializeToString(deterministic=True)
    parsed = tf.train.Example.FromString(fileformat.serialize_example(img))
    assert list(parsed.features.feature["shape"].int64_list.value) == [3, 8, 8]


def test_pyramid_is_exact_mean_rounded_half_to_even(tmp_path):
    rng = np.random.RandomState(5)
    imgs = [rng.randint(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(3)]
    # Ties: a 2x2 block summing to 4k+2 averages to x.5, which rint sends to the even side.
    tie = np.zeros((32, 32, 3), np.uint8)
    tie[0:2, 0:2] = np.array([[1, 2], [2, 1]])[..., None]  # 1.5 -> 2
    tie[0:2, 2:4] = np.array([[2, 3], [3, 2]])[..., None]  # 2.5 -> 2
    tie[2:4, 0:2] = np.array([[3, 4], [4, 3]])[..., None]  # 3.5 -> 4
    tie[2:4, 2:4] = np.array([[0, 1], [1, 0]])[..., None]  # 0.5 -> 0
    imgs.append(tie)
    save_pngs(tmp_path / "in", imgs)
    image_folder.create_from_images(str(tmp_path / "ds"), str(tmp_path / "in"), opts(shuffle=False))
    nchw = np.stack(imgs).transpose(0, 3, 1, 2)
    for res in range(2, 6):
        got, _ = read_nchw(tmp_path / "ds", res)
        np.testing.assert_array_equal(got, exact_level(nchw, 5 - res), err_msg=f"r{res:02d}")
    r04, _ = read_nchw(tmp_path / "ds", 4)
    np.testing.assert_array_equal(r04[3, :, 0:2, 0:2], np.broadcast_to([[2, 2], [4, 0]], (3, 2, 2)))


def test_lower_levels_use_unrounded_values():
    # A 4x4 block made of 2x2 blocks with means 0.5, 0.5, 0.5, 0.75: the stored 8x8 level
    # rounds them to 0, 0, 0, 1 (mean 0.25 -> 0), but the 4x4 level must be the exact
    # mean 0.5625 -> 1.
    img = np.zeros((1, 16, 16), np.uint8)
    img[0, 0:2, 0:2] = img[0, 0:2, 2:4] = img[0, 2:4, 0:2] = [[1, 1], [0, 0]]
    img[0, 2:4, 2:4] = [[1, 1], [1, 0]]
    levels = fileformat.build_pyramid(img)
    assert [lv.shape for lv in levels] == [(1, 16, 16), (1, 8, 8), (1, 4, 4)]
    np.testing.assert_array_equal(levels[1][0, 0:2, 0:2], [[0, 0], [0, 1]])
    assert levels[2][0, 0, 0] == 1
    for k in range(3):
        np.testing.assert_array_equal(levels[k], exact_level(img[None], k)[0])


def test_mnist_labels_order_and_seed(tmp_path):
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 10, 50).astype(np.uint8)
    images = (labels[:, None, None] * 20 + rng.randint(0, 5, (50, 28, 28))).astype(np.uint8)
    write_idx(tmp_path / "idx", images, labels)
    for seed in (123, 7):
        out = tmp_path / f"s{seed}"
        mnist.create_mnist(str(out), str(tmp_path / "idx"), opts(seed=seed))
        x, y = read_nchw(out)
        order = perm(50, seed)
        np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], images[order])
        np.testing.assert_array_equal(y, np.eye(10, dtype=np.float32)[labels[order]])
    mnist.create_mnist(str(tmp_path / "ns"), str(tmp_path / "idx"), opts(shuffle=False, max_images=9))
    x, y = read_nchw(tmp_path / "ns")
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], images[:9])
    np.testing.assert_array_equal(y.argmax(1), labels[:9])
    # test split and 'all'
    write_idx(tmp_path / "idx", images[:5], labels[:5], prefix="t10k")
    mnist.create_mnist(str(tmp_path / "all"), str(tmp_path / "idx"), opts(shuffle=False), "all")
    x, _ = read_nchw(tmp_path / "all")
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], np.concatenate([images, images[:5]]))


def test_mnist_bad_input(tmp_path):
    with pytest.raises(ToolError, match="MNIST directory not found: .*nodir"):
        mnist.create_mnist(str(tmp_path / "o"), str(tmp_path / "nodir"), opts())
    (tmp_path / "idx").mkdir()
    with pytest.raises(ToolError, match="file not found: .*train-images-idx3-ubyte.gz"):
        mnist.create_mnist(str(tmp_path / "o"), str(tmp_path / "idx"), opts())
    write_idx(tmp_path / "idx", np.zeros((4, 28, 28)), np.zeros(4))
    p = tmp_path / "idx" / "train-images-idx3-ubyte.gz"
    raw = gzip.open(p).read()
    with gzip.open(p, "wb") as f:
        f.write(raw[:-30])
    with pytest.raises(ToolError, match="train-images-idx3-ubyte.gz: header says"):
        mnist.create_mnist(str(tmp_path / "o"), str(tmp_path / "idx"), opts())
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not os.path.isdir(FMNIST_DIR), reason="Debian dataset-fashion-mnist absent")
def test_fashion_mnist_end_to_end_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli("create_mnist", "fashion_mnist") == 0  # default mnist_dir
    info = reader.read_dataset_info("fashion_mnist")
    assert (info.num_images, info.resolution, info.channels, info.label_size) == (60000, 32, 1, 10)
    assert sorted(info.files) == [2, 3, 4, 5]
    with gzip.open(os.path.join(FMNIST_DIR, "train-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FMNIST_DIR, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    order = perm(60000)
    x, y = read_nchw("fashion_mnist")
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], images[order])
    np.testing.assert_array_equal(y.argmax(1), labels[order])
    r02, _ = read_nchw("fashion_mnist", 2)
    np.testing.assert_array_equal(r02, exact_level(x, 3))


# ------------------------------------------------------------------------------ images

def test_create_from_images_recursive_labels_and_conversions(tmp_path):
    rgb = random_rgb(4, 16, 16)
    root = tmp_path / "in"
    # class 'b' holds RGBA and palette images, class 'a' RGB; one image at the top level.
    save_pngs(root / "b", [rgb[0]], ["rgb.png"])
    rgba = np.dstack([rgb[1], np.full((16, 16), 17, np.uint8)])
    PIL.Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    pal = PIL.Image.fromarray(rgb[2]).quantize(8)
    (root / "a" / "deep").mkdir(parents=True)
    pal.save(root / "a" / "deep" / "pal.png")
    save_pngs(root, [rgb[3]], ["top.png"])
    # Non-recursive: only top.png.
    image_folder.create_from_images(str(tmp_path / "flat"), str(root), opts())
    x, y = read_nchw(tmp_path / "flat")
    np.testing.assert_array_equal(x, rgb[3].transpose(2, 0, 1)[None])
    assert y.shape == (1, 0)
    # Labels from sub-folders: top.png is not in a class folder -> clear error.
    with pytest.raises(ToolError, match="top.png is not inside a class sub-folder"):
        image_folder.create_from_images(str(tmp_path / "lab"), str(root), opts(), with_labels=True)
    os.remove(root / "top.png")
    image_folder.create_from_images(str(tmp_path / "lab"), str(root), opts(shuffle=False),
                          with_labels=True)
    x, y = read_nchw(tmp_path / "lab")
    # sorted paths: a/deep/pal.png, b/rgb.png, b/rgba.png ; classes a=0, b=1
    expected = [np.asarray(pal.convert("RGB")), rgb[0], rgb[1]]
    np.testing.assert_array_equal(x, np.stack(expected).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(y, [[1, 0], [0, 1], [0, 1]])


def test_create_from_images_grayscale_and_channel_forcing(tmp_path):
    g = [np.random.RandomState(i).randint(0, 256, (8, 8)).astype(np.uint8) for i in range(3)]
    for i, img in enumerate(g):
        mode_img = PIL.Image.fromarray(img, "L")
        if i == 2:
            mode_img = PIL.Image.fromarray(np.dstack([img, img]), "LA")
        mode_img.save(tmp_path / f"g{i}.png")
    image_folder.create_from_images(str(tmp_path / "ds"), str(tmp_path), opts(shuffle=False))
    x, _ = read_nchw(tmp_path / "ds")
    np.testing.assert_array_equal(x, np.stack(g)[:, None])
    image_folder.create_from_images(str(tmp_path / "ds3"), str(tmp_path), opts(shuffle=False), channels=3)
    x, _ = read_nchw(tmp_path / "ds3")
    np.testing.assert_array_equal(x, np.repeat(np.stack(g)[:, None], 3, axis=1))


def test_create_from_images_crop_and_resize(tmp_path):
    imgs = random_rgb(2, 30, 50) + random_rgb(1, 64, 64, seed=9)
    save_pngs(tmp_path / "in", imgs)
    with pytest.raises(ToolError, match="im000.png: image is 50x30; .*--resolution"):
        image_folder.create_from_images(str(tmp_path / "x"), str(tmp_path / "in"), opts(shuffle=False))
    image_folder.create_from_images(str(tmp_path / "ds"), str(tmp_path / "in"), opts(shuffle=False),
                          resolution=16)
    x, _ = read_nchw(tmp_path / "ds")
    for got, img in zip(x, imgs):
        h, w = img.shape[:2]
        s = min(h, w)
        crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        want = np.asarray(PIL.Image.fromarray(crop).resize((16, 16), PIL.Image.LANCZOS))
        np.testing.assert_array_equal(got, want.transpose(2, 0, 1))


@pytest.mark.parametrize("case", ["mixed_sizes", "mixed_channels", "non_pow2", "bad_flag",
                                  "empty"])
def test_create_from_images_bad_input(tmp_path, case):
    src = tmp_path / "in"
    src.mkdir()
    if case == "mixed_sizes":
        save_pngs(src, random_rgb(2, 8, 8) + random_rgb(1, 16, 16))
        match = "im002.png: shape \\(3, 16, 16\\).*differs from the first image's \\(3, 8, 8\\)"
    elif case == "mixed_channels":
        save_pngs(src, random_rgb(2, 8, 8) + [np.zeros((8, 8, 1), np.uint8)])
        match = "im002.png: shape \\(1, 8, 8\\).*mixed sizes or channel counts"
    elif case == "non_pow2":
        save_pngs(src, random_rgb(1, 12, 12))
        match = "im000.png: image is 12x12; images must be square with a power-of-two"
    elif case == "bad_flag":
        save_pngs(src, random_rgb(1, 8, 8))
        match = "--resolution=24 is not a power of two"
    else:
        (src / "notes.txt").write_text("not an image")
        match = "no images .* in .*in"
    with pytest.raises(ToolError, match=match):
        image_folder.create_from_images(str(tmp_path / "out" / "ds"), str(src), opts(shuffle=False),
                              resolution=24 if case == "bad_flag" else None)
    # Atomic: nothing dataset-like (not even a temporary directory) is left behind.
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_unreadable_images_skipped_or_strict(tmp_path, caplog):
    src = tmp_path / "in"
    imgs = random_rgb(4, 8, 8)
    save_pngs(src, imgs)
    raw = (src / "im001.png").read_bytes()
    (src / "im001.png").write_bytes(raw[:len(raw) // 2])  # truncated
    (src / "im003.png").write_bytes(b"garbage")
    s = image_folder.create_from_images(str(tmp_path / "ds"), str(src), opts(shuffle=False, num_workers=2))
    assert s.written == 2 and s.num_skipped == 2
    assert sorted(os.path.basename(p) for p in s.skipped["unreadable"]) == ["im001.png",
                                                                            "im003.png"]
    assert "skipped 2" in s.report() and "im001.png" in s.report()
    assert "im003.png" in caplog.text
    x, _ = read_nchw(tmp_path / "ds")
    np.testing.assert_array_equal(x, np.stack([imgs[0], imgs[2]]).transpose(0, 3, 1, 2))
    with pytest.raises(ToolError, match="cannot read .*im001.png"):
        image_folder.create_from_images(str(tmp_path / "strict"), str(src), opts(shuffle=False, strict=True))
    assert not (tmp_path / "strict").exists()
    assert [p for p in os.listdir(tmp_path) if "incomplete" in p] == []
    # Through the CLI: a one-line error, exit status 1.
    assert run_cli("create_from_images", tmp_path / "strict", src, "--strict",
                   "--noshuffle") == 1


def test_overwrite_and_atomic_replacement(tmp_path):
    src = tmp_path / "in"
    save_pngs(src, random_rgb(3, 8, 8))
    out = tmp_path / "ds"
    assert run_cli("create_from_images", out, src) == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    with pytest.raises(ToolError, match="ds already holds a dataset.*--overwrite"):
        image_folder.create_from_images(str(out), str(src), opts())
    assert run_cli("create_from_images", out, src) == 1
    # A failing overwrite (mixed sizes) leaves the old dataset untouched.
    save_pngs(src, random_rgb(1, 16, 16), ["zz.png"])
    with pytest.raises(ToolError, match="zz.png"):
        image_folder.create_from_images(str(out), str(src), opts(overwrite=True, shuffle=False))
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    os.remove(src / "zz.png")
    save_pngs(src, random_rgb(1, 8, 8, seed=50), ["zz.png"])
    assert run_cli("create_from_images", out, src, "--overwrite") == 0
    assert reader.read_dataset_info(str(out)).num_images == 4
    assert sorted(os.listdir(tmp_path)) == ["ds", "in"]  # no temporary or old directories
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ToolError, match="not dataset files \\(notes.txt\\)"):
        image_folder.create_from_images(str(out), str(src), opts(overwrite=True))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(ToolError, match="output directory is not empty: .*other"):
        image_folder.create_from_images(str(tmp_path / "other"), str(src), opts())


def test_interrupted_write_leaves_no_dataset(tmp_path, monkeypatch):
    src = tmp_path / "in"
    save_pngs(src, random_rgb(5, 8, 8))
    real = common.load_image_file
    calls = []

    def flaky(path, *a, **k):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(common, "load_image_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        image_folder.create_from_images(str(tmp_path / "out" / "ds"), str(src), opts())
    assert os.listdir(tmp_path / "out") == []


def test_a_killed_writes_leftovers_are_removed_when_the_dataset_is_written_again(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    save_pngs(src, random_rgb(3, 8, 8))
    out.mkdir()
    killed = out / ".ds.incomplete-k1lled_0"             # what a SIGKILLed write of out/ds leaves
    killed.mkdir()
    (killed / "ds-r02.tfrecords.partial").write_bytes(b"\0" * 66)
    (killed / "ds-rxx.labels").write_bytes(b"")
    foreign = out / ".ds.incomplete-f0reign0"            # holds a file no write of ours makes
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    other = out / ".other.incomplete-abcd1234"           # another dataset's
    other.mkdir()
    live = writer.DatasetWriter(str(out / "ds"), 3)      # a write of the same path still in progress
    try:
        image_folder.create_from_images(str(out / "ds"), str(src), opts())
        assert sorted(os.listdir(out)) == sorted(["ds", foreign.name, other.name, os.path.basename(live.tmp_dir)])
    finally:
        live.abort()
    assert reader.read_dataset_info(str(out / "ds")).num_images == 3


def test_sharded_writing_reads_back_identically(tmp_path):
    src = tmp_path / "in"
    save_pngs(src, random_rgb(11, 16, 16))
    image_folder.create_from_images(str(tmp_path / "one"), str(src), opts())
    image_folder.create_from_images(str(tmp_path / "many"), str(src), opts(shards=3, num_workers=2))
    names = sorted(os.listdir(tmp_path / "many"))
    assert names == sorted(f"many-r{r:02d}-{s:05d}-of-00003.tfrecords"
                           for r in (2, 3, 4) for s in range(3))
    assert inspection.compare(str(tmp_path / "one"), str(tmp_path / "many"))["equal"]
    for r in (2, 3, 4):
        np.testing.assert_array_equal(read_all(tmp_path / "one", r)[0],
                                      read_all(tmp_path / "many", r)[0])


def test_threads_give_identical_bytes(tmp_path):
    src = tmp_path / "in"
    save_pngs(src, random_rgb(9, 8, 8))
    image_folder.create_from_images(str(tmp_path / "a"), str(src), opts(num_workers=0))
    image_folder.create_from_images(str(tmp_path / "b"), str(src), opts(num_workers=3))
    for fn in os.listdir(tmp_path / "a"):
        other = tmp_path / "b" / fn.replace("a-r", "b-r")
        assert (tmp_path / "a" / fn).read_bytes() == other.read_bytes()


# ------------------------------------------------------------------------------ inspection

def _labelled_dataset(tmp_path, name="ds", n=6, seed=0):
    root = tmp_path / f"src_{name}"
    imgs = random_rgb(n, 8, 8, seed)
    for i, img in enumerate(imgs):
        save_pngs(root / f"c{i % 2}", [img], [f"{i:03d}.png"])
    image_folder.create_from_images(str(tmp_path / name), str(root), opts(shuffle=False),
                          with_labels=True)
    return imgs


def test_extract_inverts_create(tmp_path):
    imgs = random_rgb(5, 16, 16) + [np.zeros((16, 16, 3), np.uint8)]
    save_pngs(tmp_path / "in", imgs)
    image_folder.create_from_images(str(tmp_path / "ds"), str(tmp_path / "in"), opts())
    assert run_cli("extract", tmp_path / "ds", tmp_path / "out") == 0
    files = sorted(os.listdir(tmp_path / "out"))
    assert files == [f"img{i:08d}.png" for i in range(6)]
    got = np.stack([np.asarray(PIL.Image.open(tmp_path / "out" / f)) for f in files])
    np.testing.assert_array_equal(got, np.stack(imgs)[perm(6)])
    assert run_cli("extract", tmp_path / "ds", tmp_path / "out") == 1  # not empty
    _labelled_dataset(tmp_path, "lab")
    assert inspection.extract(str(tmp_path / "lab"), str(tmp_path / "out2"), level=2) == 6
    assert np.asarray(PIL.Image.open(tmp_path / "out2" / "img00000000.png")).shape == (4, 4, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "out2" / "labels.npy"),
                                  read_all(tmp_path / "lab")[1])


def test_compare_detects_one_pixel_and_label_differences(tmp_path):
    imgs = random_rgb(6, 8, 8)
    for name, tweak in (("a", None), ("b", None), ("c", "pixel")):
        root = tmp_path / f"src_{name}"
        for i, img in enumerate(imgs):
            img = img.copy()
            if tweak == "pixel" and i == 4:
                img[3, 5, 1] ^= 1
            save_pngs(root / f"c{i % 2}", [img], [f"{i:03d}.png"])
        image_folder.create_from_images(str(tmp_path / name), str(root), opts(), with_labels=True)
    a, b, c, d = (str(tmp_path / n) for n in "abcd")
    assert inspection.compare(a, b)["equal"]
    r = inspection.compare(a, c)
    assert not r["equal"] and r["identical_images"] == 5 and r["identical_labels"] == 6
    # sorted inputs: c0/000, c0/002, c0/004, ... -> 004.png is item 2; record j holds order[j]
    assert r["different_images"] == [int(np.where(perm(6) == 2)[0][0])]
    # d = a with one label row changed
    import shutil
    shutil.copytree(a, d)
    labels = np.load(os.path.join(a, "a-rxx.labels"))
    labels[5] = labels[5][::-1]
    for fn in os.listdir(d):
        os.rename(os.path.join(d, fn), os.path.join(d, fn.replace("a-r", "d-r")))
    with open(os.path.join(d, "d-rxx.labels"), "wb") as f:
        np.save(f, labels)
    r = inspection.compare(a, d)
    assert not r["equal"] and r["identical_images"] == 6 and r["different_labels"] == [5]
    assert inspection.compare(a, d, ignore_labels=True)["equal"]
    assert run_cli("compare", a, b) == 0
    assert run_cli("compare", a, c) == 1
    assert run_cli("compare", a, d, "--ignore_labels") == 0


def test_display_grid_and_info(tmp_path, capsys):
    imgs = _labelled_dataset(tmp_path, "ds", n=5)
    out = tmp_path / "grid.png"
    assert run_cli("display", tmp_path / "ds", out, "--num=4") == 0
    grid = np.asarray(PIL.Image.open(out))
    # 4 images of 8x8 -> 2x2 cells of (8*8+2) x (8*8+2+12) with 8x nearest upscaling.
    assert grid.shape == (2 * 78, 2 * 66, 3)
    first = read_all(tmp_path / "ds")[0][0]
    np.testing.assert_array_equal(grid[1:65, 1:65], first.repeat(8, 0).repeat(8, 1))
    assert first.tolist() == imgs[0].tolist()
    assert run_cli("info", tmp_path / "ds") == 0
    text = capsys.readouterr().out
    assert "images       5" in text and "8x8" in text and "label size   2" in text
    assert "r02" in text and "r03" in text and "channels     3" in text
    assert run_cli("info", tmp_path / "missing") == 1
    assert run_cli("info", tmp_path / "ds", "--verify") == 0
    assert "verified     10 records" in capsys.readouterr().out
    top = tmp_path / "ds" / "ds-r03.tfrecords"
    raw = bytearray(top.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    top.write_bytes(bytes(raw))
    assert run_cli("info", tmp_path / "ds") == 0  # header scan cannot see a payload flip
    capsys.readouterr()
    assert run_cli("info", tmp_path / "ds", "--verify") == 1
    assert "ds-r03.tfrecords: corrupt record" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["length", "crc"])
def test_verify_names_the_exact_record(tmp_path, capsys, how):
    """A damaged record 4 of the 4x4 level, and record 5 of the top level: verify names the file
    and that exact index (before, a wrong data length was "near index 0")."""
    from run_fixtures import damage_record

    _labelled_dataset(tmp_path, "ds", n=7)
    start = damage_record(tmp_path / "ds" / "ds-r02.tfrecords", 4, how)
    assert run_cli("info", tmp_path / "ds", "--verify") == 1
    err = capsys.readouterr().err
    assert re.search(r"ds-r02\.tfrecords: corrupt record 4\b", err), err
    if how == "crc":
        assert f"at byte {start} " in err, err
    else:
        assert "45 data bytes for shape [3, 4, 4]" in err, err
    _labelled_dataset(tmp_path, "ds2", n=7)
    damage_record(tmp_path / "ds2" / "ds2-r03.tfrecords", 5, how)
    assert run_cli("info", tmp_path / "ds2", "--verify") == 1
    err = capsys.readouterr().err
    assert re.search(r"ds2-r03\.tfrecords: corrupt record 5\b", err) and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------ sources

def _write_cifar(root, batches, key="labels", classes=10):
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(2)
    all_x, all_y = [], []
    for name in batches:
        x = rng.randint(0, 256, (7, 3072)).astype(np.uint8)
        y = list(rng.randint(0, classes, 7))
        y[0] = classes - 1  # make max(label)+1 == classes
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({"data": x, key: y, "filenames": ["x"] * 7}, f)
        all_x.append(x)
        all_y.extend(y)
    return np.concatenate(all_x).reshape(-1, 3, 32, 32), np.array(all_y)


def test_cifar10_and_cifar100(tmp_path):
    x, y = _write_cifar(tmp_path / "c10", [f"data_batch_{i}" for i in range(1, 6)])
    with pytest.raises(ToolError, match="expected 50000 images, found 35"):
        cifar_svhn.create_cifar10(str(tmp_path / "o10"), str(tmp_path / "c10"), opts())
    cifar_svhn.create_cifar10(str(tmp_path / "o10"), str(tmp_path / "c10"), opts(), expected_images=35)
    gx, gy = read_nchw(tmp_path / "o10")
    np.testing.assert_array_equal(gx, x[perm(35)])
    np.testing.assert_array_equal(gy, np.eye(10, dtype=np.float32)[y[perm(35)]])
    os.remove(tmp_path / "c10" / "data_batch_3")
    with pytest.raises(ToolError, match="file not found: .*data_batch_3"):
        cifar_svhn.create_cifar10(str(tmp_path / "o"), str(tmp_path / "c10"), opts(), expected_images=0)
    x, y = _write_cifar(tmp_path / "c100", ["train"], key="fine_labels", classes=100)
    cifar_svhn.create_cifar100(str(tmp_path / "o100"), str(tmp_path / "c100"), opts(),
                       expected_images=0)
    gx, gy = read_nchw(tmp_path / "o100")
    np.testing.assert_array_equal(gx, x[perm(7)])
    np.testing.assert_array_equal(gy, np.eye(100, dtype=np.float32)[y[perm(7)]])


class _CreatesFile:
    """Unpickled with plain pickle.load, this creates the file ``path``."""

    def __init__(self, path, how="open"):
        self.path, self.how = str(path), how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.path}",))
        return (open, (self.path, "w"))


def test_a_doctored_cifar_pickle_is_refused_and_runs_nothing(tmp_path):
    """A "CIFAR-10" batch whose __reduce__ would create a file: refused by name, the file never made."""
    _write_cifar(tmp_path / "c10", [f"data_batch_{i}" for i in range(1, 6)])
    x = np.zeros((7, 3072), np.uint8)
    for how, refused in (("open", r"builtins\.open|io\.open"), ("system", r"(posix|os|nt)\.system")):
        made = tmp_path / f"pwned-{how}"
        with open(tmp_path / "c10" / "data_batch_3", "wb") as f:
            pickle.dump({"data": x, "labels": [0] * 7, "evil": _CreatesFile(made, how)}, f)
        with pytest.raises(ToolError, match=r"data_batch_3: refusing to load " + refused):
            cifar_svhn.create_cifar10(str(tmp_path / "o"), str(tmp_path / "c10"), opts(), expected_images=0)
        assert not made.exists() and not (tmp_path / "o").exists()
    # The command line: one line naming the file, exit status 1, nothing created.
    out = subprocess.run(TOOL + ["create_cifar10", str(tmp_path / "o"), str(tmp_path / "c10"),
                                 "--expected_images=0"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert re.search(r"progan-dataset create_cifar10: error: \S*data_batch_3: refusing to load "
                     r"(posix|os|nt)\.system", out.stderr), out.stderr[-2000:]
    assert not (tmp_path / "pwned-system").exists() and not (tmp_path / "o").exists()


def test_the_shared_unpickler_allows_plain_data_only(tmp_path):
    from progan_tf import safe_pickle

    plain = {"a": [1, 2.5, "x", b"y", None, True], "t": (1, {3}, frozenset([4])), "c": complex(1, 2),
             "arr": np.arange(6, dtype=np.int16).reshape(2, 3), "s": np.float32(1.5), "o": np.array([1, "a"], object)}
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        got = safe_pickle.loads(pickle.dumps(plain, protocol=protocol))
        np.testing.assert_array_equal(got.pop("arr"), plain["arr"])
        np.testing.assert_array_equal(got.pop("o"), plain["o"])
        assert got == {k: v for k, v in plain.items() if k not in ("arr", "o")}
    for how, refused in (("open", r"builtins\.open|io\.open"), ("system", r"(posix|os|nt)\.system")):
        made = tmp_path / f"pwned-{how}"
        with pytest.raises(safe_pickle.UnsafePickleError, match="refusing to load " + refused):
            safe_pickle.loads(pickle.dumps([1, _CreatesFile(made, how)]))
        assert not made.exists()
    for name in ("eval", "exec", "getattr", "__import__", "compile"):
        evil = f"cbuiltins\n{name}\n(S'1'\ntR.".encode()
        with pytest.raises(safe_pickle.UnsafePickleError, match=f"builtins\\.{name}"):
            safe_pickle.loads(evil)
    with pytest.raises(safe_pickle.UnsafePickleError, match="encoding 'rot13'"):
        safe_pickle.loads(b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.")


def test_svhn_mat(tmp_path):
    import scipy.io
    rng = np.random.RandomState(3)
    hwcn = rng.randint(0, 256, (32, 32, 3, 9)).astype(np.uint8)
    y = np.array([[10], [1], [2], [3], [4], [5], [6], [7], [9]], np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat", {"X": hwcn, "y": y})
    with pytest.raises(ToolError, match="expected 73257 images, found 9"):
        cifar_svhn.create_svhn(str(tmp_path / "o"), str(tmp_path / "svhn"), opts())
    cifar_svhn.create_svhn(str(tmp_path / "o"), str(tmp_path / "svhn"), opts(shuffle=False),
                   expected_images=9)
    gx, gy = read_all(tmp_path / "o")
    np.testing.assert_array_equal(gx, hwcn.transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(gy.argmax(1), [0, 1, 2, 3, 4, 5, 6, 7, 9])
    assert gy.shape == (9, 10)
    with pytest.raises(ToolError, match="file not found: .*test_32x32.mat"):
        cifar_svhn.create_svhn(str(tmp_path / "o2"), str(tmp_path / "svhn"), opts(), split="test")


def test_svhn_original_pickles(tmp_path):
    """The original's create_svhn input: train_1..3.pkl holding (images [N,3,32,32], labels 0..9)."""
    import pickle
    rng = np.random.RandomState(5)
    parts = [(rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8), rng.randint(0, 10, n).astype(np.uint8))
             for n in (4, 3, 2)]
    (tmp_path / "svhn").mkdir()
    for b, part in enumerate(parts, 1):
        with open(tmp_path / "svhn" / f"train_{b}.pkl", "wb") as f:
            pickle.dump(part, f)
    assert run_cli("create_svhn", tmp_path / "o", tmp_path / "svhn", "--expected_images=9",
                   "--num_workers=0") == 0
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    gx, gy = read_nchw(tmp_path / "o")
    order = np.arange(9)
    np.random.RandomState(123).shuffle(order)                    # the original shuffles SVHN
    np.testing.assert_array_equal(gx, images[order])
    np.testing.assert_array_equal(gy, np.eye(10, dtype=np.float32)[labels[order]])
    with open(tmp_path / "svhn" / "train_2.pkl", "wb") as f:
        pickle.dump((parts[1][0], parts[1][1] + 10), f)
    with pytest.raises(ToolError, match="train_2.pkl: labels must be digits 0..9"):
        cifar_svhn.create_svhn(str(tmp_path / "o2"), str(tmp_path / "svhn"), opts(), expected_images=0)


def test_celeba_crop(tmp_path):
    imgs = random_rgb(3, 218, 178)
    save_pngs(tmp_path / "celeba" / "img_align_celeba_png", imgs,
              [f"{i + 1:06d}.png" for i in range(3)])
    with pytest.raises(ToolError, match="expected 202599 images, found 3"):
        celeba.create_celeba(str(tmp_path / "o"), str(tmp_path / "celeba"), opts())
    celeba.create_celeba(str(tmp_path / "o"), str(tmp_path / "celeba"), opts(), expected_images=3)
    gx, gy = read_all(tmp_path / "o")
    want = np.stack([im[121 - 64:121 + 64, 89 - 64:89 + 64] for im in imgs])[perm(3)]
    np.testing.assert_array_equal(gx, want)
    assert gx.shape == (3, 128, 128, 3) and gy.shape == (3, 0)
    with pytest.raises(ToolError, match="no aligned CelebA images in .*empty"):
        (tmp_path / "empty").mkdir()
        celeba.create_celeba(str(tmp_path / "o2"), str(tmp_path / "empty"), opts())


def write_lmdb(path, imgs, extra=()):
    """An LSUN-style LMDB: keys key000.. -> lossless WebP, plus raw (key, value) `extra` entries."""
    import io

    import lmdb
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, img in enumerate(imgs):
            buf = io.BytesIO()
            PIL.Image.fromarray(img).save(buf, format="WEBP", lossless=True)
            txn.put(f"key{i:03d}".encode(), buf.getvalue())
        for key, value in extra:
            txn.put(key, value)
    env.close()


def test_lsun_lmdb(tmp_path):
    imgs = random_rgb(4, 24, 40) + random_rgb(1, 40, 24, seed=10)
    write_lmdb(tmp_path / "lmdb", imgs, [(b"key999", b"not an image")])
    s = lsun.create_lsun(str(tmp_path / "o"), str(tmp_path / "lmdb"), opts(shuffle=False),
                       resolution=8)
    assert s.written == 5 and s.num_skipped == 1 and "key999" in s.skipped["unreadable"][0]
    gx, _ = read_all(tmp_path / "o")
    for got, img in zip(gx, imgs):
        h, w = img.shape[:2]
        s_ = min(h, w)
        crop = img[(h - s_) // 2:(h + s_) // 2, (w - s_) // 2:(w + s_) // 2]
        np.testing.assert_array_equal(
            got, np.asarray(PIL.Image.fromarray(crop).resize((8, 8), PIL.Image.LANCZOS)))


def test_lsun_keeps_cursor_order_by_default_like_the_original(tmp_path):
    imgs = random_rgb(6, 8, 8, seed=4)
    write_lmdb(tmp_path / "lmdb", imgs)
    assert run_cli("create_lsun", tmp_path / "plain", tmp_path / "lmdb", "--resolution=8",
                   "--max_images=4", "--num_workers=0") == 0
    np.testing.assert_array_equal(read_all(tmp_path / "plain")[0], np.stack(imgs[:4]))   # the first 4 keys
    assert run_cli("create_lsun", tmp_path / "shuffled", tmp_path / "lmdb", "--resolution=8",
                   "--shuffle", "--num_workers=0") == 0
    order = np.arange(6)
    np.random.RandomState(123).shuffle(order)
    np.testing.assert_array_equal(read_all(tmp_path / "shuffled")[0], np.stack(imgs)[order])


# ------------------------------------------------------------------------------ TFDS

def _build_tiny_tfds(data_dir):
    import tensorflow_datasets as tfds

    class TinyProganImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(12, 20, 3)),
                "label": tfds.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(7):
                yield i, {"image": random_rgb(1, 12, 20, seed=100 + i)[0], "label": i % 3}

    TinyProganImages(data_dir=str(data_dir)).download_and_prepare()


def test_create_from_tfds_offline(tmp_path):
    _build_tiny_tfds(tmp_path / "tfds")
    # Read from the local data dir in a fresh process (the builder class is not registered
    # there, so TFDS must load the prepared files, as it would offline).
    cmd = TOOL + ["create_from_tfds", str(tmp_path / "ds"), "tiny_progan_images",
           f"--data_dir={tmp_path / 'tfds'}", "--resolution=8", "--noshuffle"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    gx, gy = read_all(tmp_path / "ds")
    import tensorflow_datasets as tfds
    exs = list(tfds.as_numpy(tfds.builder("tiny_progan_images", data_dir=str(tmp_path / "tfds"))
                             .as_dataset(split="train", shuffle_files=False)))
    for got, lab, ex in zip(gx, gy, exs):
        crop = ex["image"][:, 4:16]
        want = np.asarray(PIL.Image.fromarray(crop).resize((8, 8), PIL.Image.LANCZOS))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(lab, np.eye(3)[ex["label"]])
    assert len(gx) == 7
    # Not prepared locally and no --download: a clear error, not a download attempt.
    with pytest.raises(ToolError, match="'mnist' is not prepared in .*empty.*--download"):
        tfds_images.create_from_tfds(str(tmp_path / "m"), "mnist", opts(),
                            data_dir=str(tmp_path / "empty"))
    with pytest.raises(ToolError, match="'no_such_dataset_xyz' not found"):
        tfds_images.create_from_tfds(str(tmp_path / "m"), "no_such_dataset_xyz", opts(),
                            data_dir=str(tmp_path / "empty"))
    with pytest.raises(ToolError, match="--image_key='img'"):
        tfds_images.create_from_tfds(str(tmp_path / "m"), "tiny_progan_images", opts(),
                            image_key="img", data_dir=str(tmp_path / "tfds"))


# ------------------------------------------------------------------------------ CLI

def test_cli_help_and_user_errors(tmp_path):
    r = subprocess.run(TOOL + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for name in ("create_mnist", "create_from_images", "create_cifar10", "create_cifar100",
                 "create_svhn", "create_celeba", "create_lsun", "create_from_tfds", "display",
                 "extract", "compare", "info"):
        assert name in r.stdout
    r = subprocess.run(TOOL + ["create_from_images", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0
    assert "<tfrecord_dir> <image_dir>" in r.stdout and "--labels_from_subdirs" in r.stdout
    r = subprocess.run(TOOL + ["create_from_images", str(tmp_path / "o"), str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"image directory not found: {tmp_path / 'nope'}" in r.stderr
    assert run_cli("no_such_command") == 2
    assert run_cli("info") == 2  # missing positional argument
    assert run_cli("create_from_images", tmp_path / "o", tmp_path, "--resolution=6") == 1


def test_console_script_and_module_entry_points():
    setup_py = open(os.path.join(os.path.dirname(__file__), "..", "setup.py")).read()
    module, fn = re.search(r'"progan-dataset=([\w.]+):(\w+)"', setup_py).groups()
    assert getattr(importlib.import_module(module), fn) is cli.run
    r = subprocess.run(TOOL + ["no_such_command"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown command 'no_such_command'" in r.stderr

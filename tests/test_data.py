"""Tests for progan_tf.datasets.reader (the TFRecord-pyramid reader, tf.data pipelines, the
per-stage input and the training-side transforms) and the format's name/record helpers.

Datasets here are written by a small independent writer (tf.train.Example +
NumPy exact block means), not by progan_tf.datasets.writer, so the reader is
checked against the format itself.
"""
import gzip
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from progan_tf.datasets import fileformat, reader

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "original-format")
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------ helpers

def exact_level(nchw, k):
    """Level k below the top: exact mean over 2^k x 2^k blocks, rint half-even, uint8."""
    n, c, h, w = nchw.shape
    f = 2 ** k
    x = nchw.astype(np.float64).reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5))
    return np.rint(x).clip(0, 255).astype(np.uint8)


def write_reference_dataset(root, name, nchw, labels=None, shards=1):
    """Writes a dataset the way the original exporter does, independently of our writer."""
    path = os.path.join(root, name)
    os.makedirs(path)
    n, c, h, _ = nchw.shape
    top = int(np.log2(h))
    per = -(-n // shards)
    for res in range(2, top + 1):
        level = exact_level(nchw, top - res)
        for s in range(shards):
            fn = (f"{name}-r{res:02d}.tfrecords" if shards == 1
                  else f"{name}-r{res:02d}-{s:05d}-of-{shards:05d}.tfrecords")
            with tf.io.TFRecordWriter(os.path.join(path, fn)) as w:
                for img in level[s * per:(s + 1) * per]:
                    ex = tf.train.Example(features=tf.train.Features(feature={
                        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=img.shape)),
                        "data": tf.train.Feature(bytes_list=tf.train.BytesList(
                            value=[img.tobytes()]))}))
                    w.write(ex.SerializeToString())
    if labels is not None:
        with open(os.path.join(path, f"{name}-rxx.labels"), "wb") as f:
            np.save(f, labels.astype(np.float32))
    return path


def indexed_images(n, c=3, r=16):
    """Image i is constant i (so every level of it is i too); label row = [i, 2i]."""
    nchw = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, c, r, r)).copy()
    labels = np.stack([np.arange(n), 2 * np.arange(n)], axis=1).astype(np.float32)
    return nchw, labels


def read_all(path, res_log2=None, **kw):
    xs, ys = zip(*reader.iterate_images(path, res_log2, **kw))
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------ fixtures

@pytest.mark.parametrize("name,channels", [("fmnist100", 1), ("rgb100", 3)])
def test_reads_original_fixtures(name, channels):
    path = os.path.join(FIXTURES, name)
    info = reader.read_dataset_info(path)
    assert (info.name, info.resolution, info.resolution_log2) == (name, 32, 5)
    assert (info.channels, info.num_images, info.label_size) == (channels, 100, 10)
    assert info.files == {r: [os.path.join(path, f"{name}-r{r:02d}.tfrecords")]
                          for r in range(2, 6)}
    assert info.labels_path == os.path.join(path, f"{name}-rxx.labels")
    labels = reader.load_labels(info)
    assert labels.dtype == np.float32 and labels.shape == (100, 10)
    np.testing.assert_array_equal(labels.sum(1), np.ones(100))
    assert set(np.unique(labels)) == {0.0, 1.0}
    top, top_labels = read_all(info, batch_size=32)
    assert top.shape == (100, 32, 32, channels) and top.dtype == np.uint8
    np.testing.assert_array_equal(top_labels, labels)
    nchw = top.transpose(0, 3, 1, 2)
    for res in range(2, 5):
        x, y = read_all(info, res)
        assert x.shape == (100, 2 ** res, 2 ** res, channels)
        # Fixture's lower levels are the exact block means of r05, rounded half to even.
        np.testing.assert_array_equal(x.transpose(0, 3, 1, 2), exact_level(nchw, 5 - res))
        np.testing.assert_array_equal(y, labels)


@pytest.mark.skipif(not os.path.isdir(FMNIST_DIR), reason="Debian dataset-fashion-mnist absent")
def test_fixture_is_shuffled_fashion_mnist_test_set():
    with gzip.open(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:100]
    with gzip.open(os.path.join(FMNIST_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:100]
    order = np.arange(100)
    np.random.RandomState(123).shuffle(order)
    x, y = read_all(os.path.join(FIXTURES, "fmnist100"))
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], images[order])
    assert np.all(x[:, :2] == 0) and np.all(x[:, 30:] == 0)
    np.testing.assert_array_equal(y.argmax(1), labels[order])


# ------------------------------------------------------------------------------ layout

def test_sharded_layout_reads_like_unsharded(tmp_path):
    rng = np.random.RandomState(0)
    nchw = rng.randint(0, 256, (23, 3, 16, 16)).astype(np.uint8)
    labels = np.eye(5, dtype=np.float32)[rng.randint(0, 5, 23)]
    a = write_reference_dataset(tmp_path / "a", "ds", nchw, labels)
    b = write_reference_dataset(tmp_path / "b", "ds", nchw, labels, shards=4)
    info = reader.read_dataset_info(b)
    assert info.num_images == 23 and info.resolution == 16 and info.label_size == 5
    assert [os.path.basename(f) for f in info.files[3]] == [
        f"ds-r03-{s:05d}-of-00004.tfrecords" for s in range(4)]
    for res in (2, 3, 4):
        xa, ya = read_all(a, res, batch_size=5)
        xb, yb = read_all(b, res, batch_size=5)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xb.transpose(0, 3, 1, 2), nchw)
    x, _ = read_all(b, max_images=9)
    np.testing.assert_array_equal(x.transpose(0, 3, 1, 2), nchw[:9])
    # Batches do not stop at file boundaries (6 records per shard here).
    batches = list(reader.iterate_images(b, batch_size=10))
    assert [len(x) for x, _ in batches] == [10, 10, 3]
    assert [len(y) for _, y in batches] == [10, 10, 3]
    np.testing.assert_array_equal(batches[1][0].transpose(0, 3, 1, 2), nchw[10:20])
    np.testing.assert_array_equal(batches[1][1], labels[10:20])


def test_no_labels_gives_empty_label_rows(tmp_path):
    nchw, _ = indexed_images(6, c=1, r=8)
    path = write_reference_dataset(tmp_path, "nolab", nchw)
    info = reader.read_dataset_info(path)
    assert info.label_size == 0 and info.labels_path is None
    assert reader.load_labels(info).shape == (6, 0)
    x, y = next(iter(reader.make_dataset(path, 3, 4, shuffle_mb=0)))
    assert x.shape == (4, 8, 8, 1) and y.shape == (4, 0) and y.dtype == tf.float32


# ------------------------------------------------------------------------------ bad input

def _expect_error(path, match):
    with pytest.raises(reader.DatasetError, match=match):
        reader.read_dataset_info(str(path))


def test_rejects_missing_and_empty_directories(tmp_path):
    _expect_error(tmp_path / "nope", "not found: .*nope")
    (tmp_path / "empty").mkdir()
    _expect_error(tmp_path / "empty", "empty.*no \\*.tfrecords")


def test_rejects_missing_level(tmp_path):
    path = write_reference_dataset(tmp_path, "d", indexed_images(4)[0])
    os.remove(os.path.join(path, "d-r03.tfrecords"))
    _expect_error(path, "missing resolution levels r03")


def test_rejects_count_mismatch_between_levels_and_labels(tmp_path):
    nchw, labels = indexed_images(5)
    a = write_reference_dataset(tmp_path / "a", "d", nchw, labels)
    b = write_reference_dataset(tmp_path / "b", "d", nchw[:4], labels[:4])
    shutil.copy(os.path.join(b, "d-r03.tfrecords"), os.path.join(a, "d-r03.tfrecords"))
    _expect_error(a, "d-r03.tfrecords: level r03 holds 4 records but level r02 holds 5")
    c = write_reference_dataset(tmp_path / "c", "d", nchw, labels[:3])
    _expect_error(c, "d-rxx.labels: 3 label rows but 5 images")


def test_rejects_truncated_and_corrupt_records(tmp_path):
    nchw, labels = indexed_images(5)
    path = write_reference_dataset(tmp_path, "d", nchw, labels)
    top = os.path.join(path, "d-r04.tfrecords")
    raw = open(top, "rb").read()
    with open(top, "wb") as f:
        f.write(raw[:-10])
    _expect_error(path, "d-r04.tfrecords: truncated or corrupt record 4")
    # A flipped payload byte passes the header scan but fails the CRC on reading.
    with open(top, "wb") as f:
        f.write(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
    with pytest.raises(reader.DatasetError, match="d-r04.tfrecords: corrupt record"):
        read_all(path)


@pytest.mark.parametrize("how", ["length", "crc"])
def test_a_damaged_record_met_by_the_pipeline_is_named_by_file_and_index(tmp_path, how):
    """make_dataset's error (DecodeRaw's or the CRC's, which name no file) becomes the shard and the
    record's index in it, also when every shard has a record at the failing byte offset."""
    from run_fixtures import damage_record

    nchw, labels = indexed_images(8)
    path = write_reference_dataset(tmp_path, "d", nchw, labels, shards=2)
    damaged = os.path.join(path, "d-r03-00001-of-00002.tfrecords")
    start = damage_record(damaged, 2, how)
    info = reader.read_dataset_info(path)
    with pytest.raises(tf.errors.OpError) as caught:
        for _ in reader.make_dataset(info, 3, 4, shuffle_mb=1, seed=0, repeat=False):
            pass
    message = reader.describe_read_error(info, 3, caught.value)
    assert message.startswith(f"dataset {path}, level r03 (8x8): d-r03-00001-of-00002.tfrecords: corrupt record 2")
    if how == "crc":
        assert f"corrupt record 2 at byte {start} " in message
    else:
        assert "189 data bytes for shape [3, 8, 8] (the level's images are [3, 8, 8], 192 bytes)" in message
    with pytest.raises(reader.DatasetError, match=r"d-r03-00001-of-00002.tfrecords: corrupt record 2\b"):
        read_all(path, 3)


def test_rejects_wrong_shapes_names_and_shards(tmp_path):
    nchw, _ = indexed_images(3)
    path = write_reference_dataset(tmp_path / "a", "d", nchw)
    os.rename(os.path.join(path, "d-r04.tfrecords"), os.path.join(path, "d-r05.tfrecords"))
    os.rename(os.path.join(path, "d-r03.tfrecords"), os.path.join(path, "d-r04.tfrecords"))
    _expect_error(path, "missing resolution levels r03")
    path = write_reference_dataset(tmp_path / "b", "d", nchw, shards=3)
    os.remove(os.path.join(path, "d-r03-00001-of-00003.tfrecords"))
    _expect_error(path, "level r03 has an incomplete or inconsistent set of shards")
    path = write_reference_dataset(tmp_path / "c", "d", nchw)
    open(os.path.join(path, "junk.tfrecords"), "wb").close()
    _expect_error(path, "junk.tfrecords: unexpected file name")


# ------------------------------------------------------------------------------ tf.data

def test_make_dataset_every_level_shapes_dtypes_and_label_pairing(tmp_path):
    nchw, labels = indexed_images(40, c=3, r=16)
    path = write_reference_dataset(tmp_path, "d", nchw, labels, shards=3)
    for res in (2, 3, 4):
        ds = reader.make_dataset(path, res, 8, shuffle_mb=1, seed=1)
        seen = []
        for x, y in ds.take(15):  # 3 epochs' worth, crossing the repeat boundary
            assert x.shape == (8, 2 ** res, 2 ** res, 3) and x.dtype == tf.uint8
            assert y.shape == (8, 2) and y.dtype == tf.float32
            x, y = x.numpy(), y.numpy()
            # image i is constant i, label row is [i, 2i]
            np.testing.assert_array_equal(x.reshape(8, -1).min(1), x.reshape(8, -1).max(1))
            np.testing.assert_array_equal(x[:, 0, 0, 0], y[:, 0])
            np.testing.assert_array_equal(2 * y[:, 0], y[:, 1])
            seen.extend(y[:, 0].astype(int))
        assert sorted(seen[:40]) == list(range(40))  # the first epoch is a permutation
        assert seen[:40] != list(range(40))  # ... and shuffled


def test_make_dataset_without_shuffle_is_file_order(tmp_path):
    rng = np.random.RandomState(1)
    nchw = rng.randint(0, 256, (13, 1, 8, 8)).astype(np.uint8)
    labels = rng.rand(13, 3).astype(np.float32)
    path = write_reference_dataset(tmp_path, "d", nchw, labels, shards=2)
    ds = reader.make_dataset(path, 3, 5, shuffle_mb=0, repeat=False, drop_remainder=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    assert [len(x) for x in xs] == [5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(xs).transpose(0, 3, 1, 2), nchw)
    np.testing.assert_array_equal(np.concatenate(ys), labels)
    ds = reader.make_dataset(path, 2, 5, shuffle_mb=0, repeat=False)  # drop_remainder
    assert [x.shape[0] for x, _ in ds] == [5, 5]


@pytest.mark.parametrize("shards", [4, 1])  # by file (4 files >= 2 pipelines) / by record
def test_make_dataset_input_context_sharding(tmp_path, shards):
    nchw, labels = indexed_images(24, c=1, r=8)
    path = write_reference_dataset(tmp_path, "d", nchw, labels, shards=shards)
    got = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                         num_replicas_in_sync=4)
        ds = reader.make_dataset(path, 3, 8, shuffle_mb=0, repeat=False, input_context=ctx)
        batches = [y.numpy()[:, 0].astype(int) for _, y in ds]
        assert all(len(b) == 2 for b in batches)  # global 8 / 4 replicas
        got.append(np.concatenate(batches))
    assert sorted(np.concatenate(got)) == list(range(24))
    if shards == 1:
        np.testing.assert_array_equal(got[0], np.arange(0, 24, 2))
    else:  # 6 records per file; pipeline 0 reads files 0 and 2
        np.testing.assert_array_equal(got[0], np.r_[0:6, 12:18])


def test_shuffle_buffer_and_level_errors(tmp_path):
    path = write_reference_dataset(tmp_path, "d", indexed_images(4)[0])
    with pytest.raises(reader.DatasetError, match="no level r05"):
        reader.make_dataset(path, 5, 2)
    with pytest.raises(reader.DatasetError, match="no level r01"):
        list(reader.iterate_images(path, 1))


# ------------------------------------------------------------------------------ transforms

def test_to_float_is_linear_to_minus_one_one():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    y = reader.to_float(x).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64) / 127.5 - 1.0, atol=1e-6)
    assert y.min() == -1.0 and y.max() == 1.0


def _np_fade(x, frac):
    n, h, w, c = x.shape
    y = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    y = y.repeat(2, axis=1).repeat(2, axis=2)
    return x + (y - x) * frac


def test_fade_lod_matches_numpy():
    rng = np.random.RandomState(2)
    x = rng.uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
    for frac in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(reader.fade_lod(x, frac).numpy(), _np_fade(x, frac), atol=1e-6)
    np.testing.assert_array_equal(reader.fade_lod(x, 0.0).numpy(), x)
    frac = tf.Variable(0.75)
    np.testing.assert_allclose(tf.function(reader.fade_lod)(x, frac).numpy(), _np_fade(x, 0.75),
                               atol=1e-6)
    u = rng.randint(0, 256, (2, 4, 4, 1)).astype(np.uint8)
    np.testing.assert_allclose(reader.fade_lod(u, 0.5).numpy(),
                               _np_fade(u.astype(np.float64), 0.5), atol=1e-4)


def test_mirror_flips_where_the_stateless_draw_is_below_half():
    x = np.random.RandomState(3).randint(0, 256, (64, 4, 6, 3)).astype(np.uint8)
    seed = tf.constant([7, 11], tf.int64)
    y = reader.mirror(x, seed, 64).numpy()
    draws = tf.random.stateless_uniform([64], seed).numpy()
    np.testing.assert_array_equal(y, np.where(draws[:, None, None, None] < 0.5, x[:, :, ::-1], x))
    assert y.dtype == np.uint8 and 10 < (draws < 0.5).sum() < 54
    # Replica k of 4 holds rows k::4 of the global batch and flips exactly those rows.
    for k in range(4):
        np.testing.assert_array_equal(reader.mirror(x[k::4], seed, 64, tf.range(k, 64, 4)).numpy(),
                                      y[k::4])


def test_stage_input_skips_on_resume_and_reshuffles_beyond_the_limit(tmp_path):
    nchw, labels = indexed_images(40, r=8)
    info = reader.read_dataset_info(write_reference_dataset(str(tmp_path), "d", nchw, labels))
    logged = []

    def batches(skip_images, max_resume_skip=None, n=3):
        it = reader.stage_input(info, 3, 4, tf.distribute.get_strategy(), seed=5, shuffle_mb=1,
                                skip_images=skip_images, max_resume_skip=max_resume_skip,
                                log=logged.append)
        return [next(it)[1].numpy()[:, 0].tolist() for _ in range(n)]

    uninterrupted = batches(0, n=5)
    assert batches(8, max_resume_skip=8) == uninterrupted[2:]  # the same images as without a stop
    assert not logged
    reshuffled = batches(8, max_resume_skip=4)
    assert reshuffled != uninterrupted[2:]
    assert logged == ["Resuming mid-stage after 8 images: reshuffling instead of skipping "
                      "(dataset.max_resume_skip=4)"]
    # The stream of a stage is seeded seed + res_log2 (levels 2 and 3 hold the same images here).
    other_stage = reader.stage_input(info, 2, 4, tf.distribute.get_strategy(), seed=6, shuffle_mb=1)
    assert next(other_stage)[1].numpy()[:, 0].tolist() == uninterrupted[0]


def test_file_names_round_trip():
    assert fileformat.tfrecord_file_name("ds", 5) == "ds-r05.tfrecords"
    assert fileformat.tfrecord_file_name("ds", 10, 2, 8) == "ds-r10-00002-of-00008.tfrecords"
    assert fileformat.parse_tfrecord_name("/x/ds-r05.tfrecords") == ("ds", 5, 0, 1)
    assert fileformat.parse_tfrecord_name("a-b-r10-00002-of-00008.tfrecords") == ("a-b", 10, 2, 8)
    assert fileformat.parse_tfrecord_name("ds-r5.tfrecords") is None
    assert fileformat.labels_file_name("ds") == "ds-rxx.labels"

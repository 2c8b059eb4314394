"""Tiny trained runs shared by the export and generation tests (trained once per test session), and
damaging one record of a dataset file (for the corrupt-record tests)."""
import atexit
import os
import shutil
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST100 = os.path.join(REPO, "tests", "fixtures", "original-format", "fmnist100")

_RUNS = {}
_ROOT = []


def _root() -> str:
    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix="progan-export-tests-"))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


def tiny_run(conditional: bool) -> str:
    """A run directory trained for a few seconds on fmnist100 (32x32 grayscale, 10 labels).

    The unconditional run trains 0.8 kimg and so reaches 32x32 (lod 0); the
    conditional one stops at 0.4 kimg, while fading in 16x16 (lod 1.16).
    """
    if conditional not in _RUNS:
        from progan_tf.config import default_config
        from progan_tf.training import Trainer

        c = default_config()
        for k, v in {"G.fmap_base": 32, "G.fmap_max": 8, "D.fmap_base": 32, "D.fmap_max": 8,
                     "sched.lod_training_kimg": 0.1, "sched.lod_transition_kimg": 0.1, "sched.minibatch_base": 8,
                     "sched.minibatch_dict": {}, "sched.tick_kimg_base": 0.2, "sched.tick_kimg_dict": {},
                     "train.total_kimg": 0.4 if conditional else 0.8, "train.grid_size": (4, 2),
                     "dataset.shuffle_mb": 1}.items():
            group, field = k.split(".")
            c[group][field] = v
        c.dataset.use_labels = conditional
        run_dir = os.path.join(_root(), "conditional" if conditional else "unconditional")
        trainer = Trainer(c, FMNIST100, run_dir)
        try:
            trainer.run()
        finally:
            trainer.close()
        _RUNS[conditional] = run_dir
    return _RUNS[conditional]


def damage_record(path, index: int, how: str) -> int:
    """Damages record ``index`` of a TFRecord file in place; returns the record's start byte.

    ``how="length"``: its ``data`` loses 3 bytes (rewritten with valid CRCs, so only the
    data length no longer matches its ``shape``); ``how="crc"``: one payload byte is flipped
    (the framing is intact, the payload's CRC fails).
    """
    import tensorflow as tf

    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    start = sum(len(r) + 16 for r in records[:index])
    if how == "length":
        example = tf.train.Example.FromString(records[index])
        data = example.features.feature["data"].bytes_list.value
        data[0] = data[0][:-3]
        records[index] = example.SerializeToString()
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)
    elif how == "crc":
        raw = bytearray(open(path, "rb").read())
        raw[start + 12 + len(records[index]) // 2] ^= 0xFF
        with open(path, "wb") as f:
            f.write(bytes(raw))
    else:
        raise ValueError(how)
    return start

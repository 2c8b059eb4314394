"""Shared test set-up: quiet TensorFlow, fixed seeds, NumPy reference helpers."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402,F401  (imported after TF_CPP_MIN_LOG_LEVEL is set)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)   # NumPy, TF and Keras' initializers: tests don't depend on their order
    yield


@pytest.fixture
def count_reads(monkeypatch):
    """Records every call of ``progan_tf.datasets.reader.iterate_images`` (to show a cache was used instead)."""
    from progan_tf.datasets import reader as data

    calls = []
    original = data.iterate_images

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(data, "iterate_images", counting)
    return calls


def np_conv2d_same(x, w):
    """Reference stride-1 'SAME' convolution, NHWC input, HWIO kernel (odd kernel size)."""
    k = w.shape[0]
    p = k // 2
    xp = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
    n, h, wd, _ = x.shape
    out = np.zeros((n, h, wd, w.shape[3]), dtype=np.float64)
    for dy in range(k):
        for dx in range(k):
            out += np.einsum("nhwc,cd->nhwd", xp[:, dy:dy + h, dx:dx + wd, :], w[dy, dx])
    return out


def np_upscale(x, f=2):
    return x.repeat(f, axis=1).repeat(f, axis=2)


def np_downscale(x, f=2):
    n, h, w, c = x.shape
    return x.reshape(n, h // f, f, w // f, f, c).mean(axis=(2, 4))

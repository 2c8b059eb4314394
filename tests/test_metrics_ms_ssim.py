"""MS-SSIM against tf.image.ssim_multiscale where it applies, and against NumPy math for small images."""
import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from progan_tf.metrics import ms_ssim


def pair_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape).astype(np.float32)
    smooth = tf.nn.avg_pool2d(a, 3, 1, "SAME").numpy()  # structured images, not just noise
    b = np.clip(smooth + rng.normal(0, 20, shape), 0, 255).astype(np.float32)
    return smooth, b


def ref_ms_ssim(x, y, power_factors=ms_ssim.POWER_FACTORS, max_val=255.0):
    """Independent NumPy version (one image pair, [H, W, C]) with the small-scale filter rule."""
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    x, y = x.astype(np.float64), y.astype(np.float64)
    values = []
    for k in range(len(power_factors)):
        if k > 0:
            pads = [(0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0)]
            x, y = [np.pad(z, pads, mode="symmetric") for z in (x, y)]
            x, y = [z.reshape(z.shape[0] // 2, 2, z.shape[1] // 2, 2, -1).mean(axis=(1, 3)) for z in (x, y)]
        size = min(11, x.shape[0], x.shape[1])
        sigma = 1.5 * size / 11
        coords = np.arange(size) - (size - 1) / 2
        g = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma ** 2))
        g /= g.sum()
        ssim_c, cs_c = [], []
        for c in range(x.shape[2]):
            f = lambda z: scipy.signal.correlate2d(z, g, mode="valid")  # noqa: E731
            mx, my = f(x[..., c]), f(y[..., c])
            vx = f(x[..., c] ** 2) - mx ** 2
            vy = f(y[..., c] ** 2) - my ** 2
            cov = f(x[..., c] * y[..., c]) - mx * my
            cs = (2 * cov + c2) / (vx + vy + c2)
            lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            ssim_c.append(np.mean(lum * cs))
            cs_c.append(np.mean(cs))
        last = k == len(power_factors) - 1
        values.append(np.maximum(np.array(ssim_c if last else cs_c), 0))
    return np.mean(np.prod([v ** p for v, p in zip(values, power_factors)], axis=0))


@pytest.mark.parametrize("shape", [(3, 192, 192, 3), (2, 181, 177, 1)])
def test_equals_tf_ssim_multiscale_where_all_scales_fit(shape):
    a, b = pair_images(shape)
    expect = tf.image.ssim_multiscale(a, b, max_val=255.0).numpy()
    got = ms_ssim.ms_ssim_pairs(a, b)
    assert 0.05 < got.min() and got.max() < 0.99
    np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_single_scale_equals_tf_ssim():
    a, b = pair_images((4, 32, 32, 3), seed=1)
    got = ms_ssim.ms_ssim_pairs(a, b, power_factors=(1.0,))
    np.testing.assert_allclose(got, tf.image.ssim(a, b, max_val=255.0).numpy(), rtol=1e-5)


def test_tf_refuses_small_images_but_we_handle_them():
    a, b = pair_images((2, 32, 32, 3), seed=2)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.image.ssim_multiscale(a, b, max_val=255.0)
    assert ms_ssim.scale_filter(2, 2) == (2, pytest.approx(1.5 * 2 / 11))
    got = ms_ssim.ms_ssim_pairs(a, b)
    np.testing.assert_allclose(got, [ref_ms_ssim(a[i], b[i]) for i in range(2)], rtol=1e-4)


def test_numpy_reference_agrees_with_tf_on_large_images():
    # Checks the reference itself on a case tf.image can do.
    a, b = pair_images((1, 176, 176, 1), seed=3)
    expect = tf.image.ssim_multiscale(a, b, max_val=255.0).numpy()[0]
    assert ref_ms_ssim(a[0], b[0]) == pytest.approx(expect, rel=1e-4)


def test_identical_pairs_give_one():
    a, _ = pair_images((3, 32, 32, 1), seed=4)
    np.testing.assert_allclose(ms_ssim.ms_ssim_pairs(a, a), 1.0, rtol=1e-5)


def test_pairs_are_shuffled_within_position_blocks():
    images = np.random.default_rng(5).integers(0, 256, (21, 32, 32, 3), dtype=np.uint8)
    index = {images[i].tobytes(): i for i in range(21)}
    pairs = list(ms_ssim.random_pairs([images[:8], images[8:13], images[13:]], seed=3, block=6))
    used = [(index[f.tobytes()], index[s.tobytes()]) for p in pairs for f, s in zip(*p)]
    assert len(used) == 10  # blocks 6, 6, 6, 3: 3 + 3 + 3 + 1 pairs
    assert all(i // 6 == j // 6 for i, j in used)  # pairs never cross a block
    flat = [i for pair in used for i in pair]
    assert len(set(flat)) == 20 and len({18, 19, 20} - set(flat)) == 1  # one of the last block left out
    assert used != [(2 * k, 2 * k + 1) for k in range(10)]  # shuffled
    again = list(ms_ssim.random_pairs([images], seed=3, block=6))  # batching does not matter
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(pairs, again))


def test_set_value_is_mean_over_random_pairs():
    images = np.random.default_rng(5).integers(0, 256, (21, 32, 32, 3), dtype=np.uint8)
    batches = [images[:8], images[8:13], images[13:]]
    firsts, seconds = map(np.concatenate, zip(*ms_ssim.random_pairs(batches, seed=3)))
    assert len(firsts) == 10
    expect = np.mean([ref_ms_ssim(f, s) for f, s in zip(firsts, seconds)])
    got = ms_ssim.ms_ssim(batches, 21, seed=3, progress=None)
    assert got == pytest.approx(expect, rel=1e-4)
    assert got == pytest.approx(ms_ssim.ms_ssim([images[:5], images[5:]], 21, seed=3, progress=None), rel=1e-6)
    assert got != pytest.approx(ms_ssim.ms_ssim(batches, 21, seed=4, progress=None), rel=1e-9)


def test_block_size():
    assert ms_ssim.block_size((32, 32, 3)) == 256
    assert ms_ssim.block_size((1024, 1024, 3)) == 20
    assert ms_ssim.block_size((4096, 4096, 3)) == 2

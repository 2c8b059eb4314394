"""SWD against independent NumPy/SciPy math (a direct re-implementation of the original's steps)."""
import numpy as np
import pytest
import scipy.ndimage

from progan_tf.metrics import swd

FILTER_5X5 = np.float32([[1, 4, 6, 4, 1],
                         [4, 16, 24, 16, 4],
                         [6, 24, 36, 24, 6],
                         [4, 16, 24, 16, 4],
                         [1, 4, 6, 4, 1]]) / 256.0


# ----------------------------------------------------------------- reference (NCHW, like the original)

def ref_pyr_down(x):
    return scipy.ndimage.convolve(x, FILTER_5X5[None, None], mode="mirror")[:, :, ::2, ::2]


def ref_pyr_up(x):
    n, c, h, w = x.shape
    up = np.zeros((n, c, 2 * h, 2 * w), x.dtype)
    up[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(up, FILTER_5X5[None, None] * 4.0, mode="mirror")


def ref_pyramid(x_nchw, num_levels):
    pyr = [x_nchw.astype(np.float64)]
    for _ in range(1, num_levels):
        pyr.append(ref_pyr_down(pyr[-1]))
        pyr[-2] = pyr[-2] - ref_pyr_up(pyr[-1])
    return pyr


def ref_descriptors(level_nchw, xs, ys, k=128, h=3):
    """The original's ogrid gather, with given centres instead of np.random draws."""
    s = level_nchw.shape
    n = k * s[0]
    nhood, chan, x, y = np.ogrid[0:n, 0:3, -h:h + 1, -h:h + 1]
    img = nhood // k
    x = x + xs.reshape(n, 1, 1, 1)
    y = y + ys.reshape(n, 1, 1, 1)
    return level_nchw.flat[((img * s[1] + chan) * s[2] + y) * s[3] + x]


def ref_finalize(desc):
    desc = desc - np.mean(desc, axis=(0, 2, 3), keepdims=True)
    desc = desc / np.std(desc, axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def ref_sliced_wasserstein(a, b, directions):
    results = []
    for dirs in directions:
        pa = np.sort(a @ dirs, axis=0)
        pb = np.sort(b @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    return np.mean(results)


def ref_swd(images_a, images_b, positions, seed):
    """Original algorithm (float64 throughout) on uint8 NHWC images, given the centres."""
    levels = swd.pyramid_resolutions(images_a.shape[1])
    desc = []
    for images in (images_a, images_b):
        nchw = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
        pyr = ref_pyramid(nchw.transpose(0, 3, 1, 2), len(levels))
        desc.append([ref_finalize(ref_descriptors(lev, *positions[i])) for i, lev in enumerate(pyr)])
    dists = [ref_sliced_wasserstein(a, b, swd.draw_directions(seed, i).astype(np.float64)) * 1e3
             for i, (a, b) in enumerate(zip(*desc))]
    return dists + [np.mean(dists)]


def batches(images, size):
    return [images[i:i + size] for i in range(0, len(images), size)]


def swd_values(result):
    return list(result.values())  # finest level first, then the average


# ----------------------------------------------------------------- pyramid

def test_pyramid_resolutions():
    assert swd.pyramid_resolutions(32) == [32, 16]
    assert swd.pyramid_resolutions(128) == [128, 64, 32, 16]
    assert swd.pyramid_resolutions(16) == [16]
    assert swd.pyramid_resolutions(8) == []


@pytest.mark.parametrize("size", [16, 32])
def test_pyr_down_and_up_match_2d_mirror_convolution(size):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (3, size, size, 2)).astype(np.float32)
    expect_down = ref_pyr_down(x.transpose(0, 3, 1, 2).astype(np.float64)).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(swd.pyr_down(x), expect_down, rtol=1e-5, atol=1e-4)
    small = x[:, ::2, ::2]
    expect_up = ref_pyr_up(small.transpose(0, 3, 1, 2).astype(np.float64)).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(swd.pyr_up(small), expect_up, rtol=1e-5, atol=1e-4)


def test_mirror_border_does_not_repeat_edge_pixel():
    # g = [1,4,6,4,1]/16. With 'mirror' the taps at -1/-2 read pixels 1/2, so a
    # corner impulse reaches output (0,0) only through the centre tap: 256*g2*g2
    # = 36 ('reflect', which repeats the edge pixel, would give 256*(g1+g2)^2 = 100).
    x = np.zeros((1, 16, 16, 1), np.float32)
    x[0, 0, 0, 0] = 256.0
    assert swd.pyr_down(x)[0, 0, 0, 0] == pytest.approx(36.0)
    # An impulse at row 1 is read by taps -1 and +1: 256*(g1+g3)*g2 = 48.
    x[0, 0, 0, 0], x[0, 1, 0, 0] = 0.0, 256.0
    assert swd.pyr_down(x)[0, 0, 0, 0] == pytest.approx(48.0)


@pytest.mark.parametrize("size,channels", [(32, 3), (64, 1)])
def test_laplacian_pyramid_reconstructs_image(size, channels):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, size, size, channels), dtype=np.uint8)
    n = len(swd.pyramid_resolutions(size))
    pyr = swd.laplacian_pyramid(images, n)
    assert [p.shape[1] for p in pyr] == swd.pyramid_resolutions(size)
    assert all(p.dtype == np.float32 for p in pyr)
    np.testing.assert_allclose(swd.reconstruct_laplacian_pyramid(pyr), images, atol=2e-4)
    # Reconstruct with the independent 2-D reference filters too.
    rec = pyr[-1].transpose(0, 3, 1, 2).astype(np.float64)
    for level in pyr[-2::-1]:
        rec = ref_pyr_up(rec) + level.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(rec.transpose(0, 2, 3, 1), images, atol=2e-4)
    # And the levels equal the reference pyramid.
    ref = ref_pyramid(images.transpose(0, 3, 1, 2), n)
    for mine, theirs in zip(pyr, ref):
        np.testing.assert_allclose(mine, theirs.transpose(0, 2, 3, 1), atol=2e-4)


def test_laplacian_pyramid_does_not_modify_float_input():
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    keep = x.copy()
    swd.laplacian_pyramid(x, 2)
    np.testing.assert_array_equal(x, keep)


# ----------------------------------------------------------------- descriptors

def test_positions_range_and_determinism():
    xs, ys = swd.draw_positions(np.random.default_rng(0), 200, 16)
    assert xs.shape == ys.shape == (200, 128)
    for v in (xs, ys):
        assert v.min() == 3 and v.max() == 12  # [3, 16 - 3)
    xs2, _ = swd.draw_positions(np.random.default_rng(0), 200, 16)
    np.testing.assert_array_equal(xs, xs2)


@pytest.mark.parametrize("channels", [1, 3])
def test_extract_descriptors_picks_the_right_pixels(channels):
    rng = np.random.default_rng(3)
    level = rng.standard_normal((3, 20, 20, channels)).astype(np.float32)
    xs, ys = swd.draw_positions(rng, 3, 20, count=5)
    desc = swd.extract_descriptors(level, xs, ys)
    assert desc.shape == (channels * 49, 15)
    for j in range(15):
        img, x, y = j // 5, xs.ravel()[j], ys.ravel()[j]
        for c in range(channels):
            for dx in range(-3, 4):
                for dy in range(-3, 4):
                    row = c * 49 + (dx + 3) * 7 + (dy + 3)
                    assert desc[row, j] == level[img, y + dy, x + dx, c]
    if channels == 3:  # the original's component order (channel, x offset, y offset)
        ref = ref_descriptors(level.transpose(0, 3, 1, 2), xs, ys, k=5)
        np.testing.assert_array_equal(desc.T, ref.reshape(15, -1))


def test_channel_statistics_match_numpy():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    acc = swd.SWDDescriptors(40, 32, 3, seed=1)
    for b in batches(images, 16):
        acc.add(b)
    for level in acc.finalize():
        d = level.data.astype(np.float64).reshape(3, 49, -1)
        std = d.std(axis=(1, 2))
        np.testing.assert_allclose(level.mean, d.mean(axis=(1, 2)), rtol=0, atol=1e-7 * std.max())
        np.testing.assert_allclose(level.std, std, rtol=1e-7)


# ----------------------------------------------------------------- distance core

@pytest.mark.parametrize("channels", [1, 3])
def test_projection_weights_fold_normalisation_and_tiling(channels):
    rng = np.random.default_rng(5)
    mean = rng.uniform(-5, 100, channels)
    std = rng.uniform(0.5, 30, channels)
    level = swd.LevelDescriptors(16, np.zeros((channels * 49, 1), np.float32), mean, std)
    dirs = swd.draw_directions(0, 0)[0].astype(np.float64)
    w, bias = swd.projection_weights(dirs, level)
    x = rng.uniform(-50, 200, (channels, 49))
    normalised = (x - mean[:, None]) / std[:, None]
    tiled = np.repeat(normalised, 3 // channels, axis=0).ravel()
    np.testing.assert_allclose(w.astype(np.float64) @ x.ravel() - bias, tiled @ dirs, rtol=1e-5, atol=1e-5)


def test_directions_are_unit_and_seeded():
    d = swd.draw_directions(7, 1)
    assert d.shape == (4, 147, 128) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d, swd.draw_directions(7, 1))
    assert not np.array_equal(d, swd.draw_directions(7, 0))
    assert not np.array_equal(d, swd.draw_directions(8, 1))


def _identity_level(data):
    c = data.shape[0] // 49
    return swd.LevelDescriptors(16, data, np.zeros(c), np.ones(c))


@pytest.mark.parametrize("channels", [1, 3])
def test_shift_changes_distance_by_closed_form(channels):
    # With identity normalisation, shifting every descriptor by t*v moves each
    # sorted projection onto d by t*(v.d), so the distance is mean |t v.d|.
    rng = np.random.default_rng(6)
    a = rng.standard_normal((channels * 49, 3000)).astype(np.float32)
    v = rng.standard_normal(channels * 49)
    t = 0.7
    b = (a + t * v[:, None]).astype(np.float32)
    dirs = swd.draw_directions(3, 0, repeats=2, dirs_per_repeat=32)
    got = swd.sliced_wasserstein_levels([_identity_level(a)], [_identity_level(b)], [dirs], num_threads=2)[0]
    v_tiled = np.tile(v, 3 // channels)  # grayscale is 3 identical channels
    expect = np.mean(np.abs(t * np.einsum("f,rfk->rk", v_tiled, dirs.astype(np.float64))))
    assert got == pytest.approx(expect, rel=1e-5)


def test_one_dimensional_sorted_projection_distance():
    # Along one direction the distance is the 1-D Wasserstein-1 distance of the
    # projections: for samples of N(0,1) and N(0,1) shifted by mu it is |mu|,
    # and for N(0,1) vs N(0, s^2) it is |s-1| * E|Z| = |s-1| sqrt(2/pi).
    rng = np.random.default_rng(7)
    z = np.sort(rng.standard_normal(200_000))
    dirs = np.zeros((1, 147, 1), np.float32)
    dirs[0, 0, 0] = 1.0
    a = np.zeros((147, z.size), np.float32)
    a[0] = z
    b_shift = a.copy()
    b_shift[0] = rng.permutation(z + 0.3)
    b_scale = a.copy()
    b_scale[0] = 2.0 * rng.standard_normal(z.size)
    la = _identity_level(a)
    d_shift = swd.sliced_wasserstein_levels([la], [_identity_level(b_shift)], [dirs])[0]
    d_scale = swd.sliced_wasserstein_levels([la], [_identity_level(b_scale)], [dirs])[0]
    assert d_shift == pytest.approx(0.3, rel=1e-5)
    assert d_scale == pytest.approx(np.sqrt(2 / np.pi), rel=0.02)


def test_unequal_sets_are_refused():
    a = _identity_level(np.zeros((147, 10), np.float32))
    b = _identity_level(np.zeros((147, 12), np.float32))
    with pytest.raises(ValueError, match="equal sets"):
        swd.sliced_wasserstein_levels([a], [b], [swd.draw_directions(0, 0)])


# ----------------------------------------------------------------- end to end

def test_identical_sets_give_zero():
    images = np.random.default_rng(8).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    result = swd.swd(batches(images, 10), batches(images.copy(), 7), 24, seed=5)
    assert set(result) == {"SWDx1e3_32", "SWDx1e3_16", "SWDx1e3_avg"}
    # Same centres for the same image index; only summation order differs.
    assert all(abs(v) < 1e-9 for v in result.values()), result


@pytest.mark.parametrize("size,channels,count", [(32, 3, 48), (32, 1, 40), (64, 3, 16)])
def test_matches_original_algorithm(size, channels, count):
    rng = np.random.default_rng(9)
    a = rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8)
    noise = rng.integers(-60, 60, a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    acc = swd.SWDDescriptors(count, size, channels, seed=11)  # for the centres only
    expect = ref_swd(a, b, acc.positions, seed=11)
    got = swd_values(swd.swd(batches(a, 20), batches(b, 13), count, seed=11, num_threads=2))
    assert got[-1] > 1.0  # far from zero, so the comparison means something
    np.testing.assert_allclose(got, [expect[i] for i in range(len(expect))], rtol=2e-5)


def test_grayscale_equals_tiled_colour():
    gray = np.random.default_rng(10).integers(0, 256, (2, 16, 32, 32, 1), dtype=np.uint8)
    as_gray = swd.swd([gray[0]], [gray[1]], 16, seed=2)
    as_rgb = swd.swd([np.repeat(gray[0], 3, -1)], [np.repeat(gray[1], 3, -1)], 16, seed=2)
    for k in as_gray:
        assert as_gray[k] == pytest.approx(as_rgb[k], rel=1e-5)


def test_result_independent_of_batching_and_threads():
    rng = np.random.default_rng(12)
    a = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    r1 = swd.swd(batches(a, 30), batches(b, 30), 30, seed=4, num_threads=1)
    r2 = swd.swd(batches(a, 4), batches(b, 11), 30, seed=4, num_threads=2)
    for k in r1:
        assert r1[k] == pytest.approx(r2[k], rel=1e-6)
    r3 = swd.swd(batches(a, 30), batches(b, 30), 30, seed=5)
    assert r3["SWDx1e3_avg"] != r1["SWDx1e3_avg"]


def test_constant_images_give_finite_distance():
    # Blank images have all-zero detail levels (std 0); the original would divide by zero.
    blank = np.full((8, 32, 32, 1), 40, np.uint8)
    noise = np.random.default_rng(13).integers(0, 256, (8, 32, 32, 1), dtype=np.uint8)
    result = swd.swd([blank], [noise], 8)
    assert all(np.isfinite(v) and v > 0 for v in result.values())
    assert swd.swd([blank], [blank], 8)["SWDx1e3_avg"] == 0.0


def test_stream_shorter_than_requested_raises():
    images = np.zeros((5, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="ended after 5 of 8"):
        swd.compute_descriptors([images], 8, progress=None)


def test_too_small_images_raise():
    with pytest.raises(ValueError, match="at least 16"):
        swd.SWDDescriptors(4, 8, 3)

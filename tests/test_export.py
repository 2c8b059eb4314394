"""progan-export: a SavedModel that loads without the package and gives Gs's images."""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from progan_tf import export
from progan_tf.images import to_uint8
from progan_tf.snapshot import load_snapshot
from run_fixtures import tiny_run

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def _export(*argv) -> int:
    return export.cli(["progan-export", *map(str, argv)])


@pytest.fixture(scope="module")
def uncond(tmp_path_factory):
    """(run dir, export dir) of the unconditional tiny run at its full 32x32."""
    run_dir = tiny_run(conditional=False)
    out = tmp_path_factory.mktemp("export") / "uncond"
    assert _export(run_dir, out) == 0
    return run_dir, str(out)


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    run_dir = tiny_run(conditional=True)
    out = tmp_path_factory.mktemp("export") / "cond"
    assert _export(run_dir, out) == 0
    return run_dir, str(out)


# The child runs with -I -S (no site-packages processing, so the editable install's finder is
# never installed) and only TensorFlow's site-packages directory on its path.
CHILD = textwrap.dedent("""
    import sys
    sys.path.append(sys.argv[1])
    try:
        import progan_tf
        sys.exit("progan_tf is importable in the child")
    except ImportError:
        pass
    import json
    import numpy as np
    import tensorflow as tf
    export_dir, inputs, out = sys.argv[2], np.load(sys.argv[3]), sys.argv[4]
    first = tf.saved_model.load(export_dir)
    second = tf.saved_model.load(export_dir)
    sig = first.signatures
    seeds = tf.constant(inputs["seeds"])
    np.savez(out,
             latents=sig["serving_default"](latents=tf.constant(inputs["latents"]))["images"].numpy(),
             truncated_1=sig["serving_truncated"](latents=tf.constant(inputs["latents"]),
                                                  truncation_psi=tf.ones([len(inputs["latents"])]))["images"].numpy(),
             seeds_1=sig["generate_from_seeds"](seeds=seeds)["images"].numpy(),
             seeds_2=second.signatures["generate_from_seeds"](seeds=seeds)["images"].numpy(),
             seeds_reversed=sig["generate_from_seeds"](seeds=seeds[::-1])["images"].numpy(),
             psi_0=sig["generate_from_seeds_truncated"](seeds=seeds,
                                                        truncation_psi=tf.zeros([len(seeds)]))["images"].numpy(),
             empty=sig["serving_default"](latents=tf.zeros([0, inputs["latents"].shape[1]]))["images"].numpy(),
             empty_seeds=sig["generate_from_seeds"](seeds=tf.zeros([0], tf.int64))["images"].numpy())
    with open(first.progan_metadata.asset_path.numpy().decode()) as f:
        print(json.dumps({"signatures": sorted(sig), "metadata": json.load(f)}))
""")


@pytest.fixture(scope="module")
def child_results(uncond, tmp_path_factory):
    """Runs the export in a fresh interpreter that cannot import progan_tf; returns (arrays, info, inputs)."""
    tmp = tmp_path_factory.mktemp("child")
    latents = np.random.RandomState(1).randn(6, 8).astype(np.float32)
    seeds = np.array([0, 1, 2, 123456789012, 5], np.int64)
    np.savez(tmp / "inputs.npz", latents=latents, seeds=seeds)
    (tmp / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([sys.executable, "-I", "-S", str(tmp / "child.py"), sysconfig.get_paths()["purelib"],
                           uncond[1], str(tmp / "inputs.npz"), str(tmp / "out.npz")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(np.load(tmp / "out.npz")), info, {"latents": latents, "seeds": seeds}


def _gs_uint8(run_dir, latents, labels=None, res=None):
    Gs = load_snapshot(run_dir).Gs
    return to_uint8(Gs(tf.constant(latents), None if labels is None else tf.constant(labels), res=res).numpy())


def test_saved_model_matches_gs_in_a_process_without_the_package(uncond, child_results):
    arrays, info, inputs = child_results
    assert info["signatures"] == sorted(export.SIGNATURES)
    ref = _gs_uint8(uncond[0], inputs["latents"])
    got = arrays["latents"]
    assert got.dtype == np.uint8 and got.shape == (6, 32, 32, 1)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(arrays["truncated_1"], got)          # psi = 1 is the plain generator
    assert got.std() > 0                                         # not a constant image


def test_seeds_are_deterministic_and_per_row(uncond, child_results):
    arrays, _, inputs = child_results
    assert np.array_equal(arrays["seeds_1"], arrays["seeds_2"])                  # two loads
    assert np.array_equal(arrays["seeds_reversed"], arrays["seeds_1"][::-1])     # independent of the batch
    assert not np.array_equal(arrays["seeds_1"][0], arrays["seeds_1"][1])
    latents = export.seed_latents(tf.constant(inputs["seeds"]), 8).numpy()
    assert np.array_equal(latents[1], tf.random.stateless_normal([8], seed=[1, 0]).numpy())
    ref = _gs_uint8(uncond[0], latents)
    assert np.abs(arrays["seeds_1"].astype(int) - ref.astype(int)).max() <= 1


def test_truncation_zero_gives_the_average_image(child_results):
    psi_0 = child_results[0]["psi_0"]
    assert np.all(psi_0 == psi_0[:1])


def test_empty_batch(child_results):
    arrays = child_results[0]
    assert arrays["empty"].shape == (0, 32, 32, 1) and arrays["empty_seeds"].shape == (0, 32, 32, 1)


def test_metadata_asset(uncond, child_results):
    meta = child_results[1]["metadata"]
    assert meta == export.load_metadata(uncond[1])
    assert (meta["resolution"], meta["num_channels"], meta["latent_size"], meta["label_size"]) == (32, 1, 8, 0)
    assert meta["training"]["kimg"] == pytest.approx(load_snapshot(uncond[0]).kimg)
    assert meta["training"]["lod"] == pytest.approx(0.0)
    assert meta["generator_config"]["fmap_base"] == 32
    assert meta["signatures"]["generate_from_seeds"]["inputs"] == {"seeds": {"dtype": "int64", "shape": [-1]}}
    assert not [n for n in os.listdir(os.path.dirname(uncond[1])) if "incomplete" in n or ".old-" in n]


def test_signatures_reject_wrong_shapes_and_dtypes(uncond):
    sig = tf.saved_model.load(uncond[1]).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match="latents must have shape"):
        sig["serving_default"](latents=tf.zeros([2, 9]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="latents must have shape"):
        sig["serving_default"](latents=tf.zeros([8]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="latents must have shape"):
        sig["serving_default"](latents=tf.zeros([0, 9]))
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match="float"):
        sig["serving_default"](latents=tf.zeros([2, 8], tf.float64))
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match="int64"):
        sig["generate_from_seeds"](seeds=tf.zeros([2], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="seeds must have shape"):
        sig["generate_from_seeds"](seeds=tf.zeros([2, 2], tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncation_psi must have the same batch"):
        sig["generate_from_seeds_truncated"](seeds=tf.zeros([3], tf.int64), truncation_psi=tf.ones([2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncation_psi must be finite"):
        sig["serving_truncated"](latents=tf.zeros([1, 8]), truncation_psi=tf.constant([np.nan]))
    with pytest.raises(TypeError):
        sig["serving_default"](latents=tf.zeros([2, 8]), labels=tf.zeros([2, 10]))   # unconditional


def test_saved_model_cli_show_and_run(uncond, tmp_path):
    show = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", uncond[1]], capture_output=True, text=True,
                          timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    for name in export.SIGNATURES:
        assert f"signature_def['{name}']" in show.stdout
    assert "inputs['seeds'] tensor_info:\n        dtype: DT_INT64" in show.stdout
    assert "outputs['images'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, 32, 32, 1)" in show.stdout
    run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", uncond[1], "--tag_set", "serve", "--signature_def",
                          "generate_from_seeds", "--input_exprs", "seeds=[7, 8]",
                          "--outdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    images = np.load(tmp_path / "images.npy")
    latents = export.seed_latents(tf.constant([7, 8], tf.int64), 8).numpy()
    assert images.dtype == np.uint8 and images.shape == (2, 32, 32, 1)
    assert np.abs(images.astype(int) - _gs_uint8(uncond[0], latents).astype(int)).max() <= 1


def test_conditional_model(cond):
    run_dir, out = cond
    meta = export.load_metadata(out)
    # training stopped while fading in 16x16: the default is the resolution it had reached
    assert (meta["resolution"], meta["model_resolution"], meta["label_size"]) == (16, 32, 10)
    assert meta["training"]["lod"] == pytest.approx(1.16)
    sig = tf.saved_model.load(out).signatures
    assert set(sig["generate_from_seeds"].structured_input_signature[1]) == {"seeds", "labels"}
    latents = np.random.RandomState(2).randn(4, 8).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[[0, 3, 3, 9]]
    got = sig["serving_default"](latents=tf.constant(latents), labels=tf.constant(labels))["images"].numpy()
    assert got.shape == (4, 16, 16, 1)
    assert np.abs(got.astype(int) - _gs_uint8(run_dir, latents, labels, res=4).astype(int)).max() <= 1
    a = sig["generate_from_seeds"](seeds=tf.constant([5, 5], tf.int64), labels=tf.constant(labels[1:3]))["images"]
    b = sig["generate_from_seeds"](seeds=tf.constant([5, 5], tf.int64), labels=tf.constant(labels[:2]))["images"]
    assert np.array_equal(a[0], a[1]) and not np.array_equal(b[0], b[1])       # the label matters
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must have the same batch"):
        sig["serving_default"](latents=tf.constant(latents), labels=tf.constant(labels[:3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must have shape"):
        sig["serving_default"](latents=tf.constant(latents), labels=tf.zeros([4, 9]))


def test_export_chosen_resolution_and_label_names(cond, tmp_path):
    out = tmp_path / "r8"
    assert _export(cond[0], out, "--resolution=8", "--label_names=" + ",".join("abcdefghij")) == 0
    meta = export.load_metadata(str(out))
    assert meta["resolution"] == 8 and meta["label_names"] == list("abcdefghij")
    images = tf.saved_model.load(str(out)).signatures["generate_from_seeds"](
        seeds=tf.constant([1], tf.int64), labels=tf.one_hot([2], 10))["images"]
    assert images.shape == (1, 8, 8, 1)


def test_errors(cond, uncond, tmp_path, capsys):
    run_dir = cond[0]
    cases = [
        ((run_dir, uncond[1]), "exists (pass --overwrite"),
        ((tmp_path / "missing-run", tmp_path / "a"), "missing-run: no such run directory"),
        ((run_dir, tmp_path / "b", "--resolution=64"), "above the model's resolution 32"),
        ((run_dir, tmp_path / "c", "--resolution=32"), "training had only reached 16x16"),
        ((run_dir, tmp_path / "d", "--resolution=12"), "power of two"),
        ((run_dir, tmp_path / "e", "--label_names=a,b"), "has 2 names but the model has 10 labels"),
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases.append(((run_dir, blocker / "sub"), "cannot write"))
    not_a_model = tmp_path / "results"
    not_a_model.mkdir()
    (not_a_model / "keep.txt").write_text("precious")
    cases.append(((run_dir, not_a_model, "--overwrite"), "not a SavedModel; refusing"))
    (tmp_path / "bad-run" / "checkpoints").mkdir(parents=True)
    cases.append(((tmp_path / "bad-run", tmp_path / "f"), "no checkpoint"))
    for argv, message in cases:
        assert _export(*argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.startswith("progan-export: error: ") and len(err.splitlines()) == 1, err
    assert (not_a_model / "keep.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["a-file", "bad-run", "results"]     # nothing half-written


def test_incompatible_checkpoint(cond, uncond, tmp_path, capsys):
    """A checkpoint restored into another run's networks.json (conditional vs not) is refused."""
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(cond[0], mixed)
    shutil.copy(os.path.join(uncond[0], "networks.json"), mixed / "networks.json")
    assert _export(mixed, tmp_path / "out") == 1
    assert "cannot restore" in capsys.readouterr().err


def test_overwrite_replaces_an_export(cond, tmp_path):
    out = tmp_path / "model"
    assert _export(cond[0], out, "--resolution=4") == 0
    assert _export(cond[0], out, "--resolution=8", "--overwrite") == 0
    assert export.load_metadata(str(out))["resolution"] == 8
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_export_stores_each_used_weight_once(tmp_path):
    """An initialised Fashion-MNIST-sized generator: the variables file holds the weights used at 32x32, once."""
    from progan_tf.networks import Generator

    G = Generator(resolution=32, num_channels=1, label_size=10, fmap_base=512, fmap_max=128)
    out = export.export_generator(G, str(tmp_path / "fm"))
    unused = sum(int(np.prod(w.shape)) for r in range(2, 5) for w in G.to_rgb[r].weights)  # lower stages' toRGB
    expected = 4 * (G.count_params() - unused)
    data = [f for f in os.listdir(os.path.join(out, "variables")) if f.startswith("variables.data")]
    size = sum(os.path.getsize(os.path.join(out, "variables", f)) for f in data)
    assert expected <= size <= expected * 1.01 + 4096, (size, expected)
    meta = export.load_metadata(out)
    assert (meta["resolution"], meta["latent_size"], meta["label_size"], meta["training"]) == (32, 128, 10, {})


def test_a_bfloat16_generator_exports_with_float32_inputs_and_uint8_outputs(tmp_path):
    """--precision=trained keeps mixed_bfloat16 inside; the signatures stay float32 in, uint8 out."""
    from progan_tf.networks import Generator
    kwargs = dict(resolution=16, num_channels=3, fmap_base=64, fmap_max=32, latent_size=8)
    G = Generator(dtype="mixed_bfloat16", **kwargs)
    assert G.compute_dtype == "bfloat16"
    G32 = Generator(**kwargs)
    G32.set_weights(G.get_weights())
    latents = np.random.RandomState(3).randn(5, 8).astype(np.float32)
    images = {}
    for name, gen, precision in (("bf16", G, "trained"), ("f32", G32, "float32")):
        path = export.export_generator(gen, str(tmp_path / name), precision=precision)
        sig = tf.saved_model.load(path).signatures["serving_default"]
        assert sig.structured_input_signature[1]["latents"].dtype == tf.float32
        images[name] = sig(latents=tf.constant(latents))["images"].numpy()
        assert images[name].dtype == np.uint8 and images[name].shape == (5, 16, 16, 3)
    diff = np.abs(images["bf16"].astype(int) - images["f32"].astype(int))
    assert 0 < diff.max() <= 32 and diff.mean() < 2      # bfloat16 rounding (8 mantissa bits), not garbage

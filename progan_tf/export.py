"""``progan-export``: the EMA generator ``Gs`` of a run as a TensorFlow SavedModel for serving.

    progan-export results/00000-cpu-fashion-mnist exports/fmnist            # newest checkpoint
    progan-export results/00000-cpu-fashion-mnist/checkpoints/ckpt-400000 exports/fmnist-16 \\
        --resolution=16 --overwrite

The SavedModel needs only TensorFlow to load (``tf.saved_model.load``, TensorFlow
Serving, ``saved_model_cli``): the package's layers are traced into plain graphs.
Signatures (``L`` = label size; the ``labels`` input exists only for conditional
models), each returning ``{"images": uint8 [batch, H, W, C]}`` in [0, 255]:

- ``serving_default``: ``latents`` float32 [batch, latent_size] (+ ``labels`` float32 [batch, L]);
- ``serving_truncated``: the same plus ``truncation_psi`` float32 [batch];
- ``generate_from_seeds``: ``seeds`` int64 [batch] (+ ``labels``); seed ``s`` always gives the
  latent ``tf.random.stateless_normal([latent_size], seed=[s, 0])``, hence the same image;
- ``generate_from_seeds_truncated``: ``seeds`` plus ``truncation_psi`` float32 [batch].

Truncation: ProGAN pixel-normalises ``[latents, labels]`` at the generator's input,
so scaling ``latents`` themselves would change nothing. ``truncation_psi`` instead
scales the *normalised* latent towards the mean of its distribution (0):
``x_latent = psi * pixel_norm([z, y])_latent`` (labels untouched), i.e. the usual
``lerp(mean, x, psi)``; psi = 1 is the plain generator, psi = 0 its "average" image.
psi is per row (not a scalar) so that TensorFlow Serving's row format
(``{"instances": [...]}``), which batches every input, can carry it.

``assets/progan_metadata.json`` (a registered asset: ``loaded.progan_metadata.asset_path``)
holds the resolution, channels, latent and label sizes, label names, training kimg,
the generator and training configs and the signatures; :func:`load_metadata` reads it.
The export is written to a hidden temporary directory next to the output and
renamed into place when complete.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

from absl import flags, logging

from progan_tf import rundir, toolflags
from progan_tf.images import to_uint8_tensor

# TensorFlow, Keras and the package's modules built on them (networks, ema, snapshot) are imported
# inside the functions that use them: importing them takes seconds, and `progan-export --help`,
# argument errors and load_metadata (which needs no TensorFlow) should not wait for them.

FLAGS = flags.FlagValues()   # own flags: importing this next to other CLIs cannot clash
flags.DEFINE_integer("resolution", None, "Output resolution in pixels, a power of two from 4 up to the model's "
                     "resolution (default: the highest resolution training had reached at the checkpoint).",
                     flag_values=FLAGS)
flags.DEFINE_bool("allow_unreached", False, "Allow --resolution above what training had reached at the "
                  "checkpoint (those blocks are untrained).", flag_values=FLAGS)
flags.DEFINE_list("label_names", None, "Class names of a conditional model, in label order (default: the "
                  "known names of the training dataset, if any).", flag_values=FLAGS)
flags.DEFINE_enum("precision", "float32", ["float32", "trained"], "float32: export in float32 whatever the "
                  "training policy; trained: keep the generator's dtype policy (e.g. mixed_bfloat16).",
                  flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing export at the output path.", flag_values=FLAGS)

METADATA_FORMAT = "progan_tf.export/1"
SIGNATURES = ("serving_default", "serving_truncated", "generate_from_seeds", "generate_from_seeds_truncated")

# Class names of datasets whose label order is fixed by their source (dataset name -> names).
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
            "Ankle boot"]
KNOWN_LABEL_NAMES = {
    "fashion-mnist": _FASHION, "fashion_mnist": _FASHION,
    "mnist": [str(d) for d in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


class ExportError(ValueError):
    """A bad export request (missing run, unreachable resolution, unwritable output); the message says which."""


# --- the graph that gets exported -------------------------------------------------------------

def seed_latents(seeds, latent_size: int):
    """float32 [batch, latent_size]: row i is ``stateless_normal([latent_size], seed=[seeds[i], 0])``.

    Per-row seeding makes a seed's latent independent of the batch it is in.
    """
    import tensorflow as tf

    seeds = tf.cast(seeds, tf.int64)
    return tf.map_fn(lambda s: tf.random.stateless_normal([latent_size], seed=tf.stack([s, tf.zeros_like(s)])),
                     seeds, fn_output_signature=tf.TensorSpec([latent_size], tf.float32))


def _shape_check(x, tail: Sequence[int], name: str, batch=None):
    """``[(ok, message)]``: whether ``x`` is ``[batch] + tail`` (and finite) at run time.

    A signature checks the dtypes it is fed but not the shapes, and TensorFlow's
    graph optimiser trusts the declared static shape, so this compares run-time
    values: the element count and the trailing dimensions (and the batch size of
    the first input). An input of the wrong rank but with exactly the right element
    count (``[b, n, 1]`` for ``[b, n]``) may pass and then fail less clearly.
    """
    import tensorflow as tf

    shape = tf.shape(x)
    padded = tf.concat([shape, tf.ones([len(tail) + 1], tf.int32)], 0)
    ok = tf.equal(tf.size(x), shape[0] * int(math.prod(tail)))
    if tail:
        ok = tf.logical_and(ok, tf.reduce_all(tf.equal(padded[1:1 + len(tail)], tf.constant(list(tail), tf.int32))))
    want = "[batch" + "".join(f", {d}" for d in tail) + "]"
    checks = [(ok, [f"{name} must have shape {want}; got shape", shape])]
    if x.dtype.is_floating:
        checks.append((tf.reduce_all(tf.math.is_finite(tf.reshape(x, [-1]))), [f"{name} must be finite"]))
    if batch is not None:
        checks.append((tf.equal(shape[0], batch), [f"{name} must have the same batch size as the first input; got",
                                                   shape[0], "and", batch]))
    return checks


def _run_if_valid(checks, compute, empty):
    """``compute()`` when every check holds, else an error naming the failed check.

    The checks gate the computation through ``tf.cond`` (a data dependency), so a
    bad input never reaches the network, whatever the optimiser does with static shapes.
    """
    import tensorflow as tf

    ok = tf.reduce_all(tf.stack([c for c, _ in checks]))

    def fail():
        with tf.control_dependencies([tf.debugging.Assert(c, data) for c, data in checks]):
            return tf.identity(empty())

    return tf.cond(ok, compute, fail)


class ServingGenerator:
    """Gs at one resolution as uint8-image functions: what the SavedModel's signatures run.

    Holds a copy of the generator built with ``normalize_latents=False`` so that the
    latent normalisation (and truncation, which must come after it) happens here,
    then the same layers as ``Gs(latents, labels, res=res)``. ``progan-generate`` uses
    the same object for checkpoints, so a checkpoint and its export give the same images.
    """

    def __init__(self, Gs, res_log2: Optional[int] = None, precision: str = "float32"):
        from progan_tf.ema import clone_model   # imports Keras: see the note on imports at the top

        self.normalize_latents = bool(Gs.get_config().get("normalize_latents", True))
        self.G = clone_model(Gs, normalize_latents=False, **({"dtype": "float32"} if precision == "float32" else {}))
        self.res_log2 = self.G.check_res(res_log2)
        self.resolution = 2 ** self.res_log2
        self.latent_size, self.label_size = self.G.latent_size, self.G.label_size
        self.num_channels = self.G.num_channels
        self._fns = {}

    def images(self, latents, labels, psi):
        """uint8 [batch, H, W, C] from float latents, labels (or None) and per-row psi."""
        import tensorflow as tf

        def run():
            x = latents if labels is None else tf.concat([latents, labels], axis=1)
            if self.normalize_latents:
                x = self.G.pixel_norm(x)
            x = tf.concat([x[:, :self.latent_size] * tf.cast(psi[:, None], x.dtype), x[:, self.latent_size:]], 1)
            y = self.G(x[:, :self.latent_size], x[:, self.latent_size:] if labels is not None else None,
                       res=self.res_log2)
            return to_uint8_tensor(y)

        # oneDNN gives a conv on an empty batch the wrong channel count; an empty request gets an empty answer.
        return tf.cond(tf.shape(latents)[0] > 0, run, self.empty_images)

    def empty_images(self):
        import tensorflow as tf

        return tf.zeros([0, self.resolution, self.resolution, self.num_channels], tf.uint8)

    def input_specs(self, from_seeds: bool, truncated: bool):
        import tensorflow as tf

        specs = [tf.TensorSpec([None], tf.int64, name="seeds") if from_seeds
                 else tf.TensorSpec([None, self.latent_size], tf.float32, name="latents")]
        if truncated:
            specs.append(tf.TensorSpec([None], tf.float32, name="truncation_psi"))
        if self.label_size:
            specs.append(tf.TensorSpec([None, self.label_size], tf.float32, name="labels"))
        return specs

    def endpoint(self, from_seeds: bool, truncated: bool):
        """The Python function behind one signature; arguments in :meth:`input_specs` order."""
        import tensorflow as tf

        def fn(*args):
            args = list(args)
            first = args.pop(0)
            checks = _shape_check(first, [] if from_seeds else [self.latent_size], "seeds" if from_seeds else "latents")
            batch = tf.shape(first)[0]
            psi = args.pop(0) if truncated else None
            labels = args.pop(0) if self.label_size else None
            if truncated:
                checks += _shape_check(psi, [], "truncation_psi", batch)
            if self.label_size:
                checks += _shape_check(labels, [self.label_size], "labels", batch)

            def compute():
                latents = seed_latents(first, self.latent_size) if from_seeds else first
                return self.images(latents, labels, psi if truncated else tf.ones([batch], tf.float32))

            return {"images": _run_if_valid(checks, compute, self.empty_images)}

        return fn

    def signatures(self):
        """``{name: (fn, input specs)}`` for the four signatures."""
        out = {}
        for name in SIGNATURES:
            from_seeds, truncated = name.startswith("generate_from_seeds"), name.endswith("truncated")
            out[name] = (self.endpoint(from_seeds, truncated), self.input_specs(from_seeds, truncated))
        return out

    def function(self, name: str):
        """A traced ``tf.function`` of one signature (for in-process generation)."""
        import tensorflow as tf

        if name not in self._fns:
            fn, specs = self.signatures()[name]
            self._fns[name] = tf.function(fn, input_signature=specs, autograph=False)
        return self._fns[name]


# --- metadata ----------------------------------------------------------------------------------

def signature_metadata(gen: ServingGenerator) -> dict:
    out = {}
    for name, (_, specs) in gen.signatures().items():
        out[name] = {"inputs": {s.name: {"dtype": s.dtype.name, "shape": [-1 if d is None else d for d in s.shape]}
                                for s in specs},
                     "outputs": {"images": {"dtype": "uint8", "shape": [-1, gen.resolution, gen.resolution,
                                                                         gen.num_channels]}}}
    return out


def build_metadata(gen: ServingGenerator, label_names=None, training: Optional[dict] = None,
                   training_config: Optional[dict] = None) -> dict:
    """What a client needs to call the model, and where it came from."""
    import tensorflow as tf

    if label_names is not None and len(label_names) != gen.label_size:
        raise ExportError(f"--label_names has {len(label_names)} names but the model has {gen.label_size} labels")
    return {
        "format": METADATA_FORMAT,
        "resolution": gen.resolution,
        "model_resolution": gen.G.resolution,
        "num_channels": gen.num_channels,
        "latent_size": gen.latent_size,
        "label_size": gen.label_size,
        "label_names": list(label_names) if label_names is not None else None,
        "images": "uint8 NHWC in [0, 255]: rint(G(z) * 127.5 + 127.5) clipped",
        "seed_latents": "row i: tf.random.stateless_normal([latent_size], seed=[seeds[i], 0])",
        "truncation": "latent part of pixel_norm([latents, labels]) scaled by truncation_psi (lerp towards 0)",
        "signatures": signature_metadata(gen),
        "training": training or {},
        "generator_config": gen.G.get_config() | {"normalize_latents": gen.normalize_latents},
        "training_config": training_config,
        "exported": time.strftime("%Y-%m-%d %H:%M:%S"),
        "tensorflow": tf.__version__,
    }


def load_metadata(export_dir: str) -> dict:
    """The metadata JSON of an export (no TensorFlow needed)."""
    path = rundir.export_metadata_path(export_dir)
    try:
        return rundir.read_json(path)
    except (OSError, ValueError) as e:
        raise ExportError(f"{export_dir}: no readable progan-export metadata ({path}: {e})") from None


# --- writing -----------------------------------------------------------------------------------

def check_output(path: str, overwrite: bool) -> None:
    """Refuses an existing output (unless ``overwrite`` and it is a SavedModel or empty) or an unwritable parent."""
    path = os.path.abspath(path)
    if os.path.lexists(path):
        if not overwrite:
            raise ExportError(f"output {path} exists (pass --overwrite to replace it)")
        if not os.path.isdir(path) or (os.listdir(path) and not rundir.is_saved_model(path)):
            raise ExportError(f"output {path} exists and is not a SavedModel; refusing to replace it")
    parent = os.path.dirname(path)
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"output {path}: cannot write in {probe}")


def _replace_dir(tmp: str, path: str) -> None:
    """Moves the finished ``tmp`` to ``path``; an existing export is removed only after the move."""
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
        os.rename(path, os.path.join(old, "export"))
    os.rename(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def write_saved_model(gen: ServingGenerator, output_dir: str, metadata: dict, overwrite: bool = False) -> str:
    """Writes the SavedModel (signatures + metadata asset) atomically; returns the output path."""
    import keras
    import tensorflow as tf

    output_dir = os.path.abspath(output_dir)
    check_output(output_dir, overwrite)
    parent = os.path.dirname(output_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.incomplete-", dir=parent)
    except OSError as e:
        raise ExportError(f"output {output_dir}: cannot write in {parent} ({e.strerror})") from None
    try:
        meta_path = os.path.join(work, rundir.EXPORT_METADATA_FILE)
        rundir.write_json(meta_path, metadata, default=str)
        # Not archive.track(gen.G): the endpoints' captured variables are saved anyway, and tracking
        # the Keras variables as well would store every weight twice (and unused stages too).
        archive = keras.export.ExportArchive()
        for name, (fn, specs) in gen.signatures().items():
            archive.add_endpoint(name, fn, input_signature=specs)
        # A registered asset is copied into assets/ and reachable as loaded.progan_metadata.
        # ExportArchive has no public hook for assets, so it is attached to the object it saves.
        archive._tf_trackable.progan_metadata = tf.saved_model.Asset(meta_path)
        saved = os.path.join(work, "saved_model")
        archive.write_out(saved, verbose=False)
        _replace_dir(saved, output_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output_dir


def export_generator(Gs, output_dir: str, res_log2: Optional[int] = None, label_names=None,
                     training: Optional[dict] = None, training_config: Optional[dict] = None,
                     overwrite: bool = False, precision: str = "float32") -> str:
    """Exports a :class:`~progan_tf.networks.Generator` (trained or not) at stage ``res_log2``."""
    gen = ServingGenerator(Gs, res_log2, precision)
    metadata = build_metadata(gen, label_names, training, training_config)
    return write_saved_model(gen, output_dir, metadata, overwrite)


# --- from a run --------------------------------------------------------------------------------

def choose_resolution(G, lod: Optional[float], resolution: Optional[int], allow_unreached: bool) -> int:
    """``res_log2`` to export: the requested resolution, checked, or the highest one training reached."""
    from progan_tf.networks import resolution_log2

    reached = G.resolution_log2 - int(math.floor(lod)) if lod is not None else G.resolution_log2
    if resolution is None:
        if reached < G.resolution_log2:
            logging.warning("training had reached %dx%d (lod %.2f) of the %dx%d model at this checkpoint; using "
                            "%dx%d", 2 ** reached, 2 ** reached, lod, G.resolution, G.resolution, 2 ** reached,
                            2 ** reached)
        return reached
    try:
        res = resolution_log2(resolution)
    except ValueError as e:
        raise ExportError(f"--resolution: {e}") from None
    if res > G.resolution_log2:
        raise ExportError(f"--resolution={resolution} is above the model's resolution {G.resolution}")
    if res > reached and not allow_unreached:
        raise ExportError(f"--resolution={resolution}: training had only reached {2 ** reached}x{2 ** reached} "
                          f"(lod {lod:.2f}) at this checkpoint (pass --allow_unreached to export untrained blocks)")
    return res


def _training_config(run_dir: str) -> Optional[dict]:
    """The run's config.json (None when it has none or it is unreadable)."""
    try:
        return rundir.read_json(os.path.join(run_dir, rundir.CONFIG_FILE))
    except (OSError, ValueError):
        return None


def training_info(snapshot, lod: Optional[float]) -> dict:
    return {"kimg": snapshot.kimg, "nimg": snapshot.nimg, "lod": lod,
            "checkpoint": os.path.abspath(snapshot.checkpoint), "run_dir": os.path.abspath(snapshot.run_dir),
            "dataset": snapshot.networks.get("dataset")}


def default_label_names(snapshot, label_size: int):
    names = KNOWN_LABEL_NAMES.get(str(snapshot.networks.get("dataset", "")).lower())
    return names if names is not None and len(names) == label_size and label_size else None


def export_run(path: str, output_dir: str, resolution: Optional[int] = None, allow_unreached: bool = False,
               label_names=None, overwrite: bool = False, precision: str = "float32") -> tuple[str, dict]:
    """Exports the Gs of a run directory or checkpoint; returns ``(output path, metadata)``."""
    from progan_tf.snapshot import SnapshotError, load_snapshot

    check_output(output_dir, overwrite)   # before the (slow) load
    try:
        snapshot = load_snapshot(path)
    except SnapshotError as e:
        raise ExportError(str(e)) from None
    lod = rundir.checkpoint_info(snapshot.checkpoint).lod
    res = choose_resolution(snapshot.Gs, lod, resolution, allow_unreached)
    names = label_names if label_names is not None else default_label_names(snapshot, snapshot.Gs.label_size)
    gen = ServingGenerator(snapshot.Gs, res, precision)
    metadata = build_metadata(gen, names, training_info(snapshot, lod),
                              _training_config(snapshot.run_dir))
    return write_saved_model(gen, output_dir, metadata, overwrite), metadata


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


# --- command line ------------------------------------------------------------------------------

def quiet_tensorflow() -> None:
    """Hides TensorFlow's INFO chatter about tracing and saving unless --verbosity was given."""
    if not (flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present):
        logging.set_verbosity(logging.WARNING)


def main(argv) -> int:
    if len(argv) != 3:
        print("progan-export: error: usage: progan-export <run dir | checkpoint> <output dir> [--resolution=N] "
              "[--overwrite]", file=sys.stderr)
        return 2
    _, source, output = argv
    quiet_tensorflow()
    try:
        out, meta = export_run(source, output, FLAGS.resolution, FLAGS.allow_unreached, FLAGS.label_names,
                               FLAGS.overwrite, FLAGS.precision)
    except ExportError as e:
        print(f"progan-export: error: {e}", file=sys.stderr)
        return 1
    labels = f", {meta['label_size']} labels" if meta["label_size"] else ""
    print(f"Exported {meta['resolution']}x{meta['resolution']}x{meta['num_channels']} generator (latent "
          f"{meta['latent_size']}{labels}, {meta['training'].get('kimg', 0):.1f} kimg) to {out} "
          f"({dir_size(out) / 2 ** 20:.1f} MiB); signatures: {', '.join(SIGNATURES)}")
    return 0



def cli(argv) -> int:
    """Parses ``argv`` from the flag defaults and runs ``main`` (for tests and embedding)."""
    return toolflags.run_cli("progan-export", FLAGS, main, argv)


def run():
    """Console-script entry point (``progan-export``)."""
    toolflags.run_app("progan-export", FLAGS, main, toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

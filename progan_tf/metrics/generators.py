"""Image sources for the evaluated side: trained generators from checkpoints, run directories and SavedModels.

A *target* is what ``progan-metrics`` is pointed at: a run directory (every
checkpoint, oldest first, as the original's ``evaluate_metrics``), one
checkpoint prefix, or an exported SavedModel (signature ``serving_default``:
``latents`` [+ ``labels``] -> ``{"images": uint8 NHWC}``).

Fakes are seeded: latents come from ``default_rng([seed, 0])`` and label rows
(conditional models) from ``default_rng([seed, 1])`` drawing rows of the
dataset's labels, so every checkpoint of a run is evaluated on the same
latents and labels, and the images do not depend on the batch size.
"""
import dataclasses
import os
from typing import Iterator, List, Optional

import numpy as np
from absl import logging

from progan_tf import rundir
from progan_tf.images import to_uint8
from progan_tf.metrics import streams


class TargetError(ValueError):
    """A run directory, checkpoint or SavedModel that cannot be evaluated; the message names it."""


class DamagedTargetError(TargetError):
    """A checkpoint whose files are damaged or unreadable (a run's other checkpoints may still load)."""


def generation_batch_size(resolution: int, batch_size: int) -> int:
    """The original's ``clip(8192 // resolution, 4, 256)``, capped at `batch_size`: bounds generator memory."""
    return max(1, min(int(batch_size), int(np.clip(8192 // max(1, resolution), 4, 256))))


# --------------------------------------------------------------------------- seeded inputs

class SeededInputs:
    """Latents and label rows for fakes, identical for every evaluation with the same seed."""

    def __init__(self, latent_size: int, seed: int, label_pool: Optional[np.ndarray] = None):
        self.latent_size = int(latent_size)
        self.seed = int(seed)
        self.label_pool = label_pool if label_pool is not None and label_pool.shape[1] else None

    def batches(self, num_images: int, batch_size: int) -> Iterator[tuple]:
        """Yields ``(latents float32 [b, latent_size], labels float32 [b, L] or None)``."""
        latent_rng = np.random.default_rng([self.seed, 0])
        label_rng = np.random.default_rng([self.seed, 1])
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            latents = latent_rng.standard_normal((n, self.latent_size), dtype=np.float32)
            labels = None
            if self.label_pool is not None:
                labels = self.label_pool[label_rng.integers(0, len(self.label_pool), n)]
            yield latents, labels


def label_pool_for(label_size: int, dataset_dir: str, what: str) -> Optional[np.ndarray]:
    """The dataset's label rows for a model with `label_size` labels (None when unconditional)."""
    if not label_size:
        return None
    from progan_tf.datasets import reader as data

    labels = data.load_labels(dataset_dir)
    if labels.shape[1] < label_size:
        raise TargetError(f"{what} is conditional with {label_size} labels but dataset {dataset_dir} has "
                          f"{labels.shape[1]} label columns")
    return np.ascontiguousarray(labels[:, :label_size], dtype=np.float32)


# --------------------------------------------------------------------------- generators

@dataclasses.dataclass
class GeneratorSpec:
    """What a model generates; checked against the dataset before anything is evaluated."""
    name: str
    resolution: int
    channels: int
    latent_size: int
    label_size: int


def check_generator_fits_dataset(spec: GeneratorSpec, dataset_dir: str, resolution: Optional[int] = None) -> None:
    """Raises TargetError unless the model generates images of the dataset level compared against."""
    from progan_tf.datasets import reader as data

    info = data.read_dataset_info(dataset_dir)
    res = resolution or info.resolution
    if (spec.resolution, spec.channels) != (res, info.channels):
        hint = "give the model's own dataset with --dataset_dir"
        if spec.channels == info.channels and spec.resolution in [2 ** level for level in info.levels]:
            hint = f"compare at its level with --resolution={spec.resolution}"
        raise TargetError(f"{spec.name} generates {spec.resolution}x{spec.resolution}x{spec.channels} images but "
                          f"dataset {dataset_dir} is compared at {res}x{res}x{info.channels}; {hint}")


def keras_generate_fn(G, seed: int, label_pool: Optional[np.ndarray] = None) -> streams.GenerateFn:
    """``generate(num_images, batch_size)`` over a `progan_tf.networks.Generator` at its full resolution.

    Anything with ``latent_size``, ``label_size``, ``resolution`` and
    ``__call__(latents, labels)`` -> float NHWC in ~[-1, 1] works.
    """
    import tensorflow as tf

    inputs = SeededInputs(G.latent_size, seed, label_pool if G.label_size else None)
    if G.label_size and inputs.label_pool is None:
        raise TargetError(f"{getattr(G, 'name', 'the generator')} is conditional: labels are needed")
    if hasattr(G, "trainable_variables"):  # a Keras model: trace once per batch shape
        run = tf.function(lambda z, y: G(z, y), reduce_retracing=True)
    else:
        run = G  # a plain callable, e.g. a stand-in in tests

    def generate(num_images: int, batch_size: int):
        size = generation_batch_size(G.resolution, batch_size)
        for latents, labels in inputs.batches(num_images, size):
            n = len(latents)
            if n < size and run is not G:   # a short last batch is padded: one trace per generator, not two
                latents, labels = _pad_rows(latents, size), None if labels is None else _pad_rows(labels, size)
            yield to_uint8(run(latents, labels)[:n])
    return generate


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    return np.pad(array, [(0, rows - len(array))] + [(0, 0)] * (array.ndim - 1))


def saved_model_generate_fn(path: str, seed: int, dataset_dir: str):
    """``(GeneratorSpec, generate)`` for an exported SavedModel, called through ``serving_default``."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise TargetError(f"{path}: cannot load the SavedModel ({str(e).splitlines()[0]})") from None
    fn = loaded.signatures.get("serving_default")
    if fn is None:
        raise TargetError(f"{path}: the SavedModel has no serving_default signature")
    specs = fn.structured_input_signature[1]
    if "latents" not in specs or "images" not in fn.structured_outputs:
        raise TargetError(f"{path}: serving_default must map 'latents' (+ 'labels') to 'images'; it has inputs "
                          f"{sorted(specs)} and outputs {sorted(fn.structured_outputs)}")
    latent_size = specs["latents"].shape[-1]
    label_size = specs["labels"].shape[-1] if "labels" in specs else 0
    if latent_size is None or label_size is None:
        raise TargetError(f"{path}: serving_default leaves the latent or label size open")
    pool = label_pool_for(label_size, dataset_dir, f"SavedModel {path}")
    inputs = SeededInputs(latent_size, seed, pool)

    def run(latents, labels):
        kwargs = {"latents": tf.constant(latents)}
        if label_size:
            kwargs["labels"] = tf.constant(labels)
        images = fn(**kwargs)["images"].numpy()
        if images.dtype != np.uint8:
            raise TargetError(f"{path}: serving_default must return uint8 images, got {images.dtype}")
        return images

    probe = run(*next(inputs.batches(1, 1)))  # the signature may leave H, W, C open
    spec = GeneratorSpec(path, probe.shape[1], probe.shape[3], latent_size, label_size)

    def generate(num_images: int, batch_size: int):
        for latents, labels in inputs.batches(num_images, generation_batch_size(spec.resolution, batch_size)):
            yield run(latents, labels)
    return spec, generate


# --------------------------------------------------------------------------- targets

@dataclasses.dataclass
class Target:
    """One thing to evaluate: a checkpoint or a SavedModel."""
    kind: str                     # "checkpoint" or "saved_model"
    path: str                     # checkpoint prefix or SavedModel directory
    name: str                     # row label in metric-<name>.txt
    nimg: Optional[int] = None    # images shown (checkpoints)

    @property
    def kimg(self) -> Optional[float]:
        return None if self.nimg is None else self.nimg / 1000.0


def saved_model_training_info(path: str) -> dict:
    """The ``training`` entry of a progan-export's ``assets/progan_metadata.json`` ({} when absent)."""
    try:
        training = rundir.read_json(rundir.export_metadata_path(path)).get("training") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return training if isinstance(training, dict) else {}


def list_checkpoints(run_dir: str) -> List[Target]:
    """Every ``checkpoints/ckpt-<nimg>`` of a run, by images shown (oldest first)."""
    return [checkpoint_target(prefix) for prefix in rundir.list_checkpoints(run_dir)]


def checkpoint_target(prefix: str) -> Target:
    return Target("checkpoint", prefix, os.path.basename(prefix), rundir.checkpoint_nimg(prefix))


def resolve_targets(path: str):
    """``(targets, run_dir or None)`` for a run directory, its checkpoints/, a checkpoint or a SavedModel."""
    path = os.path.normpath(path)
    if os.path.isdir(path) and rundir.is_saved_model(path):
        nimg = saved_model_training_info(path).get("nimg")
        return [Target("saved_model", path, os.path.basename(path), int(nimg) if nimg is not None else None)], None
    if os.path.isdir(path):
        run_dir = rundir.run_dir_of(path)
        targets = list_checkpoints(run_dir)
        if not targets:
            raise TargetError(f"{path}: no checkpoints/ckpt-*.index and no saved_model.pb: not a run directory "
                              "or SavedModel")
        return targets, run_dir
    if rundir.checkpoint_exists(path):
        return [checkpoint_target(path)], rundir.run_dir_of(path)
    raise TargetError(f"{path}: no such run directory, checkpoint or SavedModel")


def default_dataset_dir(targets: List[Target], run_dir: Optional[str]) -> Optional[str]:
    """The training dataset of a run (its run.json), or of the run a progan-export SavedModel came from."""
    if run_dir is None and targets and targets[0].kind == "saved_model":
        run_dir = saved_model_training_info(targets[0].path).get("run_dir")
        if not run_dir or not os.path.isdir(run_dir):
            return None
    return run_dataset_dir(run_dir)


def run_dataset_dir(run_dir: Optional[str]) -> Optional[str]:
    """The training dataset recorded in ``<run_dir>/run.json`` (None when there is none)."""
    if run_dir is None:
        return None
    path = os.path.join(run_dir, rundir.RUN_INFO_FILE)
    try:
        return rundir.read_run_info(run_dir).get("dataset_dir")
    except (OSError, ValueError) as e:
        raise TargetError(f"{path}: cannot read the run information ({e})") from None


def load_target(target: Target, seed: int, dataset_dir: str, resolution: Optional[int] = None):
    """``(GeneratorSpec, generate)`` for a target, checked against the dataset (fills in a checkpoint's nimg)."""
    if target.kind == "saved_model":
        spec, generate = saved_model_generate_fn(target.path, seed, dataset_dir)
    else:
        from progan_tf.snapshot import DamagedSnapshotError, SnapshotError, load_snapshot

        try:
            snap = load_snapshot(target.path)
        except DamagedSnapshotError as e:
            raise DamagedTargetError(str(e)) from None
        except SnapshotError as e:
            raise TargetError(str(e)) from None
        if target.nimg is None:  # a prefix not named ckpt-<nimg>: the checkpoint knows
            target.nimg = snap.nimg
        G = snap.Gs
        spec = GeneratorSpec(target.path, G.resolution, G.num_channels, G.latent_size, G.label_size)
        check_generator_fits_dataset(spec, dataset_dir, resolution)
        generate = keras_generate_fn(G, seed, label_pool_for(G.label_size, dataset_dir, f"checkpoint {target.path}"))
        logging.info("loaded %s (kimg %.1f)", target.path, snap.kimg)
        return spec, generate
    check_generator_fits_dataset(spec, dataset_dir, resolution)
    return spec, generate


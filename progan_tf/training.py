"""The ProGAN training loop (SPEC.md section 4), after the original's ``train_progressive_gan``.

One ``Trainer`` owns the networks (G, D and the moving average Gs), the two
Adam optimizers, the training state and the run directory. Training proceeds
in iterations of ``D_repeats`` D steps and one G step; the schedule (lod,
minibatch, learning rates) is re-evaluated every ``minibatch_repeats``
iterations; progress is reported per tick. Each stage (working resolution)
has its own pair of compiled step functions computing only that stage's
blocks; the fade-in alpha is a tensor argument, so a stage traces once.

Determinism: every random draw of a step (latents, gradient-penalty mixing,
mirror flips, fake labels) comes from stateless RNG seeded by the config's
seed and the iteration counter, drawn for the whole global batch and sliced
per replica. A run resumed from a checkpoint, or split over several replicas,
therefore draws exactly what one uninterrupted single-device run draws.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import tempfile
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from progan_tf.datasets import reader as data_lib
from progan_tf import images as images_lib
from progan_tf import rundir
from progan_tf.config import complete_saved_config
from progan_tf.ema import clone_model, update_ema
from progan_tf.losses import make_loss
from progan_tf.metrics.evaluate import ExtractorOptions
from progan_tf.metrics.fid import ExtractorError
from progan_tf.metrics.runs import PeriodicMetrics
from progan_tf.networks import Discriminator, Generator, resolution_log2
from progan_tf.precision import resolve_jit, resolve_precision
from progan_tf.schedule import Schedule, new_block_started, training_schedule

SKIPPED_PREFIX = "Skipped/"     # step statistics: 1 when that step's update was skipped

# Purposes of the stateless random streams (the first seed word is config.seed + purpose).
_RNG_D_LATENTS, _RNG_MIXING, _RNG_MIRROR, _RNG_G_LATENTS, _RNG_G_LABELS = range(5)


class TrainingError(RuntimeError):
    """A problem that stops training with a clear message (bad input, non-finite values)."""


class Interrupted(Exception):
    """Training stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, checkpoint: Optional[str]):
        super().__init__(f"stopped by signal {signum}; checkpoint {checkpoint}")
        self.signum, self.checkpoint = signum, checkpoint


def _network_kwargs(config, info: data_lib.DatasetInfo, label_size: int):
    common = dict(resolution=info.resolution, num_channels=info.channels, label_size=label_size)
    g = dict(config.G)
    g["latent_size"] = g["latent_size"] or None
    return {**common, **g}, {**common, **dict(config.D)}


def check_dataset_fits_config(config, info: data_lib.DatasetInfo) -> None:
    """Errors (before any training) when the dataset cannot feed the configured networks."""
    want_res, want_ch = config.dataset.resolution, config.dataset.num_channels
    if want_res and want_res != info.resolution:
        raise TrainingError(f"dataset {info.path} is {info.resolution}x{info.resolution} but the config "
                            f"says dataset.resolution={want_res}")
    if want_ch and want_ch != info.channels:
        raise TrainingError(f"dataset {info.path} has {info.channels} channel(s) but the config says "
                            f"dataset.num_channels={want_ch}")
    try:
        resolution_log2(info.resolution)
    except ValueError as e:
        raise TrainingError(f"dataset {info.path}: {e}") from None
    if 2 ** int(math.floor(math.log2(config.sched.lod_initial_resolution))) > info.resolution:
        raise TrainingError(f"sched.lod_initial_resolution={config.sched.lod_initial_resolution} is above the "
                            f"dataset's resolution {info.resolution}")


@dataclasses.dataclass
class TickStats:
    """Running means of the step statistics over one tick, and the updates skipped in it.

    ``Skipped/D`` and ``Skipped/G`` are 1 for a step whose update was skipped for
    non-finite gradients; they are summed, not averaged. Non-finite values of the other
    statistics (a skipped step's losses) are left out of the means.
    """
    sums: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=lambda: {"D": 0, "G": 0})
    updates: dict = dataclasses.field(default_factory=lambda: {"D": 0, "G": 0})

    def add(self, values: dict):
        for key, value in values.items():
            value = float(value)
            if key.startswith(SKIPPED_PREFIX):
                net = key[len(SKIPPED_PREFIX):]
                self.updates[net] += 1
                self.skipped[net] += int(round(value))
            elif math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    @property
    def all_skipped(self) -> bool:
        """Whether the tick had updates and every one of them was skipped."""
        total = sum(self.updates.values())
        return total > 0 and sum(self.skipped.values()) == total

    def means(self) -> dict:
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        means.update({f"{SKIPPED_PREFIX}{net}": float(n) for net, n in self.skipped.items()})
        return means


class Trainer:
    """Trains one ProGAN run. ``run()`` executes the loop until ``train.total_kimg``."""

    def __init__(self, config, dataset_dir: str, run_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                 resume_from: Optional[str] = None):
        self.config = complete_saved_config(config)
        self.run_dir = run_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.num_workers, self.is_chief = worker_role(self.strategy)
        # Only the chief writes into the run directory; other workers still take part in
        # checkpoint saves (MultiWorkerMirroredStrategy needs every worker) but write to a scratch dir.
        self.write_dir = run_dir if self.is_chief else tempfile.mkdtemp(prefix="progan-worker-")
        self.info = data_lib.read_dataset_info(dataset_dir)
        check_dataset_fits_config(config, self.info)
        try:
            self.loss = make_loss(config.loss)
        except ValueError as e:
            raise TrainingError(f"config loss: {e}") from None
        self.labels = data_lib.load_labels(self.info) if config.dataset.use_labels else np.zeros(
            (self.info.num_images, 0), np.float32)
        self.label_size = int(self.labels.shape[1])
        os.makedirs(self.write_dir, exist_ok=True)
        self._log_file = open(os.path.join(self.write_dir, rundir.LOG_FILE), "a", encoding="utf-8")
        self._build_models()
        self._build_checkpoint()
        self._write_network_configs()
        self.restored_from = self._restore(resume_from) if resume_from else None
        self._step_fns = {}
        self._gs_fns = {}
        self._stop_signal = None
        self._summary_writer = (tf.summary.create_file_writer(run_dir) if self.is_chief
                                else tf.summary.create_noop_writer())
        self._metrics = self._periodic_metrics(dataset_dir) if config.train.metrics and self.is_chief else None

    # --- set-up ---------------------------------------------------------------------------

    def _periodic_metrics(self, dataset_dir: str):
        """``train.metrics`` every ``train.metrics_ticks`` ticks; bad settings fail here, before training."""
        c = self.config.train
        if int(c.metrics_ticks) < 1:
            raise TrainingError(f"config train.metrics_ticks must be >= 1 with train.metrics={c.metrics!r}")
        for field in ("metrics_feature_extractor", "metrics_inception_weights"):
            path = c.get(field) or ""
            if path and path != "imagenet" and not os.path.exists(path):
                raise TrainingError(f"config train.{field}: not found: {path}")
        options = ExtractorOptions(inception_weights=c.get("metrics_inception_weights") or "imagenet",
                                   feature_extractor=c.get("metrics_feature_extractor") or None,
                                   extractor_output=c.get("metrics_extractor_output") or None)
        try:
            return PeriodicMetrics(dataset_dir, c.metrics, int(c.metrics_num_images), self.run_dir,
                                   extractor_options=options, summary_writer=self._summary_writer)
        except (ValueError, ExtractorError) as e:
            raise TrainingError(f"config train.metrics: {e}") from None

    def _build_models(self):
        g_kwargs, d_kwargs = _network_kwargs(self.config, self.info, self.label_size)
        c = self.config
        try:
            self.precision, why = resolve_precision(c.train.precision)
            self.jit_compile, jit_why = resolve_jit(c.train.jit_compile)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self._log(f"Precision {self.precision} ({why}); XLA {'on' if self.jit_compile else 'off'} ({jit_why})")
        if self.precision == "mixed_float16" and g_kwargs["pixelnorm_epsilon"] < 1e-4:
            g_kwargs["pixelnorm_epsilon"] = 1e-4   # the original's float16 setting: 1e-8 underflows
        keras.utils.set_random_seed(c.seed)   # the initial weights follow the config's seed
        with self.strategy.scope():
            self.G = Generator(**g_kwargs, dtype=self.precision, name="G")
            self.D = Discriminator(**d_kwargs, dtype=self.precision, name="D")
            # Gs (what is shown, evaluated and exported) computes in float32 whatever G does.
            self.Gs = clone_model(self.G, dtype="float32", name="Gs")
            # The checkpoint holds the plain Adam optimizers, so a run can resume in another precision;
            # float16 steps go through a dynamic loss-scale wrapper around them (its scale is not saved).
            self.G_adam = keras.optimizers.Adam(learning_rate=c.sched.G_lrate_base, **dict(c.G_opt), name="G_opt")
            self.D_adam = keras.optimizers.Adam(learning_rate=c.sched.D_lrate_base, **dict(c.D_opt), name="D_opt")
            self.loss_scaling = self.precision == "mixed_float16"
            wrap = keras.optimizers.LossScaleOptimizer if self.loss_scaling else (lambda opt: opt)
            self.G_opt, self.D_opt = wrap(self.G_adam), wrap(self.D_adam)
            # Built over every stage's variables up front (SPEC.md section 7).
            self.G_opt.build(self.G.trainable_variables)
            self.D_opt.build(self.D.trainable_variables)
            self.nimg = tf.Variable(0, dtype=tf.int64, trainable=False, name="nimg")
            self.tick = tf.Variable(0, dtype=tf.int64, trainable=False, name="tick")
            self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
            self.stage_start_nimg = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage_start_nimg")
            self.stage_res = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage_res")
            self.prev_lod = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="prev_lod")
        self.latent_size = self.G.latent_size

    def _write_network_configs(self):
        """``networks.json``: what rebuilds G/Gs and D from a checkpoint without the dataset."""
        content = {"G": {**self.G.get_config(), "dtype": "float32"}, "D": {**self.D.get_config(), "dtype": "float32"},
                   "dataset": self.info.name, "precision": self.precision,
                   "resolution": self.info.resolution, "num_channels": self.info.channels,
                   "label_size": self.label_size}
        rundir.write_json(os.path.join(self.write_dir, rundir.NETWORKS_FILE), content)

    def _build_checkpoint(self):
        self.checkpoint = tf.train.Checkpoint(
            G=self.G, D=self.D, Gs=self.Gs, G_opt=self.G_adam, D_opt=self.D_adam, nimg=self.nimg,
            tick=self.tick, iteration=self.iteration, stage_start_nimg=self.stage_start_nimg,
            stage_res=self.stage_res, prev_lod=self.prev_lod)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, rundir.checkpoint_dir(self.write_dir), checkpoint_name=rundir.CHECKPOINT_NAME,
            max_to_keep=max(1, int(self.config.train.keep_checkpoints)))

    def _restore(self, path: str) -> str:
        """Restores from a run directory (its latest checkpoint) or a checkpoint prefix."""
        try:
            prefix = rundir.resolve_checkpoint(path).checkpoint
        except rundir.RunDirError as e:
            raise TrainingError(f"--resume: {e}") from None
        try:
            self.checkpoint.read(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TrainingError(f"cannot restore checkpoint {prefix}: {first} (is it from another "
                                f"config or dataset?)") from None
        self._log(f"Resumed from {prefix} at kimg {int(self.nimg.numpy()) / 1000:.1f}")
        return prefix

    # --- helpers ----------------------------------------------------------------------------

    def _log(self, message: str):
        logging.info(message)
        if getattr(self, "_log_file", None):
            self._log_file.write(message + "\n")
            self._log_file.flush()

    def schedule(self, nimg: Optional[int] = None) -> Schedule:
        nimg = int(self.nimg.numpy()) if nimg is None else nimg
        return training_schedule(nimg, self.info.resolution_log2, self.config.sched, self.num_replicas)

    def _seed(self, purpose: int, iteration):
        return tf.stack([tf.cast(self.config.seed + purpose, tf.int64), tf.cast(iteration, tf.int64)])

    def _replica_indices(self, local_batch: int):
        """Global indices of this replica's samples: replica k holds ``k, k+R, k+2R, ...``."""
        ctx = tf.distribute.get_replica_context()
        return tf.cast(ctx.replica_id_in_sync_group, tf.int32) + self.num_replicas * tf.range(local_batch)

    def ema_beta(self, minibatch: int) -> float:
        """Gs's smoothing per D step: ``train.G_smoothing`` (the original's fixed 0.999), or, with
        ``train.G_smoothing_kimg`` > 0, a half-life of that many kimg whatever the minibatch."""
        half_life = self.config.train.G_smoothing_kimg
        if half_life > 0:
            return 0.5 ** (minibatch / (half_life * 1000.0))
        return float(self.config.train.G_smoothing)

    def _reset_optimizers(self):
        for opt in (self.G_adam, self.D_adam):
            for v in opt.variables:
                if v.name != "learning_rate":
                    v.assign(tf.zeros(v.shape, v.dtype))

    def _set_learning_rates(self, sched: Schedule):
        self.G_adam.learning_rate.assign(sched.G_lrate)
        self.D_adam.learning_rate.assign(sched.D_lrate)

    # --- the compiled steps ---------------------------------------------------------------

    def _make_steps(self, res: int, minibatch: int):
        """The stage's D step (+ Gs update) and G step, as ``tf.function``s."""
        c, R = self.config, self.num_replicas
        local = minibatch // R
        D_vars, G_vars = self.D.active_variables(res), self.G.active_variables(res)
        wants_mixing = "mixing_factors" in self.loss.d_inputs
        scales_penalty = self.loss_scaling and "loss_scale" in self.loss.d_inputs
        all_labels = tf.constant(self.labels)

        def d_replica(reals, labels, alpha, iteration):
            idx = self._replica_indices(local)
            x = data_lib.to_float(reals)
            if c.train.mirror_augment:
                x = data_lib.mirror(x, self._seed(_RNG_MIRROR, iteration), minibatch, idx)
            if res > 2:
                x = data_lib.fade_lod(x, 1.0 - alpha)
            z = tf.gather(tf.random.stateless_normal([minibatch, self.latent_size],
                                                     self._seed(_RNG_D_LATENTS, iteration)), idx)
            extra = {}
            if wants_mixing:
                extra["mixing_factors"] = tf.gather(
                    tf.random.stateless_uniform([minibatch], self._seed(_RNG_MIXING, iteration)), idx)
            if scales_penalty:
                extra["loss_scale"] = self.D_opt.dynamic_scale
            labels = labels if self.label_size else None
            loss, stats, skipped = self._minimize(self.D_opt, D_vars, minibatch, lambda: self.loss.d_loss(
                self.G, self.D, z, x, labels, res=res, alpha=alpha, **extra))
            return {**_sums({"Loss/D": loss, **{f"Loss/{k}": v for k, v in stats.items()}}, minibatch),
                    f"{SKIPPED_PREFIX}D": skipped / R}

        def g_replica(alpha, iteration):
            idx = self._replica_indices(local)
            z = tf.gather(tf.random.stateless_normal([minibatch, self.latent_size],
                                                     self._seed(_RNG_G_LATENTS, iteration)), idx)
            fake_labels = None
            if self.label_size:
                picks = tf.random.stateless_uniform([minibatch], self._seed(_RNG_G_LABELS, iteration),
                                                    maxval=self.info.num_images, dtype=tf.int32)
                fake_labels = tf.gather(all_labels, tf.gather(picks, idx))
            loss, stats, skipped = self._minimize(self.G_opt, G_vars, minibatch, lambda: self.loss.g_loss(
                self.G, self.D, z, fake_labels, res=res, alpha=alpha))
            return {**_sums({"Loss/G": loss, **{f"Loss/G_{k}": v for k, v in stats.items()}}, minibatch),
                    f"{SKIPPED_PREFIX}G": skipped / R}

        strategy = self.strategy
        if self.jit_compile and R > 1:   # XLA compiles the per-replica work; the all-reduce stays outside
            d_replica, g_replica = (tf.function(f, jit_compile=True) for f in (d_replica, g_replica))
        outer_jit = self.jit_compile and R == 1

        @tf.function(jit_compile=outer_jit)
        def d_step(reals, labels, alpha, iteration, ema_beta):
            sums = strategy.run(d_replica, args=(reals, labels, alpha, iteration))
            update_ema(self.Gs, self.G, ema_beta)
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

        @tf.function(jit_compile=outer_jit)
        def g_step(alpha, iteration):
            sums = strategy.run(g_replica, args=(alpha, iteration))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}

        return d_step, g_step

    def _minimize(self, optimizer, variables, global_batch: int, loss_fn):
        """One optimizer step on this replica's share of ``loss_fn()``'s per-sample losses.

        The sum is divided by the *global* batch (Keras optimizers sum gradients over replicas).
        As the original does, the update is skipped when any gradient of any replica is not
        finite (docs/method.md, "Non-finite gradients"); under float16 the loss is scaled and
        the loss-scale optimizer unscales, skips the same steps and lowers its scale.
        Returns ``(per-sample loss, stats, 1.0 if the update was skipped else 0.0)``.
        """
        with tf.GradientTape() as tape:
            loss, stats = loss_fn()
            total = tf.reduce_sum(loss) / global_batch
            if self.loss_scaling:
                total = optimizer.scale_loss(total)
        grads = tape.gradient(total, variables)
        finite = all_replicas_finite(grads)
        if self.loss_scaling:
            optimizer.apply(grads, variables)
        else:
            apply_if(finite, optimizer, grads, variables)
        return loss, stats, 1.0 - tf.cast(finite, tf.float32)

    def step_functions(self, res: int, minibatch: int):
        key = (res, minibatch)
        if key not in self._step_fns:
            self._step_fns[key] = self._make_steps(res, minibatch)
        return self._step_fns[key]

    def _stage_dataset(self, sched: Schedule, skip_images: int):
        """The stage's input stream: replica k gets ``x[k::R]`` (see ``datasets.reader.stage_input``)."""
        d = self.config.dataset
        return data_lib.stage_input(self.info, sched.res, sched.minibatch, self.strategy, seed=self.config.seed,
                                    shuffle_mb=d.shuffle_mb, skip_images=skip_images,
                                    max_resume_skip=d.max_resume_skip, num_workers=self.num_workers, log=self._log)

    def _all_agree_to_stop(self, local_stop: bool) -> bool:
        """Whether any worker wants to stop (signal or time limit): all must stop at the same step."""
        if self.num_workers == 1:
            return local_stop
        if not hasattr(self, "_stop_fn"):
            strategy = self.strategy

            @tf.function
            def any_stop(flag):
                per_replica = strategy.run(lambda: tf.identity(flag))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self._stop_fn = any_stop
        return bool(self._stop_fn(tf.constant(1.0 if local_stop else 0.0)).numpy() > 0)

    # --- snapshots --------------------------------------------------------------------------

    def _grid_inputs(self):
        gw, gh = self.config.train.grid_size
        n = int(gw) * int(gh)
        reals, labels = next(data_lib.iterate_images(self.info, None, batch_size=n, max_images=n))
        latents = np.random.RandomState(self.config.seed).randn(n, self.latent_size).astype(np.float32)
        labels = labels[:, :self.label_size] if self.label_size else None
        return reals, latents, labels

    def _generate_grid_images(self, sched: Schedule, latents, labels) -> np.ndarray:
        res = sched.res
        if res not in self._gs_fns:
            self._gs_fns[res] = tf.function(lambda z, y, a: self.Gs(z, y, res=res, alpha=a))
        out = []
        for i in range(0, len(latents), 64):
            y = None if labels is None else tf.constant(labels[i:i + 64])
            out.append(self._gs_fns[res](tf.constant(latents[i:i + 64]), y,
                                         tf.constant(sched.alpha, tf.float32)).numpy())
        fakes = np.concatenate(out)
        factor = self.info.resolution // sched.resolution
        if factor > 1:
            fakes = fakes.repeat(factor, axis=1).repeat(factor, axis=2)
        return fakes

    def save_fakes(self, sched: Schedule) -> Optional[str]:
        if not self.is_chief:
            return None
        fakes = self._generate_grid_images(sched, self._grid_latents, self._grid_labels)
        path = os.path.join(self.run_dir, rundir.fakes_file(int(self.nimg.numpy()) // 1000))
        images_lib.save_image_grid(path, fakes, self.config.train.grid_size)
        with self._summary_writer.as_default(step=int(self.nimg.numpy()) // 1000):
            grid = images_lib.image_grid(images_lib.to_uint8(fakes), self.config.train.grid_size)
            tf.summary.image("fakes", grid[None], max_outputs=1)
        return path

    def _weights_finite(self) -> bool:
        for v in self.G.weights + self.D.weights + self.Gs.weights:
            if not np.isfinite(v.numpy()).all():
                return False
        return True

    def save_checkpoint(self) -> str:
        if not self._weights_finite():
            raise TrainingError(f"non-finite weights at kimg {int(self.nimg.numpy()) / 1000:.1f}; not "
                                f"writing a checkpoint. Last good checkpoint: {self.manager.latest_checkpoint}")
        prefix = self.manager.save(checkpoint_number=int(self.nimg.numpy()))
        stage_res = int(self.stage_res.numpy())   # 0 before the first iteration
        rundir.write_checkpoint_info(prefix, rundir.CheckpointInfo(
            int(self.nimg.numpy()), self._prev_lod(), 2 ** stage_res if stage_res else None))
        rundir.prune_checkpoint_info(self.manager.directory)
        return prefix

    # --- the loop ---------------------------------------------------------------------------

    def _install_signal_handlers(self):
        def handler(signum, frame):
            if self._stop_signal is not None:   # second signal: give up at once
                raise KeyboardInterrupt
            self._stop_signal = signum
            logging.warning("signal %d received: writing a checkpoint and stopping", signum)
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:   # not the main thread
                pass
        return previous

    def _check_progress(self, stats: TickStats, tick: int, kimg: float):
        """Stops when every update of a tick was skipped for non-finite gradients: training is stuck."""
        if stats.all_skipped:
            raise TrainingError(
                f"every update of tick {tick} (to kimg {kimg:.1f}) was skipped: the gradients were not finite; "
                f"stopping. Last good checkpoint: {self.manager.latest_checkpoint or 'none yet'}")

    def run(self) -> dict:
        c = self.config
        total_nimg = int(round(c.train.total_kimg * 1000))
        self._grid_reals, self._grid_latents, self._grid_labels = self._grid_inputs()
        reals_path = os.path.join(self.run_dir, rundir.REALS_FILE)
        if self.is_chief and not os.path.exists(reals_path):
            images_lib.save_image_grid(reals_path, self._grid_reals, c.train.grid_size)
        previous_handlers = self._install_signal_handlers()
        try:
            return self._loop(total_nimg)
        finally:
            for sig, h in previous_handlers.items():
                signal.signal(sig, h)
            self._summary_writer.flush()

    def _loop(self, total_nimg: int) -> dict:
        c = self.config
        start_time = time.time()
        tick_start_time = maintenance_start = start_time
        tick_start_nimg = int(self.nimg.numpy())
        deadline = start_time + c.train.max_time_minutes * 60 if c.train.max_time_minutes > 0 else None
        stage_key, iterator, stats, pending = None, None, TickStats(), []
        last_checkpoint = self.manager.latest_checkpoint
        sched = self.schedule()
        progress = _progress_bar(total_nimg, int(self.nimg.numpy()))
        stop_reason = "done"
        self._log(f"Training {self.info.name} {self.info.resolution}x{self.info.resolution}x{self.info.channels}"
                  f" ({self.info.num_images} images, {self.label_size} labels) on {self.num_replicas} replica(s)"
                  f" until {total_nimg / 1000:g} kimg")
        while int(self.nimg.numpy()) < total_nimg:
            nimg = int(self.nimg.numpy())
            sched = self.schedule(nimg)
            if c.train.reset_opt_for_new_lod and new_block_started(sched.lod, self._prev_lod()):
                self._reset_optimizers()
            self.prev_lod.assign(sched.lod)
            self._set_learning_rates(sched)
            if stage_key != (sched.res, sched.minibatch):
                if int(self.stage_res.numpy()) != sched.res:   # a new stage (not a resumed one)
                    self.stage_start_nimg.assign(nimg)
                    self.stage_res.assign(sched.res)
                skip = nimg - int(self.stage_start_nimg.numpy())
                iterator = self._stage_dataset(sched, skip)
                stage_key = (sched.res, sched.minibatch)
            d_step, g_step = self.step_functions(sched.res, sched.minibatch)
            alpha = tf.constant(sched.alpha, tf.float32)
            ema_beta = tf.constant(self.ema_beta(sched.minibatch), tf.float32)

            for _ in range(c.train.minibatch_repeats):
                for _ in range(c.train.D_repeats):
                    reals, labels = next(iterator)
                    d_stats = d_step(reals, labels, alpha, self.iteration, ema_beta)
                    self.nimg.assign_add(sched.minibatch)
                g_stats = g_step(alpha, self.iteration)
                self.iteration.assign_add(1)
                pending.append((int(self.nimg.numpy()) / 1000, {**d_stats, **g_stats}))
            progress.update(int(self.nimg.numpy()) - nimg, sched)

            if len(pending) >= max(1, c.train.check_finite_every):
                for _, vals in pending:
                    stats.add(vals)
                pending = []

            nimg = int(self.nimg.numpy())
            done = nimg >= total_nimg
            stop = self._all_agree_to_stop(
                self._stop_signal is not None or (deadline is not None and time.time() >= deadline))
            if nimg >= tick_start_nimg + sched.tick_kimg * 1000 or done or stop:
                for _, vals in pending:
                    stats.add(vals)
                pending = []
                self.tick.assign_add(1)
                tick = int(self.tick.numpy())
                self._check_progress(stats, tick, nimg / 1000)
                now = time.time()
                tick_kimg = (nimg - tick_start_nimg) / 1000.0
                tick_time = now - tick_start_time
                self._report_tick(tick, nimg, sched, now - start_time, tick_time, tick_kimg,
                                  tick_start_time - maintenance_start, stats.means())
                progress.clear()
                tick_start_nimg, maintenance_start, stats = nimg, now, TickStats()
                if tick % c.train.image_snapshot_ticks == 0 or done or stop:
                    self.save_fakes(sched)
                checkpoint_name = None
                if tick % c.train.network_snapshot_ticks == 0 or done or stop:
                    last_checkpoint = self.save_checkpoint()
                    checkpoint_name = os.path.basename(last_checkpoint)
                if self._metrics is not None and not stop and (tick % c.train.metrics_ticks == 0 or done):
                    self._metrics(self.Gs, nimg / 1000, name=checkpoint_name)  # rows named like progan-metrics'
                tick_start_time = time.time()
                if stop and not done:
                    stop_reason = "signal" if self._stop_signal is not None else (
                        "time limit" if deadline is not None and time.time() >= deadline else "another worker")
                    break
        progress.close()
        total_time = time.time() - start_time
        sched = self.schedule()
        summary = {"kimg": int(self.nimg.numpy()) / 1000, "ticks": int(self.tick.numpy()), "lod": sched.lod,
                   "resolution": sched.resolution, "time_s": total_time, "checkpoint": last_checkpoint,
                   "stopped_by": stop_reason}
        self._log(f"Stopped ({stop_reason}) at kimg {summary['kimg']:.1f}, lod {sched.lod:.2f}, "
                  f"{summary['ticks']} ticks, {rundir.format_time(total_time)}; checkpoint {last_checkpoint}")
        rundir.write_json(os.path.join(self.write_dir, rundir.SUMMARY_FILE), summary)
        if self._stop_signal is not None:
            raise Interrupted(self._stop_signal, last_checkpoint)
        return summary

    def _prev_lod(self):
        value = float(self.prev_lod.numpy())
        return None if value < 0 else value

    def _report_tick(self, tick, nimg, sched, total_time, tick_time, tick_kimg, maintenance, means):
        skipped = {net[len(SKIPPED_PREFIX):]: int(n) for net, n in means.items() if net.startswith(SKIPPED_PREFIX)}
        self._log(rundir.format_tick(tick, nimg / 1000, sched.lod, sched.minibatch, total_time, tick_time,
                                     tick_time / max(tick_kimg, 1e-9), maintenance, skipped))
        kimg = nimg // 1000
        with self._summary_writer.as_default(step=kimg):
            for key, value in means.items():
                tf.summary.scalar(key, value)
            for key, value in (("Progress/tick", tick), ("Progress/kimg", nimg / 1000), ("Progress/lod", sched.lod),
                               ("Progress/minibatch", sched.minibatch), ("Progress/alpha", sched.alpha),
                               ("LearningRate/G", sched.G_lrate), ("LearningRate/D", sched.D_lrate),
                               ("Timing/total_sec", total_time), ("Timing/sec_per_tick", tick_time),
                               ("Timing/sec_per_kimg", tick_time / max(tick_kimg, 1e-9)),
                               ("Timing/maintenance_sec", maintenance)):
                tf.summary.scalar(key, value)
        self._summary_writer.flush()

    def close(self):
        if getattr(self, "_log_file", None):
            self._log_file.close()
            self._log_file = None
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def worker_role(strategy) -> tuple[int, bool]:
    """``(number of workers, is this the chief)`` under any tf.distribute strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1, True
    cluster = resolver.cluster_spec().as_dict()
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if "chief" in cluster:
        return workers, resolver.task_type == "chief"
    return workers, resolver.task_type == "worker" and resolver.task_id == 0


def _all_finite(grads):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])


def all_replicas_finite(grads):
    """Whether every gradient of every replica is finite (the same answer on all replicas)."""
    bad = 1.0 - tf.cast(_all_finite(grads), tf.float32)
    bad = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, bad)
    return tf.equal(bad, 0.0)


def apply_if(finite, optimizer, grads, variables):
    """``optimizer.apply(grads, variables)`` only where ``finite`` (a replica-context bool that all
    replicas agree on); otherwise the step leaves weights, moments and the iteration count alone.

    A cond in replica context may not hold a ``merge_call``, which Keras' apply uses under
    strategies that merge; there the cond is taken in cross-replica context, as Keras'
    own LossScaleOptimizer does.
    """
    def apply():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, apply, lambda: tf.constant(False))
        return

    def cross_replica(distribution, finite, grads):
        def apply_each():
            distribution.extended.call_for_each_replica(lambda g: optimizer.apply(g, variables), args=(grads,))
            return tf.constant(True)
        tf.cond(distribution.experimental_local_results(finite)[0], apply_each, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))


def _sums(values: dict, global_batch: int) -> dict:
    """Per-replica share of each statistic's global-batch mean."""
    return {k: tf.reduce_sum(tf.cast(v, tf.float32)) / global_batch for k, v in values.items()}


class _progress_bar:
    """A tqdm bar of images shown, refreshed between iterations; silent when stderr is not a terminal."""

    def __init__(self, total: int, initial: int):
        self._bar = tqdm(total=total, initial=initial, unit="img", unit_scale=True, dynamic_ncols=True,
                         disable=None, leave=False, desc="training")

    def update(self, n: int, sched: Schedule):
        self._bar.update(n)
        self._bar.set_postfix_str(f"{sched.resolution}x{sched.resolution} lod {sched.lod:.2f}", refresh=False)

    def clear(self):
        self._bar.clear()

    def close(self):
        self._bar.close()

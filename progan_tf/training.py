"""The ProGAN training loop (docs/method.md#training), after the original's ``train_progressive_gan``.

One ``Trainer`` owns the networks (G, D and the moving average Gs), the two Adam
optimizers and the training state (images shown, tick, iteration, stage), and the
checkpoint that holds them all. What one step computes lives in ``progan_tf.steps``,
what the stage feeds it in ``progan_tf.datasets.reader.stage_input``, what a run
reports in ``progan_tf.reporting``, when it stops early in ``progan_tf.stopping``, and
the run directory's files in ``progan_tf.rundir``.

Constructing a ``Trainer`` checks the configuration, builds the networks and restores a
checkpoint, and writes nothing; ``run()`` opens the run directory and trains. The loop
(``_loop``) reads in four phases per schedule update: the schedule, the stage's input and
steps, ``minibatch_repeats`` iterations of ``D_repeats`` D steps and one G step, and,
when a tick is due, its report, image grid, checkpoint and metrics.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from typing import Iterator, Optional

import keras
import numpy as np
import tensorflow as tf

from progan_tf import checkpoints
from progan_tf import images as images_lib
from progan_tf import rundir
from progan_tf.config import complete_saved_config
from progan_tf.datasets import reader as data_lib
from progan_tf.ema import clone_model
from progan_tf.losses import make_loss
from progan_tf.metrics import registry as metrics_registry
from progan_tf.metrics.evaluate import ExtractorOptions
from progan_tf.metrics.fid import ExtractorError
from progan_tf.metrics.runs import PeriodicMetrics
from progan_tf.networks import Discriminator, Generator, resolution_log2
from progan_tf.precision import resolve_jit, resolve_precision
from progan_tf.reporting import ProgressBar, RunLog, TickStats, TickTiming, report_tick
from progan_tf.schedule import Schedule, new_block_started, training_schedule
from progan_tf.steps import StepModels, TrainingSteps
from progan_tf.stopping import StopControl


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


def check_metrics_config(train_config) -> None:
    """``train.metrics`` settings that cannot work, found before training (the metric names, the
    tick interval, local weight files); the extractors themselves are built when training starts."""
    c = train_config
    try:
        metrics_registry.resolve_names(c.metrics)
    except ValueError as e:
        raise TrainingError(f"config train.metrics: {e}") from None
    if int(c.metrics_ticks) < 1:
        raise TrainingError(f"config train.metrics_ticks must be >= 1 with train.metrics={c.metrics!r}")
    for field in ("metrics_feature_extractor", "metrics_inception_weights"):
        path = c.get(field) or ""
        if path and path != "imagenet" and not os.path.exists(path):
            raise TrainingError(f"config train.{field}: not found: {path}")


# The counters a training checkpoint holds besides the networks and optimizers: (name, dtype, start).
_STATE_VARIABLES = (("nimg", tf.int64, 0), ("tick", tf.int64, 0), ("iteration", tf.int64, 0),
                    ("stage_start_nimg", tf.int64, 0), ("stage_res", tf.int64, 0), ("prev_lod", tf.float64, -1.0))


def state_variables(**values) -> dict:
    """The training counters (images shown, tick, iteration, stage, last lod) as variables by name;
    ``values`` overrides their starting values."""
    unknown = set(values) - {name for name, _, _ in _STATE_VARIABLES}
    if unknown:
        raise ValueError(f"unknown training state {sorted(unknown)}")
    return {name: tf.Variable(values.get(name, start), dtype=dtype, trainable=False, name=name)
            for name, dtype, start in _STATE_VARIABLES}


def write_network_configs(run_dir: str, G, D, dataset: Optional[str], precision: str) -> None:
    """``networks.json``: what rebuilds G/Gs and D from a checkpoint without the dataset (float32)."""
    rundir.write_json(os.path.join(run_dir, rundir.NETWORKS_FILE), {
        "G": {**G.get_config(), "dtype": "float32"}, "D": {**D.get_config(), "dtype": "float32"},
        "dataset": dataset, "precision": precision, "resolution": G.resolution, "num_channels": G.num_channels,
        "label_size": G.label_size})


def new_optimizers(config, G, D) -> tuple:
    """Fresh Adam optimizers for G and D (``config.G_opt`` / ``D_opt``), built over every stage's
    variables up front (docs/method.md#tensorflow): what a checkpoint holds."""
    G_adam = keras.optimizers.Adam(learning_rate=config.sched.G_lrate_base, **dict(config.G_opt), name="G_opt")
    D_adam = keras.optimizers.Adam(learning_rate=config.sched.D_lrate_base, **dict(config.D_opt), name="D_opt")
    G_adam.build(G.trainable_variables)
    D_adam.build(D.trainable_variables)
    return G_adam, D_adam


def training_checkpoint(G, D, Gs, G_adam, D_adam, state: dict) -> tf.train.Checkpoint:
    """What a training checkpoint holds: the three networks, both plain Adam states and the counters.

    The plain optimizers (not a float16 loss-scale wrapper) are saved, so a run resumes in any
    precision. ``progan-import`` writes the same structure.
    """
    return tf.train.Checkpoint(G=G, D=D, Gs=Gs, G_opt=G_adam, D_opt=D_adam, **state)


@dataclasses.dataclass
class _Stage:
    """The input and compiled steps of the stage being trained."""
    key: tuple                       # (res, minibatch)
    input: Iterator
    d_step: object
    g_step: object


@dataclasses.dataclass
class _TickClock:
    """Wall-clock bookkeeping of ticks: training time, and the maintenance between ticks."""
    start: float
    tick_start: float
    maintenance_start: float
    tick_start_nimg: int

    @classmethod
    def starting(cls, nimg: int) -> "_TickClock":
        now = time.time()
        return cls(now, now, now, nimg)

    def due(self, nimg: int, sched: Schedule) -> bool:
        return nimg >= self.tick_start_nimg + sched.tick_kimg * 1000

    def end_tick(self, tick: int, nimg: int) -> TickTiming:
        now = time.time()
        timing = TickTiming(tick, nimg, now - self.start, now - self.tick_start,
                            (nimg - self.tick_start_nimg) / 1000.0, self.tick_start - self.maintenance_start)
        self.tick_start_nimg, self.maintenance_start = nimg, now
        return timing

    def resume(self):
        """The tick's maintenance (snapshots, checkpoint, metrics) is over: the next tick starts."""
        self.tick_start = time.time()


class Trainer:
    """Trains one ProGAN run. ``run()`` executes the loop until ``train.total_kimg``."""

    def __init__(self, config, dataset_dir: str, run_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                 resume_from: Optional[str] = None, strict_resume: bool = False):
        self.config = complete_saved_config(config)
        self.dataset_dir, self.run_dir = dataset_dir, run_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.num_workers, self.is_chief = worker_role(self.strategy)
        # Only the chief writes into the run directory; other workers still take part in
        # checkpoint saves (MultiWorkerMirroredStrategy needs every worker) but write to a scratch dir.
        self.write_dir = run_dir if self.is_chief else tempfile.mkdtemp(prefix="progan-worker-")
        self.log = RunLog(os.path.join(self.write_dir, rundir.LOG_FILE))
        self.info = data_lib.read_dataset_info(dataset_dir)
        check_dataset_fits_config(self.config, self.info)
        if self.config.train.metrics:
            check_metrics_config(self.config.train)
        try:
            self.loss = make_loss(self.config.loss)
        except ValueError as e:
            raise TrainingError(f"config loss: {e}") from None
        self.labels = data_lib.load_labels(self.info) if self.config.dataset.use_labels else np.zeros(
            (self.info.num_images, 0), np.float32)
        self.label_size = int(self.labels.shape[1])
        self._build_models()
        self._build_checkpoint()
        self._damaged_checkpoints = ()   # newer checkpoints a resume skipped (forgotten when the run opens)
        self.restored_from = self._restore(resume_from, strict_resume) if resume_from else None
        self.steps = TrainingSteps(
            StepModels(self.G, self.D, self.Gs, self.G_opt, self.D_opt), self.loss, self.strategy,
            seed=self.config.seed, labels=self.labels, mirror_augment=self.config.train.mirror_augment,
            loss_scaling=self.loss_scaling, jit_compile=self.jit_compile)
        self._gs_fns = {}
        # Opened with the run directory (run()): TensorBoard, the periodic metrics, the grid's inputs.
        self._summary_writer = None
        self._current_stage: Optional[_Stage] = None   # held here, not in _loop's frame: see close()
        self._metrics = None
        self._grid_reals = self._grid_latents = self._grid_labels = None

    # --- set-up ---------------------------------------------------------------------------

    def _build_models(self):
        g_kwargs, d_kwargs = _network_kwargs(self.config, self.info, self.label_size)
        c = self.config
        try:
            self.precision, why = resolve_precision(c.train.precision)
            self.jit_compile, jit_why = resolve_jit(c.train.jit_compile)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        self.log(f"Precision {self.precision} ({why}); XLA {'on' if self.jit_compile else 'off'} ({jit_why})")
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
            self.G_adam, self.D_adam = new_optimizers(c, self.G, self.D)
            self.loss_scaling = self.precision == "mixed_float16"
            if self.loss_scaling:
                self.G_opt = keras.optimizers.LossScaleOptimizer(self.G_adam)
                self.D_opt = keras.optimizers.LossScaleOptimizer(self.D_adam)
                self.G_opt.build(self.G.trainable_variables)
                self.D_opt.build(self.D.trainable_variables)
            else:
                self.G_opt, self.D_opt = self.G_adam, self.D_adam
            self.state = state_variables()
        s = self.state
        self.nimg, self.tick, self.iteration = s["nimg"], s["tick"], s["iteration"]
        self.stage_start_nimg, self.stage_res, self.prev_lod = s["stage_start_nimg"], s["stage_res"], s["prev_lod"]
        self.latent_size = self.G.latent_size

    def _write_network_configs(self):
        write_network_configs(self.write_dir, self.G, self.D, self.info.name, self.precision)

    def _build_checkpoint(self):
        self.checkpoint = training_checkpoint(self.G, self.D, self.Gs, self.G_adam, self.D_adam, self.state)
        self._build_manager()

    def _build_manager(self):
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, rundir.checkpoint_dir(self.write_dir), checkpoint_name=rundir.CHECKPOINT_NAME,
            max_to_keep=max(1, int(self.config.train.keep_checkpoints)))

    def _restore(self, path: str, strict: bool = False) -> str:
        """Restores from a run directory (its latest checkpoint) or a checkpoint prefix.

        A damaged latest checkpoint of a run directory is reported and the newest older one that
        restores is used (``strict``: an error instead); a damaged prefix named by the user is an
        error. See progan_tf.checkpoints.
        """
        try:
            resolved = rundir.resolve_checkpoint(path)
        except rundir.RunDirError as e:
            raise TrainingError(f"--resume: {e}") from None
        try:
            restored = checkpoints.restore_resolved(self.checkpoint, resolved, into="the networks of this config",
                                                    fallback=not strict, warn=self.log.warning)
        except checkpoints.DamagedCheckpoint as e:
            older = checkpoints.older_names(e.prefix) if strict and resolved.latest else None
            hint = f"; --strict_resume: not falling back to an older checkpoint ({older})" if older else ""
            raise TrainingError(f"--resume: {e}{hint}") from None
        except checkpoints.CheckpointError as e:
            raise TrainingError(f"--resume: {e}") from None
        self._damaged_checkpoints = restored.damaged
        self.log(f"Resumed from {restored.checkpoint} at kimg {int(self.nimg.numpy()) / 1000:.1f}")
        return restored.checkpoint

    def _open_run_directory(self):
        """Everything a run writes besides checkpoints: log.txt, networks.json, TensorBoard, reals.png,
        and the periodic metrics (their feature extractors are built here, before the first step)."""
        os.makedirs(self.write_dir, exist_ok=True)
        self.log.open()
        if self._damaged_checkpoints and self.is_chief:
            # The manager read the state file naming the damaged checkpoint as the latest: forget it.
            checkpoints.forget_checkpoints(self.manager.directory, self.restored_from)
            self._build_manager()
            self._damaged_checkpoints = ()
        self._write_network_configs()
        self._summary_writer = (tf.summary.create_file_writer(self.run_dir) if self.is_chief
                                else tf.summary.create_noop_writer())
        self._grid_reals, self._grid_latents, self._grid_labels = self._grid_inputs()
        reals_path = os.path.join(self.run_dir, rundir.REALS_FILE)
        if self.is_chief and not os.path.exists(reals_path):
            images_lib.save_image_grid(reals_path, self._grid_reals, self.config.train.grid_size)
        if self.config.train.metrics and self.is_chief and self._metrics is None:
            self._metrics = self._periodic_metrics()

    def _periodic_metrics(self) -> PeriodicMetrics:
        """``train.metrics`` every ``train.metrics_ticks`` ticks (settings checked by check_metrics_config)."""
        c = self.config.train
        options = ExtractorOptions(inception_weights=c.get("metrics_inception_weights") or "imagenet",
                                   feature_extractor=c.get("metrics_feature_extractor") or None,
                                   extractor_output=c.get("metrics_extractor_output") or None)
        try:
            return PeriodicMetrics(self.dataset_dir, c.metrics, int(c.metrics_num_images), self.run_dir,
                                   extractor_options=options, summary_writer=self._summary_writer)
        except (ValueError, ExtractorError) as e:
            raise TrainingError(f"config train.metrics: {e}") from None

    # --- training state -------------------------------------------------------------------

    def schedule(self, nimg: Optional[int] = None) -> Schedule:
        nimg = int(self.nimg.numpy()) if nimg is None else nimg
        return training_schedule(nimg, self.info.resolution_log2, self.config.sched, self.num_replicas)

    def ema_beta(self, minibatch: int) -> float:
        """Gs's smoothing per D step: ``train.G_smoothing`` (the original's fixed 0.999), or, with
        ``train.G_smoothing_kimg`` > 0, a half-life of that many kimg whatever the minibatch."""
        half_life = self.config.train.G_smoothing_kimg
        if half_life > 0:
            return 0.5 ** (minibatch / (half_life * 1000.0))
        return float(self.config.train.G_smoothing)

    def _prev_lod(self):
        value = float(self.prev_lod.numpy())
        return None if value < 0 else value

    def _reset_optimizers(self):
        for opt in (self.G_adam, self.D_adam):
            for v in opt.variables:
                if v.name != "learning_rate":
                    v.assign(tf.zeros(v.shape, v.dtype))

    def _enter_schedule(self) -> Schedule:
        """The schedule at the images shown so far: Adam reset at a new block, learning rates set."""
        sched = self.schedule()
        if self.config.train.reset_opt_for_new_lod and new_block_started(sched.lod, self._prev_lod()):
            self._reset_optimizers()
        self.prev_lod.assign(sched.lod)
        self.G_adam.learning_rate.assign(sched.G_lrate)
        self.D_adam.learning_rate.assign(sched.D_lrate)
        return sched

    def step_functions(self, res: int, minibatch: int):
        """The stage's compiled ``(d_step, g_step)`` (see ``progan_tf.steps``)."""
        return self.steps.for_stage(res, minibatch)

    def _stage_dataset(self, sched: Schedule, skip_images: int):
        """The stage's input stream: replica k gets ``x[k::R]`` (see ``datasets.reader.stage_input``)."""
        d = self.config.dataset
        try:
            return data_lib.stage_input(self.info, sched.res, sched.minibatch, self.strategy, seed=self.config.seed,
                                        shuffle_mb=d.shuffle_mb, skip_images=skip_images,
                                        max_resume_skip=d.max_resume_skip, num_workers=self.num_workers,
                                        log=self.log)
        except data_lib.DatasetError as e:
            raise TrainingError(self._dataset_error(str(e))) from None

    def _stage(self, sched: Schedule, current: Optional[_Stage]) -> _Stage:
        """The current stage's input and steps; a new input stream when the stage or its minibatch changes.

        A resumed stage skips the images it already consumed, so it sees what an
        uninterrupted run would have seen.
        """
        key = (sched.res, sched.minibatch)
        if current is not None and current.key == key:
            return current
        nimg = int(self.nimg.numpy())
        if int(self.stage_res.numpy()) != sched.res:   # a new stage (not a resumed one)
            self.stage_start_nimg.assign(nimg)
            self.stage_res.assign(sched.res)
        stream = self._stage_dataset(sched, nimg - int(self.stage_start_nimg.numpy()))
        return _Stage(key, stream, *self.step_functions(sched.res, sched.minibatch))

    # --- snapshots --------------------------------------------------------------------------

    def _grid_inputs(self):
        gw, gh = self.config.train.grid_size
        n = int(gw) * int(gh)
        try:
            reals, labels = next(data_lib.iterate_images(self.info, None, batch_size=n, max_images=n))
        except data_lib.DatasetError as e:
            raise TrainingError(self._dataset_error(str(e))) from None
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

    def run(self) -> dict:
        self._open_run_directory()
        with StopControl(self.strategy, self.num_workers, self.config.train.max_time_minutes) as stop:
            try:
                return self._loop(int(round(self.config.train.total_kimg * 1000)), stop)
            finally:
                self._summary_writer.flush()

    def _loop(self, total_nimg: int, stop: StopControl) -> dict:
        c = self.config.train
        clock = _TickClock.starting(int(self.nimg.numpy()))
        stage, stats, pending = None, TickStats(), []
        self._current_stage = None   # each run() reads a new stream (a resumed stage skips what it consumed)
        last_checkpoint, stop_reason = self.manager.latest_checkpoint, None
        done = int(self.nimg.numpy()) >= total_nimg
        progress = ProgressBar(total_nimg, int(self.nimg.numpy()))
        self.log(f"Training {self.info.name} {self.info.resolution}x{self.info.resolution}x{self.info.channels}"
                 f" ({self.info.num_images} images, {self.label_size} labels) on {self.num_replicas} replica(s)"
                 f" until {total_nimg / 1000:g} kimg")
        while int(self.nimg.numpy()) < total_nimg:
            # 1. The schedule for the images shown so far, and the stage's input and steps.
            sched = self._enter_schedule()
            stage = self._current_stage = self._stage(sched, stage)

            # 2. minibatch_repeats iterations of D_repeats D steps and one G step.
            nimg_before = int(self.nimg.numpy())
            pending += self._iterations(sched, stage)
            progress.update(int(self.nimg.numpy()) - nimg_before, sched)
            if len(pending) >= max(1, c.check_finite_every):   # statistics come back to the host in batches
                stats, pending = _gathered(stats, pending), []

            # 3. At the end of a tick (or of the run, or on a stop): report, snapshots, metrics.
            nimg = int(self.nimg.numpy())
            done = nimg >= total_nimg
            stop_reason = stop.check()
            if clock.due(nimg, sched) or done or stop_reason:
                stats, pending = _gathered(stats, pending), []
                progress.clear()
                last_checkpoint = self._end_tick(sched, stats, clock, done, stop_reason) or last_checkpoint
                stats = TickStats()
                if stop_reason and not done:
                    break
        progress.close()
        return self._finish(clock, last_checkpoint, stop_reason if stop_reason and not done else "done", stop)

    def _iterations(self, sched: Schedule, stage: _Stage) -> list:
        """One schedule update's worth of training; the step statistics (still on the device)."""
        c = self.config.train
        alpha = tf.constant(sched.alpha, tf.float32)
        ema_beta = tf.constant(self.ema_beta(sched.minibatch), tf.float32)
        pending = []
        for _ in range(c.minibatch_repeats):
            for _ in range(c.D_repeats):
                reals, labels = self._next_batch(stage)
                d_stats = stage.d_step(reals, labels, alpha, self.iteration, ema_beta)
                self.nimg.assign_add(sched.minibatch)
            g_stats = stage.g_step(alpha, self.iteration)
            self.iteration.assign_add(1)
            pending.append({**d_stats, **g_stats})
        return pending

    def _next_batch(self, stage: _Stage):
        """The stage's next global batch. Any error of the input pipeline (a damaged record met
        mid-level, or in a level first read when its stage starts) stops training with a
        TrainingError naming the file and record; the last checkpoint is left as it is."""
        try:
            return next(stage.input)
        except tf.errors.OpError as e:
            what = data_lib.describe_read_error(self.info, stage.key[0], e)
            raise TrainingError(self._dataset_error(what)) from None

    def _dataset_error(self, what: str) -> str:
        return (f"cannot read the dataset: {what}. Last checkpoint: {self.manager.latest_checkpoint or 'none yet'}. "
                f"Check every record with: progan-dataset info --verify {self.info.path}")

    def _end_tick(self, sched: Schedule, stats: TickStats, clock: _TickClock, done: bool,
                  stop_reason: Optional[str]) -> Optional[str]:
        """The tick's report, image grid, checkpoint and metrics; the checkpoint written, if any."""
        c = self.config.train
        self.tick.assign_add(1)
        tick, nimg = int(self.tick.numpy()), int(self.nimg.numpy())
        if stats.all_skipped:   # every update had non-finite gradients: training is stuck
            raise TrainingError(
                f"every update of tick {tick} (to kimg {nimg / 1000:.1f}) was skipped: the gradients were not "
                f"finite; stopping. Last good checkpoint: {self.manager.latest_checkpoint or 'none yet'}")
        report_tick(self.log, self._summary_writer, clock.end_tick(tick, nimg), sched, stats)
        last = done or stop_reason is not None
        if tick % c.image_snapshot_ticks == 0 or last:
            self.save_fakes(sched)
        checkpoint = None
        if tick % c.network_snapshot_ticks == 0 or last:
            checkpoint = self.save_checkpoint()
        if self._metrics is not None and stop_reason is None and (tick % c.metrics_ticks == 0 or done):
            name = os.path.basename(checkpoint) if checkpoint else None   # rows named like progan-metrics'
            self._metrics(self.Gs, nimg / 1000, name=name)
        clock.resume()
        return checkpoint

    def _finish(self, clock: _TickClock, last_checkpoint: Optional[str], stop_reason: str,
                stop: StopControl) -> dict:
        total_time = time.time() - clock.start
        sched = self.schedule()
        summary = {"kimg": int(self.nimg.numpy()) / 1000, "ticks": int(self.tick.numpy()), "lod": sched.lod,
                   "resolution": sched.resolution, "time_s": total_time, "checkpoint": last_checkpoint,
                   "stopped_by": stop_reason}
        self.log(f"Stopped ({stop_reason}) at kimg {summary['kimg']:.1f}, lod {sched.lod:.2f}, "
                 f"{summary['ticks']} ticks, {rundir.format_time(total_time)}; checkpoint {last_checkpoint}")
        rundir.write_json(os.path.join(self.write_dir, rundir.SUMMARY_FILE), summary)
        if stop.signum is not None:
            raise Interrupted(stop.signum, last_checkpoint)
        return summary

    def close(self, release_input: bool = True):
        """Flushes and closes what the run writes (TensorBoard events, metric files, log.txt), then
        releases the stage's input stream.

        Releasing a tf.data iterator waits for its background threads to finish the element they
        are preparing, which at an epoch boundary is a whole shuffle-buffer fill (seconds, and
        minutes on a busy machine). ``progan-train`` exits right after, so it passes
        ``release_input=False`` and leaves without that wait (see ``progan_tf.train.run``).
        """
        if self._summary_writer is not None:
            self._summary_writer.close()
        if self._metrics is not None:
            self._metrics.close()
        self.log.close()
        if release_input:
            self._current_stage = None
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def _gathered(stats: TickStats, pending: list) -> TickStats:
    """``stats`` with the pending step statistics added (this reads them back from the device)."""
    for values in pending:
        stats.add(values)
    return stats


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

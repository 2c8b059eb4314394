"""``progan-train``: train a ProGAN on a TFRecord pyramid.

    progan-train --config=configs/fashion_mnist_cpu.py --dataset_dir=datasets/fashion-mnist \\
        --result_dir=results [--config.train.total_kimg=300 ...]
    progan-train --resume=results/00000-fashion-mnist-cpu      # continue a run where it stopped
    progan-train --resume=results/00000-fashion-mnist-cpu --config.train.total_kimg=600   # ... and go further

Each run writes ``<result_dir>/NNNNN-<desc>/``: ``config.json``, ``log.txt``
(one line per tick), ``reals.png``, ``fakesKKKKKK.png`` per tick, TensorBoard
events, and ``checkpoints/`` (every ``train.network_snapshot_ticks`` ticks and at
the end). SIGINT/SIGTERM write a checkpoint before exiting.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback

from absl import app, flags, logging
from ml_collections import config_dict, config_flags

from progan_tf import rundir, toolflags
from progan_tf.config import UnknownAblationError, complete_saved_config

# TensorFlow, the data pipeline and the trainer are imported in main() and make_strategy(), not here:
# importing them takes seconds, and `progan-train --help` should answer at once.

FLAGS = flags.FlagValues()   # own flags, as the other tools: importing this next to other CLIs cannot clash
_d = dict(flag_values=FLAGS)
config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<preset>.py); fields can be overridden with --config.<group>.<field>=... "
    "Optional with --resume (the run's own config.json is used, and the overrides apply to it).",
    lock_config=True, **_d)
flags.DEFINE_string("dataset_dir", None, "TFRecord pyramid directory (made by progan-dataset).", **_d)
flags.DEFINE_string("result_dir", "results", "Directory that holds the run directories.", **_d)
flags.DEFINE_string("resume", None, "Run directory (its latest checkpoint) or checkpoint prefix to continue from.",
                    **_d)
flags.DEFINE_bool("strict_resume", False, "With --resume of a run directory: stop with an error when its latest "
                  "checkpoint is damaged, instead of warning and resuming from the newest older one that restores.",
                  **_d)
flags.DEFINE_enum("strategy", "auto", ["auto", "default", "mirrored", "multiworker"],
                  "tf.distribute strategy: 'auto' is MultiWorkerMirroredStrategy when TF_CONFIG names several "
                  "workers, MirroredStrategy over all GPUs when there are several (or over the --num_cpu_devices "
                  "logical CPUs), else the default strategy on one device.", **_d)
flags.DEFINE_integer("collective_timeout", 600, "Multi-worker: seconds a collective op waits for the other "
                     "workers before failing (a lost worker then stops the cluster instead of hanging it).", **_d)
flags.DEFINE_integer("num_cpu_devices", 1, "Split the CPU into this many logical devices (to exercise "
                     "MirroredStrategy without GPUs).", **_d)
flags.DEFINE_bool("deterministic", False, "Enable TensorFlow op determinism (bit-reproducible runs, slower).", **_d)


# --- the --config file, loaded while the flags are parsed (before TensorFlow is imported) ----------

class ConfigFileError(Exception):
    """A --config file that cannot be used; the one-line message names the file.

    Not a ValueError, so absl does not fold it into a flag error: `_parse_flags` prints it.
    """


def _where(error: BaseException, path: str) -> str:
    """`` (line N)``: the line of ``path`` that the traceback of ``error`` last passed through."""
    target = os.path.abspath(path)
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == target]
    return f" (line {lines[-1]})" if lines else ""


def _load_config_module(path: str):
    if not os.path.exists(path):
        raise ConfigFileError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise ConfigFileError(f"not a file: {path}")
    loader = importlib.machinery.SourceFileLoader("progan_train_config", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    try:
        loader.exec_module(module)
    except SyntaxError as e:   # in the file itself, or in a module it imports (e.filename says which)
        raise ConfigFileError(f"syntax error in {e.filename or path} line {e.lineno}: {e.msg}") from None
    except OSError as e:
        raise ConfigFileError(f"cannot read {path}: {e}") from None
    except Exception as e:
        raise ConfigFileError(f"{path}: loading it raised {type(e).__name__}: {e}{_where(e, path)}") from None
    return module


def load_config_file(spec: str) -> config_dict.ConfigDict:
    """``--config``: ``file.py`` or ``file.py:<argument to get_config>`` (ml_collections' syntax), or a
    run's ``config.json``. Every problem is a ConfigFileError naming the file."""
    path, *args = spec.split(":", 1)
    if path.endswith(".json"):
        return read_run_config(path)
    get_config = getattr(_load_config_module(path), "get_config", None)
    if not callable(get_config):
        raise ConfigFileError(f"{path} defines no get_config()")
    try:
        config = get_config(*args)
    except UnknownAblationError as e:
        raise ConfigFileError(f"{spec}: {e}") from None
    except Exception as e:
        call = f"get_config({args[0]!r})" if args else "get_config()"
        raise ConfigFileError(f"{path}: {call} raised {type(e).__name__}: {e}{_where(e, path)}") from None
    if not isinstance(config, config_dict.ConfigDict):
        raise ConfigFileError(f"{path}: get_config() returned {type(config).__name__}, not a ConfigDict")
    return config


def _tuples(value):
    """JSON's lists back to the tuples the presets use (so overrides parse as they do with --config)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def read_run_config(path: str) -> config_dict.ConfigDict:
    """A run's ``config.json``, in today's layout (config.complete_saved_config), locked."""
    try:
        config = config_dict.ConfigDict(_tuples(rundir.read_json(path)))
    except (OSError, ValueError) as e:
        raise ConfigFileError(f"cannot read the run's config {path}: {e}") from None
    complete_saved_config(config)
    config.lock()
    return config


class _ConfigFileParser(flags.ArgumentParser):
    """In place of ml_collections' --config parser (which lets a syntax error through as a traceback
    and defers a missing file's error until the config is first used): `load_config_file`."""

    def parse(self, argument):
        config = load_config_file(argument)
        config.lock()
        return config

    def flag_type(self):
        return "config object"


FLAGS["config"].parser = _ConfigFileParser()


def load_run_config(run_dir: str) -> config_dict.ConfigDict:
    try:
        return read_run_config(os.path.join(run_dir, rundir.CONFIG_FILE))
    except ConfigFileError as e:
        raise app.UsageError(f"--resume: {e}") from None


def _resume_run_dir(resume: str) -> str:
    """The run directory a --resume path belongs to."""
    path = os.path.normpath(resume)
    if not os.path.isdir(path) and os.path.basename(os.path.dirname(path)) != rundir.CHECKPOINT_DIR:
        raise app.UsageError(f"--resume: {resume} is neither a run directory nor a checkpoint in one's "
                             f"{rundir.CHECKPOINT_DIR}/")
    return rundir.run_dir_of(path)


def _read_run_info(run_dir: str) -> dict:
    try:
        return rundir.read_run_info(run_dir)
    except (OSError, ValueError) as e:
        raise app.UsageError(f"--resume: cannot read {os.path.join(run_dir, rundir.RUN_INFO_FILE)}: {e}") from None


_CREATED = []   # run directories this process created (never a resumed one): removed if the start fails


def _create_run(config, dataset_name: str, dataset_dir: str, tf_version: str) -> str:
    """A new numbered run directory holding config.json and run.json."""
    run_dir = rundir.create_run(FLAGS.result_dir, f"{config.desc}-{dataset_name}")
    _CREATED.append(run_dir)
    rundir.write_text(os.path.join(run_dir, rundir.CONFIG_FILE), config.to_json_best_effort(indent=2))
    rundir.write_json(os.path.join(run_dir, rundir.RUN_INFO_FILE),
                      {"dataset_dir": os.path.abspath(dataset_dir), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "command": sys.argv, "tensorflow": tf_version})
    return run_dir


_CHECKPOINT_TEMP_RE = re.compile(rf"{re.escape(rundir.CHECKPOINT_NAME)}-\d+_temp$")


def _remove_checkpoint_temps(run_dir: str) -> None:
    """Removes ``checkpoints/ckpt-<n>_temp/``: where tf.train.Checkpoint writes a save's parts
    before merging them into ``ckpt-<n>``. One left at start-up is from a save that was killed
    (the resumed run is ours, and nothing else writes into it), so it holds nothing restorable."""
    directory = rundir.checkpoint_dir(run_dir)
    names = os.listdir(directory) if os.path.isdir(directory) else []
    stale = [n for n in names if _CHECKPOINT_TEMP_RE.match(n) and not os.path.islink(os.path.join(directory, n))
             and os.path.isdir(os.path.join(directory, n))
             and all(p.startswith("part-") for p in os.listdir(os.path.join(directory, n)))]
    if stale:
        logging.info("Removing %d unfinished checkpoint save(s) in %s: %s", len(stale), directory, ", ".join(stale))
        for name in stale:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def tf_config_workers() -> int:
    """Number of chief + worker tasks that TF_CONFIG names (0 without TF_CONFIG)."""
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except ValueError:
        raise app.UsageError("TF_CONFIG is not valid JSON") from None
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(name: str, num_cpu_devices: int, collective_timeout: int = 600):
    import tensorflow as tf

    if name == "multiworker" or (name == "auto" and tf_config_workers() > 1):
        if tf_config_workers() < 1:
            raise app.UsageError("--strategy=multiworker needs TF_CONFIG naming the cluster (see the README)")
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if num_cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices)
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = [d.name for d in gpus] or [d.name for d in cpus]
    if name == "mirrored" or (name == "auto" and len(devices) > 1):
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def configure_tensorflow(deterministic: bool = False) -> None:
    """Process-wide TensorFlow settings of a training (or benchmark) process, before any step is traced.

    Grappler's remapper is off: on the D step's gradient it fails on the fusion of conv, bias and
    leaky ReLU whose gradient still needs the bias output, logs an error-looking
    ``remapper failed: INVALID_ARGUMENT ...`` line and leaves that graph unfused anyway.
    """
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"remapping": False})
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from progan_tf.datasets import reader as data_lib
    from progan_tf.training import Interrupted, Trainer, TrainingError, worker_role

    configure_tensorflow(FLAGS.deterministic)
    # Before anything else touches the TF runtime (MultiWorkerMirroredStrategy requires it).
    strategy = make_strategy(FLAGS.strategy, FLAGS.num_cpu_devices, FLAGS.collective_timeout)
    num_workers, is_chief = worker_role(strategy)

    run_dir = _resume_run_dir(FLAGS.resume) if FLAGS.resume else None
    config = FLAGS.config
    run_info = {}
    if run_dir:
        if not os.path.isdir(run_dir):
            raise app.UsageError(f"--resume: run directory {run_dir} does not exist")
        if config is None:
            config = load_run_config(run_dir)
        run_info = _read_run_info(run_dir)
    if config is None:
        raise app.UsageError("--config is required (e.g. --config=configs/fashion_mnist_cpu.py)")
    dataset_dir = FLAGS.dataset_dir or run_info.get("dataset_dir")
    if not dataset_dir:
        raise app.UsageError("--dataset_dir is required (a directory made by progan-dataset)")
    try:
        info = data_lib.read_dataset_info(dataset_dir)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--dataset_dir: {e}") from None

    if run_dir is None and not is_chief:
        run_dir = tempfile.mkdtemp(prefix="progan-worker-run-")   # the chief alone creates the run directory
        _CREATED.append(run_dir)
    elif FLAGS.resume and is_chief:
        _remove_checkpoint_temps(run_dir)
    if run_dir is None:
        run_dir = _create_run(config, info.name, dataset_dir, tf.__version__)
    logging.info("Run directory: %s%s", run_dir, "" if num_workers == 1 else
                 f" ({num_workers} workers; this one is {'the chief' if is_chief else 'not the chief'})")

    try:
        trainer = Trainer(config, dataset_dir, run_dir, strategy, resume_from=FLAGS.resume,
                          strict_resume=FLAGS.strict_resume)
    except TrainingError as e:
        raise app.UsageError(str(e)) from None
    try:
        summary = trainer.run()
    except TrainingError as e:
        logging.error("%s", e)
        print(f"progan-train: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as e:
        print(f"progan-train: stopped by signal {e.signum}; checkpoint {e.checkpoint}\n"
              f"resume with: progan-train --resume={run_dir}", file=sys.stderr)
        sys.exit(128 + e.signum)
    finally:
        trainer.close(release_input=False)   # the process exits next: see run()
    print(f"Done: {summary['kimg']:.1f} kimg, {summary['ticks']} ticks, lod {summary['lod']:.2f} "
          f"({summary['resolution']}x{summary['resolution']}), {summary['time_s']:.0f} s, stopped by "
          f"{summary['stopped_by']}.")
    if is_chief:
        print(f"Run directory: {run_dir}\nCheckpoint: {summary['checkpoint']}")
    else:
        print("This worker is not the chief: the chief wrote the run directory and checkpoints.")
        if not FLAGS.resume:
            shutil.rmtree(run_dir, ignore_errors=True)


def _flag_value(argv, name: str):
    """The value of ``--name=V`` or ``--name V`` in argv (the last one), else None."""
    value = None
    for i, arg in enumerate(argv[1:], 1):
        m = re.match(rf"--?{name}(=(.*))?$", arg)
        if m:
            value = m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def _with_run_config(argv):
    """argv with ``--config=<run>/config.json`` first when it resumes and overrides fields without
    --config: the overrides then apply to the run's own config (ml_collections defines the override
    flags only once --config has been parsed)."""
    has_overrides = any(re.match(r"--?(no)?config\.", a) for a in argv[1:])
    resume = _flag_value(argv, "resume")
    if not has_overrides or not resume or any(re.match(r"--?config(=|$)", a) for a in argv[1:]):
        return argv
    return argv[:1] + [f"--config={os.path.join(_resume_run_dir(resume), rundir.CONFIG_FILE)}"] + argv[1:]


def _parse_flags(argv):
    """The tool's flags, then absl's; config-override mistakes are reported in one line, not a traceback."""
    try:
        full_argv = _with_run_config(argv)
    except app.UsageError as e:
        print(f"progan-train: error: {e}", file=sys.stderr)
        sys.exit(2)
    flag = "--config" if full_argv is argv else "--resume"
    try:
        return flags.FLAGS(FLAGS(full_argv, known_only=True))
    except ConfigFileError as e:
        print(f"progan-train: error: {flag}: {e}", file=sys.stderr)
    except flags.Error as e:
        print(f"progan-train: error: {e}\nPass --helpshort to see the flags.", file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
        print(f"progan-train: error: bad config override ({e}) in: {overrides}\nConfig fields and their "
              f"types are in progan_tf/config.py and the preset file.", file=sys.stderr)
    sys.exit(2)


def _main_leaving_no_failed_run(argv):
    """`main`; when it fails, the run directory it created is removed unless it holds a checkpoint, so
    a start that fails its checks (or a first tick that fails) leaves no run directory behind."""
    try:
        return main(argv)
    except BaseException as e:
        for run_dir in _CREATED:
            if not rundir.list_checkpoints(run_dir):
                logging.info("Removing %s: the run failed before its first checkpoint", run_dir)
                shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(e, app.UsageError):   # one line, not absl's usage text before it
            print(f"progan-train: error: {e}", file=sys.stderr)
            sys.exit(e.exitcode)
        raise


def _exit_code(e: SystemExit) -> int:
    """The status ``sys.exit(e.code)`` would give (a message is printed, as Python does)."""
    if e.code is None or isinstance(e.code, int):
        return int(e.code or 0)
    print(e.code, file=sys.stderr)
    return 1


def _leave(code: int) -> None:
    """Ends the process once everything it wrote is on disk, without the interpreter's shutdown.

    By then the checkpoints are written (synchronously), log.txt, TensorBoard's events and the
    JSON files closed. What a normal exit would still do is tear down the TensorFlow runtime:
    delete the stage's tf.data iterator, which waits for its prefetch thread to finish the
    element it is preparing (at an epoch boundary a whole shuffle-buffer fill, up to minutes on
    a busy machine), and join TF's thread pools. ``os._exit`` skips that; only the logging
    handlers and the standard streams need flushing first.
    """
    import logging as std_logging

    logging.flush()
    std_logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed or broken pipe: nothing more can be said
            pass
    os._exit(code)


def run():
    """Console-script entry point (``progan-train``)."""
    try:
        toolflags.run_app("progan-train", FLAGS, _main_leaving_no_failed_run, toolflags.flag_help(__doc__, FLAGS),
                          flags_parser=_parse_flags)
    except SystemExit as e:
        if "tensorflow" not in sys.modules:   # --help, a flag error: no runtime to wind down
            raise
        _leave(_exit_code(e))


if __name__ == "__main__":
    run()

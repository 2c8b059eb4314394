"""``progan-experiment``: one config and its ablations trained for equal wall-clock time, evaluated side by side.

    progan-experiment --config=configs/fashion_mnist_cpu.py --dataset_dir=datasets/fashion-mnist \\
        --reference_dir=datasets/fashion-mnist-test --output_dir=experiments/fmnist --minutes=10

For each of ``--variants`` (default: the config itself, ``baseline``, and the
ablations ``no_growing``, ``no_pixelnorm``, ``no_equalized_lr``, ``no_mbstd``,
``no_ema``; combine ablations with ``+``, e.g. ``no_ema+lsgan``) it runs
``progan-train`` with ``train.max_time_minutes = --minutes``, a checkpoint every
tick, one run after another (``--jobs=N`` runs N at once, each pinned to its
share of the CPU cores). Then it evaluates every checkpoint of every run
against ``--reference_dir``, a held-out split that training never sees (for
Fashion-MNIST: ``progan-dataset create_mnist DIR SRC --split=test``): SWD on
``--num_images`` fakes, and MS-SSIM of the final generator's fakes next to the
reals'. It writes to ``--output_dir``:

    results.md          the table, and the command, commit and machine that made it
    results.json        every number, and each checkpoint's SWD with its training time
    swd.png             SWD (average over levels) against training time, one line per run
    grids/<variant>.png the final fakes of each run; grids/reals.png the training reals
    runs/<variant>/     the run directories, train.log (the trainer's console output)

An interrupted experiment continues where it stopped: a variant whose run
finished is not trained again (a partial one is trained again from scratch, so
that every run gets the same budget), and evaluation of finished runs is
reused. ``swd.png`` needs matplotlib (``pip install progan_tf[plot]``); without
it the plot is skipped with a warning. See docs/results.md for one such
experiment.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

from absl import app, flags, logging

from progan_tf import rundir, toolflags

DEFAULT_VARIANTS = ["baseline", "no_growing", "no_pixelnorm", "no_equalized_lr", "no_mbstd", "no_ema"]
BASELINE = "baseline"
STATE_FILE = "results.json"

FLAGS = flags.FlagValues()
_d = dict(flag_values=FLAGS)
flags.DEFINE_string("config", "configs/fashion_mnist_cpu.py", "Base config file (configs/<preset>.py).", **_d)
flags.DEFINE_list("variants", DEFAULT_VARIANTS, "Runs: 'baseline' (the config as it is) or ablations of "
                  "progan_tf.config.ABLATIONS, several joined with '+'.", **_d)
flags.DEFINE_string("dataset_dir", None, "Training dataset (TFRecord pyramid made by progan-dataset).", **_d)
flags.DEFINE_string("reference_dir", None, "Held-out dataset the fakes are compared with (same resolution and "
                    "channels; e.g. create_mnist --split=test).", **_d)
flags.DEFINE_string("output_dir", None, "Directory of the experiment's results (created; an existing one "
                    "is continued).", **_d)
flags.DEFINE_float("minutes", 10.0, "Training time of each run, in minutes (train.max_time_minutes).", **_d)
flags.DEFINE_integer("num_images", 10000, "Fakes (and reference images) per SWD evaluation; MS-SSIM uses "
                     "num_images // 2 pairs.", **_d)
flags.DEFINE_integer("jobs", 1, "Runs trained at once, each pinned to cores // jobs CPU cores.", **_d)
flags.DEFINE_multi_string("override", [], "Extra config override for every run, as progan-train takes it "
                          "(e.g. --override=train.total_kimg=200); repeatable.", **_d)
flags.DEFINE_integer("seed", 0, "Seed of the evaluation (latents, SWD directions, MS-SSIM pairs).", **_d)


class ExperimentError(ValueError):
    """A bad argument or a run that failed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str          # as given: baseline, no_ema, no_ema+lsgan
    ablations: str     # the config-file suffix progan-train takes: "" or "no_ema,lsgan"


def parse_variants(names: Sequence[str]) -> List[Variant]:
    """`Variant`s of ``--variants``; unknown ablations and repeated names are errors."""
    from progan_tf.config import ABLATIONS

    variants, seen = [], set()
    for name in names:
        parts = [] if name == BASELINE else name.split("+")
        unknown = [p for p in parts if p not in ABLATIONS]
        if unknown or not name:
            raise ExperimentError(f"--variants: unknown ablation {', '.join(unknown) or repr(name)}; choose "
                                  f"'{BASELINE}' or from {', '.join(ABLATIONS)} (join several with '+')")
        if name in seen:
            raise ExperimentError(f"--variants: {name} is given twice")
        seen.add(name)
        variants.append(Variant(name, ",".join(parts)))
    return variants


# --------------------------------------------------------------------------- training

def variant_dir(output_dir: str, variant: Variant) -> str:
    return os.path.join(output_dir, "runs", variant.name)


def find_run_dir(root: str) -> Optional[str]:
    """The (one) numbered run directory progan-train made under `root`, or None."""
    if not os.path.isdir(root):
        return None
    runs = sorted(n for n in os.listdir(root) if n[:5].isdigit() and os.path.isdir(os.path.join(root, n)))
    return os.path.join(root, runs[-1]) if runs else None


def finished_run(root: str) -> Optional[str]:
    """The run directory under `root` if its run ended at total_kimg or the time limit (not by a signal)."""
    run_dir = find_run_dir(root)
    if run_dir is None or not os.path.isfile(os.path.join(run_dir, rundir.SUMMARY_FILE)):
        return None
    summary = rundir.read_json(os.path.join(run_dir, rundir.SUMMARY_FILE))
    return run_dir if summary.get("stopped_by") in ("done", "time limit") else None


def train_command(variant: Variant, config: str, dataset_dir: str, root: str, minutes: float,
                  overrides: Sequence[str]) -> List[str]:
    """The progan-train command line of one run: a checkpoint every tick, none deleted, stop after `minutes`."""
    spec = f"{config}:{variant.ablations}" if variant.ablations else config
    return [sys.executable, "-m", "progan_tf.train", f"--config={spec}", f"--dataset_dir={dataset_dir}",
            f"--result_dir={root}", f"--config.train.max_time_minutes={minutes:g}",
            "--config.train.network_snapshot_ticks=1", "--config.train.keep_checkpoints=100000",
            *(f"--config.{o}" for o in overrides)]


def core_sets(jobs: int) -> List[Optional[List[int]]]:
    """The CPU cores each of `jobs` concurrent runs is pinned to (None: not pinned)."""
    if jobs <= 1 or not hasattr(os, "sched_getaffinity"):
        return [None] * max(jobs, 1)
    cores = sorted(os.sched_getaffinity(0))
    share = max(1, len(cores) // jobs)
    return [cores[(i * share) % len(cores):(i * share) % len(cores) + share] for i in range(jobs)]


def _start(command: List[str], log_path: str, cores: Optional[List[int]]) -> subprocess.Popen:
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    with open(log_path, "w") as log:   # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)


def train_variants(variants: List[Variant], jobs: int, command_for) -> Dict[str, str]:
    """Trains the variants (`jobs` at once) that have no finished run; ``{name: run directory}`` of all."""
    pending = []
    for v in variants:
        root = command_for(v)[1]
        done = finished_run(root)
        if done:
            logging.info("%s: finished run %s, not trained again", v.name, done)
            continue
        if os.path.isdir(root):
            logging.warning("%s: removing the unfinished run under %s (every run gets the whole budget)", v.name, root)
            shutil.rmtree(root)
        pending.append(v)
    slots = core_sets(jobs)
    running: Dict[str, tuple] = {}
    while pending or running:
        while pending and len(running) < len(slots):
            v = pending.pop(0)
            command, root = command_for(v)
            os.makedirs(root, exist_ok=True)
            taken = [r[2] for r in running.values()]
            cores = next((s for s in slots if s is not None and s not in taken), None)
            print(f"[{time.strftime('%H:%M:%S')}] training {v.name}" + (f" on cores {cores}" if cores else "")
                  + f": {' '.join(command[1:])}", flush=True)
            running[v.name] = (_start(command, os.path.join(root, "train.log"), cores), root, cores)
        time.sleep(1.0)
        for name, (proc, root, _) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode != 0:
                for p, _, _ in running.values():
                    p.terminate()
                raise ExperimentError(f"run {name} failed (exit {proc.returncode}); its output: "
                                      f"{os.path.join(root, 'train.log')}")
            print(f"[{time.strftime('%H:%M:%S')}] {name} finished: {finished_run(root)}", flush=True)
    return {v.name: finished_run(command_for(v)[1]) for v in variants}


# --------------------------------------------------------------------------- evaluation

def checkpoint_times(run_dir: str) -> Dict[int, int]:
    """``{images shown: training seconds}`` of the run's ticks (each checkpoint is written at a tick's end)."""
    return {int(round(t.kimg * 1000)): t.time_s for t in rundir.read_ticks(run_dir)}


def _time_of(times: Dict[int, int], nimg: int) -> Optional[int]:
    """The tick time of a checkpoint; log.txt rounds kimg to 0.1, so match within 50 images."""
    near = [n for n in times if abs(n - nimg) <= 50]
    return times[min(near, key=lambda n: abs(n - nimg))] if near else None


def evaluate_run(run_dir: str, reference_dir: str, dataset_dir: str, num_images: int, seed: int) -> dict:
    """SWD of every checkpoint (with its training time) and the final one's MS-SSIM, against `reference_dir`."""
    from progan_tf.metrics import cache as cache_lib
    from progan_tf.metrics import evaluate, generators, runs

    cache = cache_lib.StatsCache(runs.cache_dir_for(reference_dir, os.path.dirname(run_dir)))
    reference = evaluate.dataset_source(reference_dir, 0, None, cache)
    targets = generators.list_checkpoints(run_dir)
    if not targets:
        raise ExperimentError(f"{run_dir}: the run wrote no checkpoint")
    times = checkpoint_times(run_dir)
    swd = evaluate.Evaluator(["swd"], num_images, seed=seed)
    curve = []
    for target, result in zip(targets, runs.evaluate_targets(targets, swd, reference, dataset_dir, None)):
        curve.append({"checkpoint": target.name, "kimg": target.kimg, "time_s": _time_of(times, target.nimg),
                      **result})
        print(f"  {target.name:<16} kimg {target.kimg:<8.1f} SWDx1e3_avg {result['SWDx1e3_avg']:.4f}", flush=True)
    msssim = evaluate.Evaluator(["msssim"], num_images, seed=seed)
    final = runs.evaluate_targets(targets[-1:], msssim, reference, dataset_dir, None)[0]
    summary = rundir.read_json(os.path.join(run_dir, rundir.SUMMARY_FILE))
    return {"run_dir": run_dir, "kimg": summary["kimg"], "resolution": summary["resolution"],
            "lod": summary["lod"], "time_s": summary["time_s"], "curve": curve,
            "final": {**curve[-1], **final}}


# --------------------------------------------------------------------------- outputs

def _swd_levels(result: dict) -> List[str]:
    """SWD keys of the finest level first, then the average (``SWDx1e3_32 ... SWDx1e3_avg``)."""
    levels = sorted((k for k in result if k.startswith("SWDx1e3_") and k != "SWDx1e3_avg"),
                    key=lambda k: -int(k.rsplit("_", 1)[1]))
    return ["SWDx1e3_avg"] + levels


def results_table(results: Dict[str, dict]) -> str:
    """The markdown table: one row per variant, numbers as the evaluation printed them (4 decimals)."""
    first = next(iter(results.values()))["final"]
    swd_keys = _swd_levels(first)
    header = (["run", "kimg", "reached", "minutes"] + [k.replace("SWDx1e3_", "SWD ") for k in swd_keys]
              + ["MS-SSIM", "MS-SSIM reals"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        f = r["final"]
        cells = ([f"`{name}`", f"{r['kimg']:.1f}", f"{r['resolution']}x{r['resolution']}", f"{r['time_s'] / 60:.1f}"]
                 + [f"{f[k]:.4f}" for k in swd_keys] + [f"{f['MS-SSIM']:.4f}", f"{f['MS-SSIM_ref']:.4f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plot(results: Dict[str, dict], path: str) -> Optional[str]:
    """swd.png: SWD average against training minutes, one line per run (None without matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        logging.warning("matplotlib is not installed (pip install progan_tf[plot]): no %s", path)
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for name, r in results.items():
        points = [(p["time_s"] / 60, p["SWDx1e3_avg"]) for p in r["curve"] if p["time_s"] is not None]
        ax.plot(*zip(*points), marker="o", markersize=3, label=name)
    ax.set_yscale("log")   # early checkpoints are ~10x worse than late ones
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("SWD x1e3, average over levels (log; lower is better)")
    ax.set_title("SWD against the held-out reference, by checkpoint")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def copy_grids(results: Dict[str, dict], output_dir: str) -> Dict[str, str]:
    """grids/<variant>.png (each run's newest fakes) and grids/reals.png; ``{name: path}``."""
    grids = os.path.join(output_dir, "grids")
    os.makedirs(grids, exist_ok=True)
    copied = {}
    for name, r in results.items():
        fakes = rundir.list_fakes(r["run_dir"])
        if fakes:
            copied[name] = shutil.copyfile(fakes[max(fakes)], os.path.join(grids, f"{name}.png"))
        reals = os.path.join(r["run_dir"], rundir.REALS_FILE)
        if "reals" not in copied and os.path.isfile(reals):
            copied["reals"] = shutil.copyfile(reals, os.path.join(grids, "reals.png"))
    return copied


def machine_description() -> str:
    """CPU model and usable cores (from /proc/cpuinfo on Linux)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def source_commit() -> str:
    """The git commit of the progan_tf source tree (with '+changes' if it has uncommitted ones)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head + (" +uncommitted changes" if dirty else "")


def write_results(state: dict, output_dir: str) -> str:
    """results.md from the experiment's state; returns its path."""
    results = state["results"]
    plot = write_plot(results, os.path.join(output_dir, "swd.png"))
    grids = copy_grids(results, output_dir)
    lines = [f"# {state['config']}: {len(results)} runs of {state['minutes']:g} minutes each", "",
             f"- command: `{state['command']}`",
             f"- commit: {state['commit']}" + (f" (this page written at {state['page_commit']})"
                                               if state.get("page_commit", state["commit"]) != state["commit"] else "")
             + f"; TensorFlow {state['tensorflow']}",
             f"- machine: {state['machine']}; {state['jobs']} run(s) at a time",
             f"- training data: `{state['dataset_dir']}`; reference: `{state['reference_dir']}` (held out)",
             f"- SWD: {state['num_images']} fakes of the final checkpoint against as many reference images, x1e3; "
             f"MS-SSIM: {state['num_images'] // 2} random pairs of fakes, and of reference images",
             f"- finished: {state['finished']}", "", results_table(results), ""]
    if plot:
        lines += ["![SWD against training time](swd.png)", ""]
    lines += ["| " + " | ".join(grids) + " |", "|" + "---|" * len(grids),
              "| " + " | ".join(f"![{n}](grids/{os.path.basename(p)})" for n, p in grids.items()) + " |", ""]
    path = os.path.join(output_dir, "results.md")
    rundir.write_text(path, "\n".join(lines))
    return path


# --------------------------------------------------------------------------- the tool

def _check_flags() -> None:
    for name in ("dataset_dir", "reference_dir", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    for name in ("dataset_dir", "reference_dir"):
        if not os.path.isdir(getattr(FLAGS, name)):
            raise app.UsageError(f"--{name}: {getattr(FLAGS, name)} is not a directory")
    if not os.path.isfile(FLAGS.config.split(":", 1)[0]):
        raise app.UsageError(f"--config: {FLAGS.config} does not exist")
    if ":" in FLAGS.config:
        raise app.UsageError("--config: give the config file alone; ablations go in --variants")
    if FLAGS.minutes <= 0 or FLAGS.num_images < 2 or FLAGS.jobs < 1:
        raise app.UsageError("--minutes must be > 0, --num_images >= 2 and --jobs >= 1")


def _load_state(output_dir: str, settings: dict) -> dict:
    """results.json of an experiment to continue (same settings), else a new state."""
    path = os.path.join(output_dir, STATE_FILE)
    if os.path.isfile(path):
        state = rundir.read_json(path)
        changed = [k for k, v in settings.items() if state.get(k) != v]
        if changed:
            raise ExperimentError(f"{output_dir} holds an experiment with other settings ({', '.join(changed)}); "
                                  "use another --output_dir")
        return state
    return {**settings, "commit": source_commit(), "results": {}}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    try:
        variants = parse_variants(FLAGS.variants)
    except ExperimentError as e:
        raise app.UsageError(str(e)) from None
    output_dir = FLAGS.output_dir
    settings = {"config": FLAGS.config, "dataset_dir": os.path.abspath(FLAGS.dataset_dir),
                "reference_dir": os.path.abspath(FLAGS.reference_dir), "minutes": FLAGS.minutes,
                "num_images": FLAGS.num_images, "seed": FLAGS.seed, "overrides": list(FLAGS.override)}
    try:
        os.makedirs(output_dir, exist_ok=True)
        state = _load_state(output_dir, settings)
        rundir.write_json(os.path.join(output_dir, STATE_FILE), state)   # the commit that trains, from the start

        def command_for(v: Variant):
            root = variant_dir(output_dir, v)
            return train_command(v, FLAGS.config, FLAGS.dataset_dir, root, FLAGS.minutes, FLAGS.override), root

        run_dirs = train_variants(variants, FLAGS.jobs, command_for)
        import tensorflow as tf

        for v in variants:
            done = state["results"].get(v.name)
            if done and done.get("run_dir") == run_dirs[v.name]:
                continue
            print(f"[{time.strftime('%H:%M:%S')}] evaluating {v.name} ({run_dirs[v.name]})", flush=True)
            state["results"][v.name] = evaluate_run(run_dirs[v.name], FLAGS.reference_dir, FLAGS.dataset_dir,
                                                    FLAGS.num_images, FLAGS.seed)
            rundir.write_json(os.path.join(output_dir, STATE_FILE), state)
        state["results"] = {v.name: state["results"][v.name] for v in variants}
        state.setdefault("commit", source_commit())   # of the code that trained the runs
        state.update(command=" ".join(["progan-experiment"] + sys.argv[1:]), page_commit=source_commit(),
                     tensorflow=tf.__version__, machine=machine_description(), jobs=FLAGS.jobs,
                     finished=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
        rundir.write_json(os.path.join(output_dir, STATE_FILE), state)
        path = write_results(state, output_dir)
    except ExperimentError as e:
        print(f"progan-experiment: error: {e}", file=sys.stderr)
        return 1
    print(results_table(state["results"]))
    print(f"Results: {path}")
    return 0


def run():
    """Console-script entry point (``progan-experiment``)."""
    toolflags.run_app("progan-experiment", FLAGS, main, toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

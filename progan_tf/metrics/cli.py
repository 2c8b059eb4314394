"""`progan-metrics`: SWD, FID, Inception score and MS-SSIM of trained generators or between image sets.

Generators::

    progan-metrics --metrics=swd,fid --num_images=10000 results/00001-fmnist     # every checkpoint, in order
    progan-metrics --metrics=swd results/00001-fmnist/checkpoints/ckpt-400000     # one checkpoint
    progan-metrics --metrics=swd --dataset_dir=datasets/fmnist exported/fmnist    # a SavedModel

A run directory evaluates every ``checkpoints/ckpt-<nimg>`` oldest first (a
damaged one is skipped with a warning naming it); the
dataset defaults to the run's ``run.json`` (``--dataset_dir`` overrides it).
Each evaluation appends a line to ``metric-<name>.txt`` in the run directory
(or `--output_dir`) and writes TensorBoard scalars ``Metrics/<key>`` at step =
kimg. Fakes are generated at the model's full resolution from seeded latents
(and, for conditional models, label rows drawn from the dataset).

Reals only::

    progan-metrics --reals_only --split_halves --dataset_dir=datasets/fashion_mnist \\
        --metrics=swd,msssim --num_images=10000
    progan-metrics --reals_only --dataset_dir=datasets/a --dataset_dir2=datasets/b --metrics=fid \\
        --inception_weights=inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5

`--split_halves` compares images [0, N) with [N, 2N) of one dataset;
`--dataset_dir2` compares the first N images of two datasets. Statistics of
dataset images are cached in ``<dataset_dir>/.metrics-cache/`` (or
`--cache_dir`), so repeated evaluations only pay for the fakes or the other side.
"""
import functools
import os
import sys
import time
from typing import Dict, List, Optional

from absl import app, flags, logging

from progan_tf import rundir, toolflags
from progan_tf.metrics import cache as cache_lib
from progan_tf.metrics import evaluate, fid, generators, registry, runs

# Own FlagValues, not absl's global FLAGS, so importing this module next to
# other CLIs (train, dataset tool) cannot clash on flag names like --dataset_dir.
FLAGS = flags.FlagValues()
_bool = functools.partial(flags.DEFINE_bool, flag_values=FLAGS)
_integer = functools.partial(flags.DEFINE_integer, flag_values=FLAGS)
_string = functools.partial(flags.DEFINE_string, flag_values=FLAGS)
_list = functools.partial(flags.DEFINE_list, flag_values=FLAGS)

_list("metrics", ["swd"], f"Metrics to compute: {', '.join(registry.metric_names())}.")
_integer("num_images", 10000, "Images per set (MS-SSIM uses num_images // 2 pairs).")
_string("dataset_dir", None, "Dataset directory (TFRecord pyramid) of the reference images "
                             "(default for a run or checkpoint: the dataset in its run.json).")
_string("dataset_dir2", None, "With --reals_only: second dataset to compare against.")
_bool("split_halves", False, "With --reals_only: compare images [0, N) and [N, 2N) of --dataset_dir.")
_bool("reals_only", False, "Compare real image sets (no generator).")
_integer("resolution", None, "Dataset level to read (default: the full resolution).")
_integer("batch_size", 256, "Images per batch read from a dataset or generator.")
_integer("seed", 0, "Seed of SWD's neighbourhoods and directions, MS-SSIM's pairs and the fakes' latents.")
_integer("num_threads", None, "SWD worker threads (default: usable CPU cores).")
_string("cache_dir", None, "Cache of dataset statistics (default: <dataset_dir>/.metrics-cache).")
_bool("use_cache", True, "Read and write cached dataset statistics.")
_string("inception_weights", "imagenet",
                    "'imagenet' (Keras downloads them) or a local Keras InceptionV3 weights file "
                    "(.h5/.weights.h5; notop for FID, with the top for the Inception score).")
_string("feature_extractor", None,
                    "FID features from a SavedModel directory or a Keras .keras/.h5 model instead of Inception.")
_string("extractor_output", None,
                    "SavedModel output key, or Keras layer name, to take features from.")
_list("extractor_input_range", ["-1", "1"], "Pixel range the feature extractor expects.")
_integer("extractor_input_size", None, "Input size for a SavedModel whose signature leaves it open.")
_integer("extractor_batch_size", 64, "Images per feature-extractor call.")
_string("output", None, "With --reals_only: append one line per evaluation to this text file.")
_string("label", None, "Row label in --output (default: the evaluated set's name).")
_string("output_dir", None, "Where metric-<name>.txt and TensorBoard scalars of generator evaluations go "
                            "(default: the run directory; a SavedModel: none unless given).")


def _check_args(argv: List[str]) -> None:
    targets = argv[1:]
    if targets:
        if len(targets) > 1:
            raise app.UsageError(f"give one run directory, checkpoint or SavedModel, got {len(targets)}: "
                                 f"{' '.join(targets)}")
        if FLAGS.reals_only or FLAGS.split_halves or FLAGS.dataset_dir2:
            raise app.UsageError(f"--reals_only, --split_halves and --dataset_dir2 compare datasets; "
                                 f"drop them to evaluate {targets[0]}")
        return
    if FLAGS.dataset_dir is None:
        raise app.UsageError("--dataset_dir is required")
    if not FLAGS.reals_only:
        raise app.UsageError("give a run directory / checkpoint / SavedModel to evaluate, or --reals_only")
    if bool(FLAGS.split_halves) == bool(FLAGS.dataset_dir2):
        raise app.UsageError("--reals_only needs exactly one of --split_halves and --dataset_dir2")


def _res_log2() -> Optional[int]:
    if FLAGS.resolution is None:
        return None
    res_log2 = FLAGS.resolution.bit_length() - 1
    if 2 ** res_log2 != FLAGS.resolution:
        raise app.UsageError(f"--resolution must be a power of two, got {FLAGS.resolution}")
    return res_log2


def _sources(cache_for):
    res_log2 = _res_log2()
    first = evaluate.dataset_source(FLAGS.dataset_dir, 0, res_log2, cache_for(FLAGS.dataset_dir))
    if FLAGS.split_halves:
        second = evaluate.dataset_source(FLAGS.dataset_dir, FLAGS.num_images, res_log2,
                                         cache_for(FLAGS.dataset_dir))
    else:
        second = evaluate.dataset_source(FLAGS.dataset_dir2, 0, res_log2, cache_for(FLAGS.dataset_dir2))
    return first, second


def format_table(result: Dict[str, float]) -> str:
    width = max(len(k) for k in result) + 2
    lines = [f"{'metric':<{width}}value"]
    lines += [f"{k:<{width}}{v:.4f}" for k, v in result.items()]
    return "\n".join(lines)


def _evaluate_datasets(evaluator, cache_for) -> int:
    """--reals_only: one dataset (slice) against another."""
    reference, evaluated = _sources(cache_for)
    start = time.time()
    result = evaluator.evaluate(reference, evaluated)
    seconds = time.time() - start
    print(f"{reference.label} vs {evaluated.label}, {FLAGS.num_images} images each, {seconds:.1f} s")
    print(format_table(result))
    if FLAGS.output:
        runs.append_metric_line(FLAGS.output, FLAGS.label or evaluated.label, None, FLAGS.num_images, seconds,
                                result)
    return 0


class _RowPrinter:
    """Prints one row per evaluated snapshot under a header (as the original's evaluate_metrics)."""

    def __init__(self):
        self.header = None

    def __call__(self, target, result: Dict[str, float], seconds: float) -> None:
        if self.header is None:
            self.header = f"{'Snapshot':<24}{'kimg':<10}{'Time_eval':<12}" + "".join(f"{k:<16}" for k in result)
            print(self.header, flush=True)
        kimg = "-" if target.kimg is None else f"{target.kimg:.1f}"
        print(f"{target.name:<24}{kimg:<10}{seconds:<12.1f}" + "".join(f"{v:<16.4f}" for v in result.values()),
              flush=True)


def _evaluate_generators(target_path: str, evaluator, cache_for) -> int:
    """A run directory (every checkpoint), a checkpoint or a SavedModel against its dataset."""
    targets, run_dir = generators.resolve_targets(target_path)
    dataset_dir = FLAGS.dataset_dir or generators.default_dataset_dir(targets, run_dir)
    if not dataset_dir:
        where = (f"{os.path.join(run_dir, rundir.RUN_INFO_FILE)} names none" if run_dir is not None
                 else "the SavedModel's metadata leads to no run.json")
        raise ValueError(f"{target_path}: no --dataset_dir given and {where}; pass --dataset_dir=<dataset directory>")
    if not FLAGS.dataset_dir and not os.path.isdir(dataset_dir):
        raise ValueError(f"{target_path}: the training dataset {dataset_dir} (from run.json) does not exist; "
                         "pass --dataset_dir=<dataset directory>")
    reference = evaluate.dataset_source(dataset_dir, 0, _res_log2(), cache_for(dataset_dir, run_dir))
    output_dir = FLAGS.output_dir or run_dir
    log = runs.MetricsLog(output_dir, evaluator.metrics) if output_dir else None
    print(f"{len(targets)} snapshot(s) of {target_path} vs {reference.label} ({reference.resolution}x"
          f"{reference.resolution}), {FLAGS.num_images} images each", flush=True)
    try:
        runs.evaluate_targets(targets, evaluator, reference, dataset_dir, log, reference.resolution, _RowPrinter())
    finally:
        if log is not None:
            log.close()
    if log is not None:
        print(f"results: {', '.join(log.path(m) for m in evaluator.metrics)}")
    return 0


def main(argv: List[str]) -> Optional[int]:
    _check_args(argv)

    def cache_for(dataset_dir, fallback_dir=None):
        if not FLAGS.use_cache:
            return None
        return cache_lib.StatsCache(FLAGS.cache_dir or runs.cache_dir_for(dataset_dir, fallback_dir))

    try:
        input_range = tuple(float(v) for v in FLAGS.extractor_input_range)
        options = evaluate.ExtractorOptions(FLAGS.inception_weights, FLAGS.feature_extractor,
                                            FLAGS.extractor_output, input_range,
                                            FLAGS.extractor_input_size, FLAGS.extractor_batch_size)
        evaluator = evaluate.Evaluator(FLAGS.metrics, FLAGS.num_images, FLAGS.batch_size, FLAGS.seed,
                                       FLAGS.num_threads, options)
        if len(argv) > 1:
            return _evaluate_generators(argv[1], evaluator, cache_for)
        return _evaluate_datasets(evaluator, cache_for)
    except (fid.ExtractorError, generators.TargetError, ValueError) as e:
        logging.error("%s", e)
        print(f"progan-metrics: error: {e}", file=sys.stderr)
        return 1



def cli(argv) -> int:
    """Parses ``argv`` from the flag defaults and runs ``main`` (for tests and embedding)."""
    return toolflags.run_cli("progan-metrics", FLAGS, main, argv)


def run():
    """Console-script entry point (``progan-metrics``)."""
    toolflags.run_app("progan-metrics", FLAGS, main, toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

"""progan-dataset: create and inspect ProGAN multi-resolution TFRecord datasets.

The command-line layer of the datasets package, and the only module that reads flags: each
command reads its flags here and calls a library function with plain arguments.

Usage: ``progan-dataset <command> <args...> [--flags]``; ``progan-dataset --help``
lists the commands, ``progan-dataset <command> --help`` explains one.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import textwrap
from typing import Callable, Dict, List, Optional, Sequence

from absl import flags

from progan_tf import toolflags
from progan_tf.datasets import writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import celeba, cifar_svhn, image_folder, lsun, mnist, tfds_images

# Flags (shared by all sub-commands; `progan-dataset <command> --help` lists the ones
# each command uses). They live in their own FlagValues, not absl's global FLAGS, so
# importing this module next to other CLIs (train, metrics) cannot clash on names.

FLAGS = flags.FlagValues()
_DEFINE_bool = functools.partial(flags.DEFINE_bool, flag_values=FLAGS)
_DEFINE_integer = functools.partial(flags.DEFINE_integer, flag_values=FLAGS)
_DEFINE_string = functools.partial(flags.DEFINE_string, flag_values=FLAGS)

_DEFINE_bool("shuffle", None, "Write images in a shuffled order (the original's "
                  "np.random.RandomState(seed).shuffle); --noshuffle keeps source order. Default: "
                  "shuffled, except create_lsun, which keeps the LMDB's cursor order as the original does.")
_DEFINE_integer("seed", 123, "Seed of the shuffled order (the original uses 123).")
_DEFINE_integer("max_images", None, "Write at most this many images (the first ones "
                     "of the shuffled order; for create_from_tfds the first ones of the "
                     "split). For extract/display: read at most this many.")
_DEFINE_integer("shards", 1, "Split each resolution level over this many files "
                     "<name>-rNN-SSSSS-of-TTTTT.tfrecords (1 = the original's single file).")
_DEFINE_integer("num_workers", min(8, os.cpu_count() or 1),
                     "Threads decoding/resizing images in parallel (0 = in the main thread).")
_DEFINE_bool("strict", False, "Stop with an error at the first unreadable image "
                  "instead of skipping it with a warning.")
_DEFINE_bool("overwrite", False, "Replace an existing dataset (or extract directory) "
                  "at the output path.")
_DEFINE_bool("progress", True, "Show a progress bar (only on a terminal).")
_DEFINE_integer("expected_images", -1, "Image count the source must hold: -1 = the "
                     "standard download's count (CIFAR 50000, SVHN train 73257, CelebA "
                     "202599), 0 = do not check.")
_DEFINE_integer("resolution", None, "Output resolution (power of two >= 4). Images "
                     "are centre-cropped to a square and resized (Lanczos) to it. Without it, "
                     "create_from_images/create_from_tfds need square power-of-two images of "
                     "one size; create_lsun defaults to 256.")
_DEFINE_integer("channels", 0, "Force 1 (grayscale) or 3 (RGB) channels; 0 = take them "
                     "from the first image (mixed channel counts are then an error).")
_DEFINE_bool("recursive", False, "create_from_images: also read images in "
                  "sub-directories.")
_DEFINE_bool("labels_from_subdirs", False, "create_from_images: one-hot labels from the "
                  "name of each image's top-level sub-folder (classes sorted by name; "
                  "implies --recursive).")
_DEFINE_string("split", "train", "create_mnist: train, test or all (train then test); "
                    "create_svhn: train, test or extra; create_from_tfds: a TFDS split "
                    "(e.g. train, test[:1000]).")
_DEFINE_integer("cx", 89, "create_celeba: crop centre x.")
_DEFINE_integer("cy", 121, "create_celeba: crop centre y.")
_DEFINE_string("image_key", "image", "create_from_tfds: feature holding the image.")
_DEFINE_string("label_key", "label", "create_from_tfds: ClassLabel feature for one-hot "
                    "labels ('' = no labels; ignored when the dataset has no such feature).")
_DEFINE_string("data_dir", None, "create_from_tfds: TFDS data directory holding the "
                    "prepared dataset (default: TFDS's own, ~/tensorflow_datasets).")
_DEFINE_bool("download", False, "create_from_tfds: let TFDS download and prepare the "
                  "dataset if it is not in --data_dir (needs internet).")
_DEFINE_integer("num", 64, "display: number of images in the grid.")
_DEFINE_integer("level", None, "display/extract/compare: resolution level as log2 "
                     "(e.g. 5 for 32x32); default: the top level.")
_DEFINE_bool("ignore_labels", False, "compare: only compare images.")
_DEFINE_bool("verify", False, "info: also read and check every record of every level "
                  "(CRC, shape) and report a corrupt file by name.")


def _write_options(shuffle_by_default: bool = True) -> writer.WriteOptions:
    shuffle = shuffle_by_default if FLAGS.shuffle is None else FLAGS.shuffle
    return writer.WriteOptions(shuffle=shuffle, seed=FLAGS.seed, max_images=FLAGS.max_images,
                               shards=FLAGS.shards, num_workers=FLAGS.num_workers,
                               strict=FLAGS.strict, overwrite=FLAGS.overwrite,
                               progress=FLAGS.progress)


def _inspection():
    """The inspection module, imported on first use: it loads TensorFlow, which `--help` and
    the start of the create_* commands do not need."""
    from progan_tf.datasets import inspection
    return inspection


_WRITE_FLAGS = ["shuffle", "seed", "max_images", "shards", "num_workers", "strict",
                "overwrite", "progress"]


@dataclasses.dataclass
class Command:
    fn: Callable
    args: List[str]  # positional names; a trailing "?" marks an optional one
    flags: List[str]
    doc: str


def _cmd_create_mnist(tfrecord_dir, mnist_dir=None):
    mnist_dir = mnist_dir or mnist.DEFAULT_DIR
    return mnist.create_mnist(tfrecord_dir, mnist_dir, _write_options(), FLAGS.split,
                              max(FLAGS.expected_images, 0))


def _cmd_create_from_images(tfrecord_dir, image_dir):
    return image_folder.create_from_images(tfrecord_dir, image_dir, _write_options(),
                                           FLAGS.resolution, FLAGS.recursive,
                                           FLAGS.labels_from_subdirs, FLAGS.channels)


def _cmd_create_cifar10(tfrecord_dir, cifar10_dir):
    return cifar_svhn.create_cifar10(tfrecord_dir, cifar10_dir, _write_options(),
                                     FLAGS.expected_images)


def _cmd_create_cifar100(tfrecord_dir, cifar100_dir):
    return cifar_svhn.create_cifar100(tfrecord_dir, cifar100_dir, _write_options(),
                                      FLAGS.expected_images)


def _cmd_create_svhn(tfrecord_dir, svhn_dir):
    return cifar_svhn.create_svhn(tfrecord_dir, svhn_dir, _write_options(), FLAGS.split,
                                  FLAGS.expected_images)


def _cmd_create_celeba(tfrecord_dir, celeba_dir):
    return celeba.create_celeba(tfrecord_dir, celeba_dir, _write_options(), FLAGS.cx,
                                FLAGS.cy, FLAGS.expected_images)


def _cmd_create_lsun(tfrecord_dir, lmdb_dir):
    # The original writes LSUN in cursor order (and --max_images takes the first ones).
    return lsun.create_lsun(tfrecord_dir, lmdb_dir, _write_options(shuffle_by_default=False),
                            FLAGS.resolution or 256)


def _cmd_create_from_tfds(tfrecord_dir, tfds_name):
    return tfds_images.create_from_tfds(tfrecord_dir, tfds_name, _write_options(), FLAGS.split,
                                        FLAGS.image_key, FLAGS.label_key, FLAGS.data_dir,
                                        FLAGS.resolution, FLAGS.channels, FLAGS.download)


def _cmd_display(tfrecord_dir, output_png=None):
    path = _inspection().display(tfrecord_dir, output_png, FLAGS.num, FLAGS.level)
    print(f"Wrote {path}")
    return 0


def _cmd_extract(tfrecord_dir, output_dir):
    n = _inspection().extract(tfrecord_dir, output_dir, FLAGS.level, FLAGS.max_images,
                              FLAGS.overwrite)
    print(f"Extracted {n} images to {output_dir}")
    return 0


def _cmd_compare(dir_a, dir_b):
    r = _inspection().compare(dir_a, dir_b, FLAGS.ignore_labels, FLAGS.level)
    print(f"Images: {r['count_a']} vs {r['count_b']}")
    print(f"Identical images: {r['identical_images']} / {r['images']}")
    if r["different_images"]:
        print(f"  different images at {r['different_images'][:20]}")
    if not FLAGS.ignore_labels:
        print(f"Identical labels: {r['identical_labels']} / {r['images']}")
        if r["different_labels"]:
            print(f"  different labels at {r['different_labels'][:20]}")
    print("EQUAL" if r["equal"] else "DIFFERENT")
    return 0 if r["equal"] else 1


def _cmd_info(tfrecord_dir):
    print(_inspection().info_text(tfrecord_dir))
    if FLAGS.verify:
        print(f"verified     {_inspection().verify(tfrecord_dir)} records: all readable")
    return 0


COMMANDS: Dict[str, Command] = {
    "create_mnist": Command(_cmd_create_mnist, ["tfrecord_dir", "mnist_dir?"],
                            _WRITE_FLAGS + ["split", "expected_images"],
                            "MNIST or Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, "
                            "train-labels-idx1-ubyte.gz; t10k-* for --split=test), padded "
                            "28->32 with zeros, 10-class one-hot labels. mnist_dir defaults to "
                            "/usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)."),
    "create_from_images": Command(_cmd_create_from_images, ["tfrecord_dir", "image_dir"],
                                  _WRITE_FLAGS + ["resolution", "recursive",
                                                  "labels_from_subdirs", "channels"],
                                  "A directory of PNG/JPEG/WebP/BMP images. Grayscale or RGB "
                                  "(RGBA, palette etc. converted to RGB). Without --resolution "
                                  "all must be square, power-of-two and one size; with it they "
                                  "are centre-cropped and resized. Optional one-hot labels from "
                                  "sub-folder names."),
    "create_cifar10": Command(_cmd_create_cifar10, ["tfrecord_dir", "cifar10_dir"],
                              _WRITE_FLAGS + ["expected_images"],
                              "CIFAR-10 python version (cifar-10-batches-py: data_batch_1..5), "
                              "50,000 32x32 RGB images, 10-class one-hot labels."),
    "create_cifar100": Command(_cmd_create_cifar100, ["tfrecord_dir", "cifar100_dir"],
                               _WRITE_FLAGS + ["expected_images"],
                               "CIFAR-100 python version (cifar-100-python/train), 50,000 "
                               "images, one-hot fine labels (100 classes)."),
    "create_svhn": Command(_cmd_create_svhn, ["tfrecord_dir", "svhn_dir"],
                           _WRITE_FLAGS + ["split", "expected_images"],
                           "SVHN cropped digits (<split>_32x32.mat, or the original's train_1..3.pkl; "
                           "train = 73,257 images), one-hot labels with the .mat's label 10 mapped to digit 0."),
    "create_celeba": Command(_cmd_create_celeba, ["tfrecord_dir", "celeba_dir"],
                             _WRITE_FLAGS + ["cx", "cy", "expected_images"],
                             "Aligned CelebA (img_align_celeba_png/*.png or "
                             "img_align_celeba/*.jpg, 202,599 images of 178x218): the original's "
                             "128x128 crop centred at (89, 121). No labels."),
    "create_lsun": Command(_cmd_create_lsun, ["tfrecord_dir", "lmdb_dir"],
                           _WRITE_FLAGS + ["resolution"],
                           "An LSUN category LMDB export (key -> encoded image): centre crop "
                           "to a square, Lanczos resize to --resolution (default 256). No "
                           "labels."),
    "create_from_tfds": Command(_cmd_create_from_tfds, ["tfrecord_dir", "tfds_name"],
                                _WRITE_FLAGS + ["split", "image_key", "label_key", "data_dir",
                                                "download", "resolution", "channels"],
                                "Any tensorflow-datasets image dataset (e.g. mnist, "
                                "cifar10, celeb_a), read from a prepared --data_dir when "
                                "offline. ClassLabel --label_key gives one-hot labels."),
    "display": Command(_cmd_display, ["tfrecord_dir", "output_png?"], ["num", "level"],
                       "Save a grid PNG of the first --num images with their labels "
                       "(default output: ./<name>-display.png)."),
    "extract": Command(_cmd_extract, ["tfrecord_dir", "output_dir"],
                       ["level", "max_images", "overwrite"],
                       "Write every image as output_dir/img%08d.png in file order (plus "
                       "labels.npy when the dataset has labels)."),
    "compare": Command(_cmd_compare, ["dataset_dir_a", "dataset_dir_b"],
                       ["ignore_labels", "level"],
                       "Compare two datasets image by image and label by label; exit status "
                       "1 if they differ."),
    "info": Command(_cmd_info, ["tfrecord_dir"], ["verify"],
                    "Print resolutions, image count, channels, label size and bytes per level. "
                    "The directory is always checked (levels, shards, counts, labels, truncated "
                    "records); --verify also reads every record."),
}


_SUMMARIES = {
    "create_mnist": "MNIST/Fashion-MNIST IDX files -> 32x32x1 pyramid with labels",
    "create_from_images": "a directory of image files (optional labels from sub-folders)",
    "create_cifar10": "CIFAR-10 python pickles -> 32x32x3 with labels",
    "create_cifar100": "CIFAR-100 python pickle -> 32x32x3 with fine labels",
    "create_svhn": "SVHN cropped digits (.mat or the original's .pkl) -> 32x32x3 with labels",
    "create_celeba": "aligned CelebA -> 128x128x3 (the original's crop)",
    "create_lsun": "an LSUN LMDB export -> 256x256x3 (centre crop, resize)",
    "create_from_tfds": "any tensorflow-datasets image dataset (local --data_dir offline)",
    "display": "grid PNG of the first images with their labels",
    "extract": "dataset -> PNG files (and labels.npy)",
    "compare": "are two datasets equal, image by image and label by label",
    "info": "resolutions, counts, channels, label size, bytes",
}


def _usage_line(name: str) -> str:
    args = " ".join(f"[<{a[:-1]}>]" if a.endswith("?") else f"<{a}>"
                    for a in COMMANDS[name].args)
    return f"progan-dataset {name} {args} [--flags]"


def overview_help() -> str:
    lines = ["progan-dataset: create and inspect ProGAN multi-resolution TFRecord datasets",
             "(the original NVIDIA dataset_tool.py format; see datasets/README.md).", "",
             "Usage: progan-dataset <command> <args> [--flags]", "", "Commands:"]
    for name in COMMANDS:
        lines.append(f"  {name:20s}{_SUMMARIES[name]}")
    lines += ["", "progan-dataset <command> --help explains a command and its flags;",
              "progan-dataset --helpfull lists every flag (absl's own: --helpshort)."]
    return "\n".join(lines)


def command_help(name: str) -> str:
    cmd = COMMANDS[name]
    lines = [f"Usage: {_usage_line(name)}", "", textwrap.fill(cmd.doc, 88), ""]
    if cmd.flags:
        lines.append("Flags:")
        lines += command_help_flags(cmd.flags)
    return "\n".join(lines)


def command_help_flags(names: Sequence[str]) -> List[str]:
    lines = []
    for f in names:
        flag = FLAGS[f]
        default = flag.default_as_str if flag.default is not None else "none"
        lines.append(f"  --{f} (default {default})")
        lines.append(textwrap.fill(flag.help, 88, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6))
    return lines


def main(argv: Sequence[str]) -> int:
    """Dispatches `progan-dataset <command> <args>` (flags already parsed)."""
    if len(argv) < 2:
        print(overview_help())
        return 2
    name, args = argv[1], list(argv[2:])
    if name not in COMMANDS:
        print(f"progan-dataset: error: unknown command {name!r}; one of: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    cmd = COMMANDS[name]
    required = [a for a in cmd.args if not a.endswith("?")]
    if not len(required) <= len(args) <= len(cmd.args):
        print(f"progan-dataset: error: {name} takes {len(required)}"
              f"{'' if len(required) == len(cmd.args) else '-' + str(len(cmd.args))} "
              f"arguments, got {len(args)}: {args}\nUsage: {_usage_line(name)}", file=sys.stderr)
        return 2
    try:
        result = cmd.fn(*args)
    except ToolError as e:
        print(f"progan-dataset {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"progan-dataset {name}: interrupted; nothing was written", file=sys.stderr)
        return 130
    if isinstance(result, writer.Summary):
        print(result.report())
        return 0
    return int(result or 0)



def cli(argv) -> int:
    """Parses ``argv`` from the flag defaults and runs ``main`` (for tests and embedding)."""
    return toolflags.run_cli("progan-dataset", FLAGS, main, argv)


def _help_requested(argv: Sequence[str]) -> Optional[str]:
    """Returns the help text to print for -h/--help/help requests, or None."""
    rest = list(argv[1:])
    if "--helpfull" in rest:
        return overview_help() + "\n\nAll flags:\n" + "\n".join(
            command_help_flags(sorted(FLAGS)))
    if not rest or rest[0] in ("-h", "--help", "--helpshort", "help", "-help"):
        if len(rest) >= 2 and rest[0] == "help" and rest[1] in COMMANDS:
            return command_help(rest[1])
        return overview_help()
    if rest[0] in COMMANDS and any(a in ("-h", "--help", "-help", "--helpshort") for a in rest):
        return command_help(rest[0])
    return None


def run():
    """Console-script entry point (``progan-dataset``)."""
    toolflags.run_app("progan-dataset", FLAGS, main, _help_requested)


if __name__ == "__main__":  # python -m progan_tf.datasets.cli (or python -m progan_tf.datasets)
    run()

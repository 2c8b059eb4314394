"""``progan-generate``: images, interpolation videos and training-progress videos from a trained ProGAN.

    progan-generate results/00000-cpu-fashion-mnist out/ --seeds=1,2,5-9          # one PNG per seed
    progan-generate exports/fmnist out/ --num=32 --grid --truncation_psi=0.7        # a SavedModel, one grid
    progan-generate exports/fmnist out/ --seeds=0-7 --class_rows                    # one row per class
    progan-generate runs/celebahq-official out/ --latents=latents.npy             # given latent vectors
    progan-generate exports/fmnist out/ --video --duration_sec=20 --video_grid=4,2  # latent-space walk
    progan-generate --progress_video=results/00000-cpu-fashion-mnist out/          # fakes*.png as a video

The model is a run directory (its newest checkpoint), a checkpoint prefix or a
SavedModel written by ``progan-export``; both give the same image for a seed
(the latent of seed ``s`` is ``stateless_normal([latent_size], seed=[s, 0])``).
Without ``--seeds``, ``--num`` seeds are drawn at random; files are named by seed
(``seed0042.png``, or ``seed0042-class3.png`` for conditional models) so any image
can be made again. Conditional models take ``--labels`` (class indices or names,
one for all images or one per image; default: class ``seed % label_size``) or
``--class_rows`` (a grid with one row per class, the same seeds in every row).
Videos are MP4 (H.264 through imageio-ffmpeg) when an encoder is available, else
animated GIF; ``--video_format`` chooses (also lossless animated WebP). Existing files are not replaced without
``--overwrite``.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
from absl import flags, logging

from progan_tf import export, rundir, toolflags
from progan_tf import images as images_lib

# Imported where they are used, because importing them takes seconds (or they are optional) and
# `--help`, argument errors and progress videos should not wait for them: TensorFlow and
# progan_tf.snapshot (models), scipy (interpolation videos), imageio and imageio-ffmpeg (MP4).

FLAGS = flags.FlagValues()   # own flags: importing this next to other CLIs cannot clash
_d = dict(flag_values=FLAGS)
flags.DEFINE_string("seeds", None, "Seeds: comma-separated integers and ranges, e.g. 1,2,5-9.", **_d)
flags.DEFINE_string("latents", None, "A .npy file of latent vectors [N, latent_size] to generate from instead "
                    "of seeds (e.g. the original's import_example.py latents); files latentNNNN.png.", **_d)
flags.DEFINE_integer("num", 8, "Number of random seeds when --seeds is not given.", **_d)
flags.DEFINE_integer("random_seed", None, "Seed of the random choice of seeds (default: fresh each run).", **_d)
flags.DEFINE_bool("grid", False, "Write one grid PNG (grid.png) instead of one PNG per seed.", **_d)
flags.DEFINE_integer("grid_cols", None, "Columns of the grid (default: about square).", **_d)
flags.DEFINE_list("labels", None, "Conditional models: class indices or names, one for every image or one per "
                  "image.", **_d)
flags.DEFINE_bool("class_rows", False, "Conditional models: a grid with one row per class and one column per "
                  "seed.", **_d)
flags.DEFINE_float("truncation_psi", 1.0, "Truncation: scale of the normalised latent towards its mean "
                   "(1 = none, 0 = the average image).", **_d)
flags.DEFINE_integer("resolution", None, "Checkpoints: resolution to generate at (default: the highest "
                     "resolution training had reached). A SavedModel has its own.", **_d)
flags.DEFINE_integer("batch_size", 32, "Images per generator call.", **_d)
flags.DEFINE_bool("video", False, "Write an interpolation video: a smooth random walk in latent space.", **_d)
flags.DEFINE_float("duration_sec", 10.0, "Video length in seconds (progress video too).", **_d)
flags.DEFINE_integer("fps", 30, "Video frames per second.", **_d)
flags.DEFINE_float("smoothing_sec", 1.0, "Interpolation video: sigma of the Gaussian smoothing along time, "
                   "in seconds.", **_d)
flags.DEFINE_list("video_grid", ["1", "1"], "Interpolation video: columns,rows of images per frame.", **_d)
flags.DEFINE_integer("video_seed", 1000, "Interpolation video: seed of the random walk (the original's "
                     "default).", **_d)
flags.DEFINE_integer("image_zoom", 1, "Videos: integer nearest-neighbour zoom of each frame.", **_d)
flags.DEFINE_enum("video_format", "auto", ["auto", "mp4", "gif", "webp"], "auto: MP4 when imageio-ffmpeg "
                  "is available, else GIF; webp: lossless animated WebP.", **_d)
flags.DEFINE_string("progress_video", None, "Run directory: write progress.<ext>, a video of its fakes*.png "
                    "(labelled with lod, time and kimg from log.txt).", **_d)
flags.DEFINE_float("time_warp", 1.5, "Progress video: frame time t maps to training time (t/T)**warp.", **_d)
flags.DEFINE_bool("overwrite", False, "Replace existing output files.", **_d)


class GenerateError(ValueError):
    """A bad request (model, seeds, labels, output); the message names it."""


# --- models: a checkpoint or an exported SavedModel behind one interface ------------------------

class ModelSource:
    """Generates uint8 NHWC images by latents or by seeds, through the export's four signatures."""

    def __init__(self, call: Callable[[str, dict], np.ndarray], info: dict, what: str):
        self._call, self.info, self.what = call, info, what
        self.resolution, self.num_channels = int(info["resolution"]), int(info["num_channels"])
        self.latent_size, self.label_size = int(info["latent_size"]), int(info["label_size"])
        self.label_names = info.get("label_names")

    def _run(self, by_seeds: bool, first: np.ndarray, labels, psi: float, batch_size: int) -> np.ndarray:
        name = ("generate_from_seeds" if by_seeds else "serving") + ("_truncated" if psi != 1.0 else "")
        name = "serving_default" if name == "serving" else name
        out = []
        for i in range(0, len(first), batch_size):
            inputs = {"seeds" if by_seeds else "latents": first[i:i + batch_size]}
            if psi != 1.0:
                inputs["truncation_psi"] = np.full([len(inputs.get("seeds", inputs.get("latents")))], psi, np.float32)
            if self.label_size:
                inputs["labels"] = labels[i:i + batch_size]
            out.append(self._call(name, inputs))
        if not out:
            return np.zeros([0, self.resolution, self.resolution, self.num_channels], np.uint8)
        return np.concatenate(out)

    def from_seeds(self, seeds, labels=None, psi=1.0, batch_size=32) -> np.ndarray:
        return self._run(True, np.asarray(seeds, np.int64), labels, psi, batch_size)

    def from_latents(self, latents, labels=None, psi=1.0, batch_size=32) -> np.ndarray:
        return self._run(False, np.asarray(latents, np.float32), labels, psi, batch_size)


def _checkpoint_source(path: str, resolution: Optional[int]) -> ModelSource:
    import tensorflow as tf

    from progan_tf.snapshot import SnapshotError, load_snapshot

    try:
        snapshot = load_snapshot(path)
        lod = rundir.checkpoint_info(snapshot.checkpoint).lod
        gen = export.ServingGenerator(snapshot.Gs, export.choose_resolution(snapshot.Gs, lod, resolution, False))
    except (SnapshotError, export.ExportError) as e:
        raise GenerateError(str(e)) from None
    info = {"resolution": gen.resolution, "num_channels": gen.num_channels, "latent_size": gen.latent_size,
            "label_size": gen.label_size,
            "label_names": export.default_label_names(snapshot, gen.label_size)}

    def call(name, inputs):
        specs = gen.signatures()[name][1]
        return gen.function(name)(*[tf.constant(inputs[s.name], s.dtype) for s in specs])["images"].numpy()

    return ModelSource(call, info, snapshot.checkpoint)


def _saved_model_source(path: str, resolution: Optional[int]) -> ModelSource:
    import tensorflow as tf

    try:
        info = export.load_metadata(path)
        loaded = tf.saved_model.load(path)
    except (export.ExportError, OSError, ValueError, tf.errors.OpError) as e:
        raise GenerateError(f"{path}: not a progan-export SavedModel ({str(e).splitlines()[0]})") from None
    missing = [s for s in export.SIGNATURES if s not in loaded.signatures]
    if missing:
        raise GenerateError(f"{path}: SavedModel lacks the signature(s) {', '.join(missing)}")
    if resolution is not None and resolution != info["resolution"]:
        raise GenerateError(f"--resolution={resolution}: the SavedModel {path} generates {info['resolution']}x"
                            f"{info['resolution']} only (export another resolution with progan-export)")

    def call(name, inputs):
        fn = loaded.signatures[name]
        kwargs = {k: tf.constant(v, fn.structured_input_signature[1][k].dtype) for k, v in inputs.items()}
        return fn(**kwargs)["images"].numpy()

    return ModelSource(call, info, path)


def open_model(path: str, resolution: Optional[int] = None) -> ModelSource:
    """A run directory, checkpoint prefix or progan-export SavedModel as an :class:`ModelSource`."""
    if os.path.isdir(path) and rundir.is_saved_model(path):
        return _saved_model_source(path, resolution)
    return _checkpoint_source(path, resolution)


# --- parsing -------------------------------------------------------------------------------------

def parse_seeds(text: str) -> List[int]:
    """``"1,2,5-7"`` -> ``[1, 2, 5, 6, 7]``."""
    seeds = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise GenerateError(f"--seeds: {part!r} is not a seed or an ascending range a-b (in {text!r})")
        lo = int(m.group(1))
        seeds.extend(range(lo, int(m.group(2) or lo) + 1))
    if any(s >= 2 ** 63 for s in seeds):
        raise GenerateError("--seeds: seeds must be below 2**63")
    return seeds


def choose_seeds(seeds_flag: Optional[str], num: int, random_seed: Optional[int]) -> List[int]:
    if seeds_flag:
        return parse_seeds(seeds_flag)
    if num < 1:
        raise GenerateError(f"--num must be >= 1, got {num}")
    rng = np.random.default_rng(random_seed)
    return [int(s) for s in rng.choice(2 ** 31, size=num, replace=False)]


def class_index(value: str, names: Optional[Sequence[str]], label_size: int) -> int:
    if re.fullmatch(r"\d+", value.strip()):
        index = int(value)
    elif names and value.strip() in names:
        index = list(names).index(value.strip())
    else:
        known = f" (classes: {', '.join(names)})" if names else ""
        raise GenerateError(f"--labels: {value!r} is not a class index{' or name' if names else ''}{known}")
    if not 0 <= index < label_size:
        raise GenerateError(f"--labels: class {index} is out of range for {label_size} labels")
    return index


def label_rows(source: ModelSource, classes: Sequence[int]) -> Optional[np.ndarray]:
    if not source.label_size:
        return None
    return np.eye(source.label_size, dtype=np.float32)[np.asarray(classes, np.int64)]


def image_classes(source: ModelSource, seeds: Sequence[int], labels_flag) -> Optional[List[int]]:
    """The class of each image of a conditional model (None for an unconditional one)."""
    if not source.label_size:
        if labels_flag:
            raise GenerateError(f"--labels: the model {source.what} is unconditional")
        return None
    if not labels_flag:
        return [s % source.label_size for s in seeds]
    classes = [class_index(v, source.label_names, source.label_size) for v in labels_flag]
    if len(classes) == 1:
        return classes * len(seeds)
    if len(classes) != len(seeds):
        raise GenerateError(f"--labels: give one class or one per image ({len(seeds)}), got {len(classes)}")
    return classes


# --- outputs -------------------------------------------------------------------------------------

def check_targets(output_dir: str, names: Sequence[str], overwrite: bool) -> List[str]:
    """Output paths; refuses existing ones (unless ``overwrite``) and an unwritable directory."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise GenerateError(f"output {output_dir} exists and is not a directory")
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise GenerateError(f"output {output_dir}: cannot create it ({e.strerror})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise GenerateError(f"output {output_dir}: not writable")
    paths = [os.path.join(output_dir, n) for n in names]
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise GenerateError(f"{existing[0]}{more} exists (pass --overwrite to replace)")
    return paths


def grid_shape(n: int, cols: Optional[int]) -> tuple[int, int]:
    cols = int(cols) if cols else int(np.ceil(np.sqrt(n)))
    return cols, int(np.ceil(n / cols))


def seed_file_name(seed: int, cls: Optional[int]) -> str:
    return f"seed{seed:04d}.png" if cls is None else f"seed{seed:04d}-class{cls}.png"


def resolve_video_format(fmt: str) -> str:
    if fmt in ("auto", "mp4"):
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
            return "mp4"
        except (ImportError, RuntimeError) as e:
            if fmt == "mp4":
                raise GenerateError(f"--video_format=mp4: no ffmpeg encoder ({e}); use --video_format=gif") from None
            logging.warning("no ffmpeg encoder (%s); writing an animated GIF", e)
        return "gif"
    return fmt


def _to_rgb_even(frame: np.ndarray, zoom: int) -> np.ndarray:
    """HWC uint8 -> RGB, zoomed, padded to even sides (H.264 in yuv420p needs them)."""
    if zoom > 1:
        frame = frame.repeat(zoom, axis=0).repeat(zoom, axis=1)
    if frame.shape[2] == 1:
        frame = frame.repeat(3, axis=2)
    pad = [(0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)]
    return np.pad(frame, pad) if any(p[1] for p in pad) else frame


def write_video(path: str, frames: Iterator[np.ndarray], fps: int, fmt: str, zoom: int = 1) -> int:
    """Streams HWC uint8 frames to MP4, GIF or WebP at ``path`` (via a temporary file); returns the frame count."""
    tmp = f"{path}.tmp{os.getpid()}.{fmt}"
    count = 0
    try:
        if fmt == "mp4":
            import imageio.v2 as imageio

            with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                    pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error") as w:
                for frame in frames:
                    w.append_data(_to_rgb_even(frame, zoom))
                    count += 1
        else:
            pil = [PIL.Image.fromarray(_to_rgb_even(f, zoom)) for f in frames]
            count = len(pil)
            if not pil:
                raise GenerateError("no frames to write")
            options = {"format": "WEBP", "lossless": True} if fmt == "webp" else {"format": "GIF"}
            pil[0].save(tmp, save_all=True, append_images=pil[1:], duration=max(20, round(1000 / fps)), loop=0,
                        **options)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return count


# --- interpolation video (the original's generate_interpolation_video) --------------------------

def interpolation_latents(num_frames: int, num_images: int, latent_size: int, smoothing_frames: float,
                          random_seed: int) -> np.ndarray:
    """[frame, image, component]: white noise smoothed along time (Gaussian, wrapping), renormalised.

    As the original: one RandomState draw, ``gaussian_filter`` with sigma
    ``smoothing_sec * fps`` over frames only, ``mode='wrap'`` (the video loops),
    then divided by the overall RMS so the latents are again ~N(0, 1).
    """
    import scipy.ndimage

    latents = np.random.RandomState(random_seed).randn(num_frames, num_images, latent_size).astype(np.float32)
    latents = scipy.ndimage.gaussian_filter(latents, [smoothing_frames, 0, 0], mode="wrap")
    return latents / np.sqrt(np.mean(np.square(latents)))


def interpolation_frames(source: ModelSource, latents: np.ndarray, labels, grid, psi: float,
                         batch_size: int) -> Iterator[np.ndarray]:
    num_frames, per_frame = latents.shape[:2]
    frames_per_call = max(1, batch_size // per_frame)
    for f in range(0, num_frames, frames_per_call):
        chunk = latents[f:f + frames_per_call]
        y = None if labels is None else np.tile(labels, (len(chunk), 1))
        images = source.from_latents(chunk.reshape(-1, source.latent_size), y, psi, batch_size)
        for k in range(len(chunk)):
            yield images_lib.image_grid(images[k * per_frame:(k + 1) * per_frame], grid)


# --- training-progress video (the original's generate_training_video) ---------------------------

def progress_snapshots(run_dir: str) -> List[tuple]:
    """``[(training seconds, png, kimg, lod or None)]`` in time order, from log.txt and fakes*.png."""
    if not os.path.isdir(run_dir):
        raise GenerateError(f"--progress_video: no such run directory {run_dir}")
    pngs = rundir.list_fakes(run_dir)
    if not pngs:
        raise GenerateError(f"--progress_video: no fakes*.png in {run_dir}")
    snaps = [(t.time_s, pngs[int(t.kimg)], t.kimg, t.lod) for t in rundir.read_ticks(run_dir) if int(t.kimg) in pngs]
    if not snaps:   # no usable log: evenly spaced, in kimg order
        snaps = [(i, pngs[k], float(k), None) for i, k in enumerate(sorted(pngs))]
    return sorted(snaps, key=lambda s: s[0])


def _label(image, lod, seconds, kimg):
    img = PIL.Image.fromarray(image)
    draw = PIL.ImageDraw.Draw(img)
    size = max(10, img.height // 40)
    try:
        font = PIL.ImageFont.load_default(size=size)
    except TypeError:      # Pillow < 10.1: one small bitmap font
        font = PIL.ImageFont.load_default()
    h, m, s = seconds // 3600, (seconds // 60) % 60, seconds % 60
    texts = [(f"lod {lod:.2f}" if lod is not None else "", 0.0), (f"{h}h {m:02d}m {s:02d}s", 0.5),
             (f"{kimg:.0f} kimg", 1.0)]
    for text, align in texts:
        if text:
            width = draw.textlength(text, font=font)
            x = 4 + align * (img.width - 8 - width)
            draw.text((x, img.height - 4), text, fill=(255, 255, 255), font=font, anchor="ls",
                      stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def progress_frames(snaps, duration_sec: float, fps: int, time_warp: float) -> Iterator[np.ndarray]:
    times = [s[0] for s in snaps]
    num_frames = max(1, int(np.rint(duration_sec * fps)))
    cache, size = {}, None
    for i in range(num_frames):
        wallclock = ((i / max(1, num_frames - 1)) ** time_warp) * times[-1]   # the last frame: the last snapshot
        t, png, kimg, lod = snaps[max(bisect.bisect(times, wallclock) - 1, 0)]
        if png not in cache:
            img = PIL.Image.open(png).convert("RGB")
            size = size or img.size
            while size[0] > 1920 or size[1] > 1080:
                size = (size[0] // 2, size[1] // 2)
            cache = {png: np.asarray(img.resize(size, PIL.Image.BOX) if img.size != size else img)}
        yield _label(cache[png], lod, int(np.rint(wallclock)), kimg)


# --- the command ---------------------------------------------------------------------------------

def _write_images(source, output_dir, seeds, classes, opts) -> List[str]:
    psi, bs = opts.truncation_psi, opts.batch_size
    if opts.class_rows:
        if not source.label_size:
            raise GenerateError(f"--class_rows: the model {source.what} is unconditional")
        if opts.labels:
            raise GenerateError("--class_rows and --labels are exclusive")
        (path,) = check_targets(output_dir, ["grid.png"], opts.overwrite)
        rows = [c for c in range(source.label_size) for _ in seeds]
        images = source.from_seeds(np.tile(seeds, source.label_size), label_rows(source, rows), psi, bs)
        images_lib.save_png(path, images_lib.image_grid(images, (len(seeds), source.label_size)))
        return [path]
    labels = label_rows(source, classes) if classes is not None else None
    if opts.grid:
        (path,) = check_targets(output_dir, ["grid.png"], opts.overwrite)
        images = source.from_seeds(seeds, labels, psi, bs)
        images_lib.save_png(path, images_lib.image_grid(images, grid_shape(len(seeds), opts.grid_cols)))
        return [path]
    names = [seed_file_name(s, None if classes is None else classes[i]) for i, s in enumerate(seeds)]
    if len(set(names)) != len(names):
        raise GenerateError("--seeds: a seed is repeated with the same class")
    paths = check_targets(output_dir, names, opts.overwrite)
    for start in range(0, len(seeds), bs):
        chunk = slice(start, start + bs)
        images = source.from_seeds(seeds[chunk], None if labels is None else labels[chunk], psi, bs)
        for path, image in zip(paths[chunk], images, strict=True):
            images_lib.save_png(path, image)
    return paths


def load_latents(path: str, latent_size: int) -> np.ndarray:
    """The float32 [N, latent_size] latents of a .npy file, or a GenerateError naming it."""
    try:
        latents = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise GenerateError(f"--latents: cannot read {path} as a .npy array ({e})") from None
    if latents.ndim != 2 or latents.shape[1] != latent_size or not np.issubdtype(latents.dtype, np.floating):
        raise GenerateError(f"--latents: {path} holds a {latents.dtype} array of shape {latents.shape}; the model "
                            f"takes float latents of shape [N, {latent_size}]")
    return latents.astype(np.float32)


def _write_latent_images(source, output_dir, latents, opts) -> List[str]:
    """One PNG per latent vector (latent0000.png, ...), or one grid with --grid."""
    if opts.seeds or opts.class_rows:
        raise GenerateError("--latents: give either --latents or --seeds / --class_rows")
    indices = list(range(len(latents)))
    classes = image_classes(source, indices, opts.labels)
    labels = label_rows(source, classes) if classes is not None else None
    images = source.from_latents(latents, labels, opts.truncation_psi, opts.batch_size)
    if opts.grid:
        (path,) = check_targets(output_dir, ["grid.png"], opts.overwrite)
        images_lib.save_png(path, images_lib.image_grid(images, grid_shape(len(images), opts.grid_cols)))
        return [path]
    paths = check_targets(output_dir, [f"latent{i:04d}.png" for i in indices], opts.overwrite)
    for path, image in zip(paths, images, strict=True):
        images_lib.save_png(path, image)
    return paths


def _write_interpolation_video(source, output_dir, opts) -> str:
    try:
        cols, rows = (int(v) for v in opts.video_grid)
    except ValueError:
        raise GenerateError(f"--video_grid: expected columns,rows, got {','.join(opts.video_grid)}") from None
    if cols < 1 or rows < 1 or opts.fps < 1 or opts.duration_sec <= 0 or opts.smoothing_sec < 0:
        raise GenerateError("--video_grid, --fps and --duration_sec must be positive, --smoothing_sec >= 0")
    fmt = resolve_video_format(opts.video_format)
    (path,) = check_targets(output_dir, [f"interpolation.{fmt}"], opts.overwrite)
    n = cols * rows
    num_frames = max(1, int(np.rint(opts.duration_sec * opts.fps)))
    latents = interpolation_latents(num_frames, n, source.latent_size, opts.smoothing_sec * opts.fps,
                                    opts.video_seed)
    seeds = list(range(n))
    classes = image_classes(source, seeds, opts.labels)
    labels = label_rows(source, classes) if classes is not None else None
    frames = interpolation_frames(source, latents, labels, (cols, rows), opts.truncation_psi, opts.batch_size)
    write_video(path, frames, opts.fps, fmt, opts.image_zoom)
    return path


def _write_progress_video(run_dir, output_dir, opts) -> str:
    if opts.fps < 1 or opts.duration_sec <= 0:
        raise GenerateError("--fps and --duration_sec must be positive")
    snaps = progress_snapshots(run_dir)
    fmt = resolve_video_format(opts.video_format)
    (path,) = check_targets(output_dir, [f"progress.{fmt}"], opts.overwrite)
    write_video(path, progress_frames(snaps, opts.duration_sec, opts.fps, opts.time_warp), opts.fps, fmt,
                opts.image_zoom)
    return path


def generate(model: Optional[str], output_dir: str, opts) -> List[str]:
    """Runs what ``opts`` (the flags) ask for; returns the paths written."""
    written = []
    if opts.progress_video:
        written.append(_write_progress_video(opts.progress_video, output_dir, opts))
    if model is None:
        return written
    if opts.image_zoom < 1 or opts.batch_size < 1:
        raise GenerateError("--image_zoom and --batch_size must be >= 1")
    source = open_model(model, opts.resolution)
    if opts.video:
        written.append(_write_interpolation_video(source, output_dir, opts))
        return written
    if opts.latents:
        written += _write_latent_images(source, output_dir, load_latents(opts.latents, source.latent_size), opts)
        return written
    seeds = choose_seeds(opts.seeds, opts.num, opts.random_seed)
    classes = None if opts.class_rows else image_classes(source, seeds, opts.labels)
    written += _write_images(source, output_dir, seeds, classes, opts)
    return written


def main(argv) -> int:
    args = argv[1:]
    if not (len(args) == 2 or (len(args) == 1 and FLAGS.progress_video)):
        print("progan-generate: error: usage: progan-generate <run dir | checkpoint | SavedModel> <output dir> "
              "[flags]  (or: progan-generate --progress_video=<run dir> <output dir>)", file=sys.stderr)
        return 2
    model, output_dir = (None, args[0]) if len(args) == 1 else args
    export.quiet_tensorflow()
    try:
        written = generate(model, output_dir, FLAGS)
    except GenerateError as e:
        print(f"progan-generate: error: {e}", file=sys.stderr)
        return 1
    shown = written if len(written) <= 3 else written[:2] + [f"... ({len(written)} files)"]
    print("Wrote " + ", ".join(shown))
    return 0



def cli(argv) -> int:
    """Parses ``argv`` from the flag defaults and runs ``main`` (for tests and embedding)."""
    return toolflags.run_cli("progan-generate", FLAGS, main, argv)


def run():
    """Console-script entry point (``progan-generate``)."""
    toolflags.run_app("progan-generate", FLAGS, main, toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

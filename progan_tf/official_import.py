"""``progan-import``: one of the original code's network pickles as a progan_tf run directory.

    progan-import karras2018iclr-celebahq-1024x1024.pkl runs/celebahq-official
    progan-generate runs/celebahq-official out/ --seeds=0-15       # images from NVIDIA's Gs
    progan-export runs/celebahq-official exported/celebahq          # a SavedModel
    progan-metrics --metrics=swd --dataset_dir=datasets/celebahq runs/celebahq-official
    progan-train --resume=runs/celebahq-official --dataset_dir=datasets/celebahq   # fine-tune

Takes NVIDIA's published networks (CelebA-HQ 1024x1024, the LSUN categories) and every
``network-snapshot-*.pkl`` the original's train.py writes. The file is read with a
restricted unpickler that rebuilds the networks as plain records and allows nothing but
NumPy arrays: the network source code stored inside is never run (``progan_tf.official``).

The run directory holds ``config.json`` (the networks' options on the default schedule),
``networks.json``, ``run.json`` (the file it came from) and one checkpoint with G, D and
Gs and fresh Adam states, as the original starts a resumed run. The checkpoint's images
shown are the first point of the schedule at the file's lod, so ``progan-train --resume``
continues at the stage the networks were at.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from absl import flags

from progan_tf import rundir, toolflags

FLAGS = flags.FlagValues()
flags.DEFINE_bool("overwrite", False, "Replace an existing run directory.", flag_values=FLAGS)


class ImportFailed(ValueError):
    """The run directory cannot be written (exists, or the file is not an original network pickle)."""


def run_config(G, D):
    """A full training config whose networks are ``G`` and ``D`` (the default schedule and losses)."""
    from progan_tf.config import default_config

    c = default_config()
    c.desc = "import"
    g, d = G.get_config(), D.get_config()
    for field in c.G:
        if field == "latent_size":
            c.G.latent_size = int(g["latent_size"])
        elif field in g:
            c.G[field] = g[field]
    for field in c.D:
        if field in d:
            c.D[field] = d[field]
    c.dataset.resolution, c.dataset.num_channels = G.resolution, G.num_channels
    c.dataset.use_labels = G.label_size > 0
    return c


def nimg_at_lod(sched, resolution_log2: int, lod: float) -> int:
    """The fewest images shown at which the schedule ``sched`` (a config's ``sched`` group) reaches
    ``lod`` (the lod only decreases as images are shown)."""
    from progan_tf.schedule import training_schedule

    def lod_at(nimg):
        return training_schedule(nimg, resolution_log2, sched).lod

    low, high = 0, 1
    while lod_at(high) > lod + 1e-9:
        high *= 2
        if high > 10 ** 12:
            raise ImportFailed(f"the schedule never reaches lod {lod}")
    while low < high:
        mid = (low + high) // 2
        if lod_at(mid) > lod + 1e-9:
            low = mid + 1
        else:
            high = mid
    return low


def _record_lod(records, resolution_log2: int) -> float:
    """The lod the training network G was at (0 for a final network), within the network's range."""
    lod = float(records[0].variables.get("lod", 0.0))
    return min(max(lod, 0.0), float(resolution_log2 - 2))


def import_official(path: str, run_dir: str, overwrite: bool = False) -> str:
    """Writes the run directory of the original network pickle ``path``; returns its checkpoint.

    The directory is built beside ``run_dir`` and renamed into place, so a failure leaves nothing.
    """
    from progan_tf.official import build_networks, read_network_pickle   # TensorFlow: lazy, for --help
    from progan_tf.training import write_network_configs

    if os.path.exists(run_dir) and not overwrite:
        raise ImportFailed(f"{run_dir} already exists (pass --overwrite to replace it)")
    records = read_network_pickle(path)
    G, D, Gs = build_networks(records)
    config = run_config(G, D)
    lod = _record_lod(records, G.resolution_log2)
    nimg = nimg_at_lod(config.sched, G.resolution_log2, lod)
    res = G.resolution_log2 - int(lod)
    parent = os.path.dirname(os.path.abspath(run_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(run_dir)}.importing-", dir=parent)
    try:
        rundir.write_text(os.path.join(tmp, rundir.CONFIG_FILE), config.to_json_best_effort(indent=2))
        write_network_configs(tmp, G, D, dataset=None, precision="float32")
        rundir.write_json(os.path.join(tmp, rundir.RUN_INFO_FILE), {
            "imported_from": os.path.abspath(path), "lod": lod, "created": time.strftime("%Y-%m-%d %H:%M:%S")})
        prefix = _write_checkpoint(tmp, G, D, Gs, config, nimg, res, lod)
        rundir.write_text(os.path.join(tmp, rundir.LOG_FILE),
                          f"Imported from {os.path.abspath(path)} at lod {lod:.2f}: checkpoint {os.path.basename(prefix)}\n")
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)
        os.rename(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return os.path.join(rundir.checkpoint_dir(run_dir), os.path.basename(prefix))


def _write_checkpoint(directory, G, D, Gs, config, nimg, res, lod) -> str:
    """The trainer's checkpoint structure with fresh Adam states, at ``nimg`` images and ``lod``."""
    import tensorflow as tf

    from progan_tf.training import new_optimizers, state_variables, training_checkpoint

    G_adam, D_adam = new_optimizers(config, G, D)
    state = state_variables(nimg=nimg, stage_start_nimg=nimg, stage_res=res, prev_lod=lod)
    manager = tf.train.CheckpointManager(training_checkpoint(G, D, Gs, G_adam, D_adam, state),
                                         rundir.checkpoint_dir(directory), checkpoint_name=rundir.CHECKPOINT_NAME,
                                         max_to_keep=1)
    prefix = manager.save(checkpoint_number=nimg)
    rundir.write_checkpoint_info(prefix, rundir.CheckpointInfo(nimg, lod, 2 ** res))
    return prefix


def main(argv) -> int:
    if len(argv) != 3:
        print("progan-import: error: usage: progan-import NETWORK.pkl RUN_DIR [--overwrite]", file=sys.stderr)
        return 2
    from progan_tf.official import OfficialFormatError

    _, path, run_dir = argv
    try:
        checkpoint = import_official(path, run_dir, overwrite=FLAGS.overwrite)
    except (OfficialFormatError, ImportFailed) as e:
        print(f"progan-import: error: {e}", file=sys.stderr)
        return 1
    print(f"Imported {path} into {run_dir} (checkpoint {checkpoint})")
    return 0


def run():
    """Console-script entry point (``progan-import``)."""
    toolflags.run_app("progan-import", FLAGS, lambda argv: sys.exit(main(argv)), toolflags.flag_help(__doc__, FLAGS))


if __name__ == "__main__":
    run()

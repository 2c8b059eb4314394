"""An LSUN category LMDB export (key -> encoded image) -> centre crop, Lanczos resize."""
from __future__ import annotations

import contextlib
import io
from typing import Iterator

import PIL.Image

from progan_tf.datasets import writer
from progan_tf.datasets.errors import ToolError
from progan_tf.datasets.sources import common


@contextlib.contextmanager
def open_lsun(lmdb_dir: str, resolution: int = 256) -> Iterator[writer.Source]:
    """The LMDB's images in cursor order; the LMDB stays open inside the ``with`` block."""
    import lmdb  # deferred: only this source needs it
    common.check_resolution(resolution)
    common.require_dir(lmdb_dir, "LSUN LMDB directory")
    try:
        env = lmdb.open(lmdb_dir, readonly=True, lock=False, readahead=False, max_readers=256)
    except lmdb.Error as e:
        raise ToolError(f"cannot open LMDB {lmdb_dir}: {e}") from e
    with env:
        with env.begin(write=False) as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
        if not keys:
            raise ToolError(f"LMDB {lmdb_dir} holds no entries")

        def load(i):
            with env.begin(write=False) as txn:
                value = txn.get(keys[i])
            with PIL.Image.open(io.BytesIO(value)) as im:
                im.load()
                arr = common.pil_to_array(im, 3)
            return common.crop_resize(arr, resolution).transpose(2, 0, 1)

        yield writer.Source(len(keys), load,
                            lambda i: f"{lmdb_dir} key {keys[i].decode(errors='replace')}")


def create_lsun(tfrecord_dir: str, lmdb_dir: str, opts: writer.WriteOptions,
                resolution: int = 256) -> writer.Summary:
    with open_lsun(lmdb_dir, resolution) as source:
        return writer.write_source(tfrecord_dir, source, opts)

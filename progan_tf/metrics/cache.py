"""On-disk cache of real-image statistics, so repeated evaluations only pay for the fakes.

An entry is a directory ``<cache_dir>/<key>/`` of ``.npy`` arrays plus
``meta.json``; the key names the metric, dataset, resolution, image count
(and offset, for the second half of a split), the extractor and its settings.
Entries are written to a temporary directory and renamed into place, so a
crashed or concurrent writer never leaves a half-written entry behind. Arrays
are loaded memory-mapped (SWD descriptors can be large: 147 float32 values x
128 per image per pyramid level).

The default directory is ``<dataset_dir>/.metrics-cache/``.
"""
import json
import os
import re
import shutil
import tempfile
import time
from typing import Dict, Optional

import numpy as np
from absl import logging

CACHE_VERSION = 1
DEFAULT_SUBDIR = ".metrics-cache"

Arrays = Dict[str, np.ndarray]


def default_cache_dir(dataset_dir: str) -> str:
    return os.path.join(dataset_dir, DEFAULT_SUBDIR)


def cache_key(metric: str, dataset: str, resolution: int, num_images: int, extractor: str,
              offset: int = 0) -> str:
    """A file-name-safe key, e.g. ``fid-celebahq-r1024-n50000-inception_v3-imagenet-v1``."""
    parts = [metric, dataset, f"r{resolution}", f"n{num_images}"]
    if offset:
        parts.append(f"o{offset}")
    parts += [extractor, f"v{CACHE_VERSION}"]
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(parts))


class StatsCache:
    """Cache of named NumPy arrays per key; `directory=None` disables it."""

    def __init__(self, directory: Optional[str]):
        self.directory = directory
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key)

    def load(self, key: str) -> Optional[Arrays]:
        if self.directory is None:
            return None
        path = self._path(key)
        meta_path = os.path.join(path, "meta.json")
        if not os.path.isfile(meta_path):
            self.misses += 1
            return None
        with open(meta_path) as f:
            meta = json.load(f)
        self.hits += 1
        logging.info("metrics cache hit: %s", path)
        return {name: np.load(os.path.join(path, name + ".npy"), mmap_mode="r") for name in meta["arrays"]}

    def save(self, key: str, arrays: Arrays, meta: Optional[dict] = None) -> None:
        """Writes an entry atomically; if another process wrote it first, keeps theirs."""
        if self.directory is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=self.directory)
        try:
            for name, array in arrays.items():
                np.save(os.path.join(tmp, name + ".npy"), np.asarray(array))
            info = dict(meta or {}, key=key, arrays=sorted(arrays), created=time.time())
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump(info, f, indent=1)
            try:
                os.rename(tmp, self._path(key))
                logging.info("metrics cache write: %s", self._path(key))
            except OSError:  # the entry appeared meanwhile
                if not os.path.isfile(os.path.join(self._path(key), "meta.json")):
                    raise
                logging.info("metrics cache: %s was written by another process", key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

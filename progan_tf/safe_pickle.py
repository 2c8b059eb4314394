"""Reading pickles without running their code: the one restricted unpickler of the project.

A pickle names the callables that rebuild its objects (``module.name``), and a plain
``pickle.load`` imports and calls whatever it names, so a doctored file runs code.
:class:`SafeUnpickler` resolves only plain data: the builtin containers and scalars,
``collections.OrderedDict``, NumPy arrays, dtypes and scalars (under the NumPy 1 ``numpy.core``
and NumPy 2 ``numpy._core`` names, without importing either alias), and the ``_codecs.encode``
that protocol-2 pickles use for bytes (latin-1 only). Any other global is refused with
:class:`UnsafePickleError` naming it, before anything is called.

Every pickle the project reads goes through here: the dataset sources' CIFAR and SVHN files
(:func:`load`) and the original's network pickles (``progan_tf.official`` adds its own record
class on top). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
from typing import BinaryIO, Callable, Dict, Optional, Tuple

import numpy as np

try:                                         # NumPy 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:                          # NumPy 1
    from numpy.core import multiarray as _multiarray, numeric as _numeric

# Builtins that only build plain values from plain values (no eval/exec/getattr/open/__import__ ...).
_PLAIN_BUILTINS = ("bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
                   "range", "set", "slice", "str", "tuple")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a global outside the allowed plain data (its ``module.name`` is in the message)."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; no other codec is looked up."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1)")
    return text.encode("latin1")


def plain_data_globals() -> Dict[Tuple[str, str], Callable]:
    """``(module, name) -> object`` of everything :class:`SafeUnpickler` resolves."""
    allowed = {}
    for module in ("builtins", "__builtin__"):          # Python 3 and Python 2 pickles
        allowed.update({(module, name): getattr(builtins, name) for name in _PLAIN_BUILTINS})
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("numpy", "ndarray")] = np.ndarray
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _numeric._frombuffer
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :func:`plain_data_globals` (and ``extra``).

    Subclasses may add their own classes through ``extra`` and word the refusal through
    :meth:`refuse`; ``find_class`` is the only way a pickle reaches a callable (also for the
    ``INST``/``OBJ`` and extension-registry opcodes), so nothing outside the allowed set runs.
    """

    def __init__(self, file: BinaryIO, *, encoding: str = "ASCII",
                 extra: Optional[Dict[Tuple[str, str], Callable]] = None):
        super().__init__(file, encoding=encoding)
        self._allowed = {**plain_data_globals(), **(extra or {})}

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self.refuse(module, name) from None

    def refuse(self, module: str, name: str) -> Exception:
        """The error for a global that is not allowed."""
        return UnsafePickleError(f"refusing to load {module}.{name}: only plain data (builtin containers "
                                 f"and scalars, NumPy arrays) may be unpickled")


def loads(data: bytes, *, encoding: str = "ASCII"):
    """``pickle.loads`` restricted to plain data (:class:`SafeUnpickler`)."""
    return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()


def load(path: str, *, encoding: str = "ASCII"):
    """The plain data pickled in the file ``path`` (:class:`SafeUnpickler`); ``encoding`` decodes
    Python 2 ``str`` objects (``"latin1"`` for the CIFAR-10/100 downloads)."""
    with open(path, "rb") as f:
        return SafeUnpickler(f, encoding=encoding).load()

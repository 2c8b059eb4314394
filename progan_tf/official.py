"""The original NVIDIA code's network pickles: read safely, mapped onto progan_tf's networks.

A file written by the original's ``misc.save_pkl((G, D, Gs), path)`` holds three
``tfutil.Network`` objects. Unpickling it the usual way runs the network source code
stored inside (the original's ``Network.__setstate__`` calls ``exec``). Here a
restricted unpickler (the project's one, ``progan_tf.safe_pickle``) rebuilds each network
as a plain :class:`NetworkRecord` and allows nothing else but plain data and NumPy's array
rebuilders, under both the NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``) module
names; any other global is refused by name, and the stored source is never executed.

:func:`assign_network_weights` copies a record's variables into a
:class:`~progan_tf.networks.Generator` or :class:`~progan_tf.networks.Discriminator`,
converting the original's NCHW layouts (docs/method.md#network-files).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Dict, Tuple

import numpy as np

from progan_tf import safe_pickle
from progan_tf.layers import EqualizedConv2DDownscale, EqualizedUpscaleConv2D
from progan_tf.networks import Discriminator, Generator


class OfficialFormatError(ValueError):
    """A network pickle that is not, or not safely, an original ProGAN network file."""


@dataclasses.dataclass
class NetworkRecord:
    """The pickled state of one original ``tfutil.Network`` (its source text is kept, never run)."""
    name: str = ""
    static_kwargs: dict = dataclasses.field(default_factory=dict)
    build_func_name: str = ""
    variables: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    version: int = 0

    def __setstate__(self, state):
        if not isinstance(state, dict) or "variables" not in state:
            raise OfficialFormatError("a tfutil.Network whose state is not the original's dict")
        self.version = int(state.get("version", 0))
        self.name = str(state.get("name", ""))
        self.static_kwargs = dict(state.get("static_kwargs", {}))
        self.build_func_name = str(state.get("build_func_name", ""))
        self.variables = {str(k): np.asarray(v) for k, v in state["variables"]}


class _RestrictedUnpickler(safe_pickle.SafeUnpickler):
    """The shared plain-data unpickler (``progan_tf.safe_pickle``), plus ``tfutil.Network`` as a record."""

    def __init__(self, file, path: str):
        super().__init__(file, extra={("tfutil", "Network"): NetworkRecord})
        self._path = path

    def refuse(self, module, name):
        if (module, name) == ("network", "Network"):
            return OfficialFormatError(
                f"{self._path}: a Theano-era network pickle (network.Network); only the TensorFlow "
                f"code's files (tfutil.Network) are supported")
        return OfficialFormatError(
            f"{self._path}: refusing to load {module}.{name}: an original ProGAN network file "
            f"holds only tfutil.Network, plain data and NumPy arrays")


def read_network_pickle(path: str) -> Tuple[NetworkRecord, ...]:
    """The ``(G, D, Gs)`` records of an original network pickle, read without running its code."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OfficialFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except OfficialFormatError:
        raise
    except Exception as e:  # noqa: BLE001  (any malformed pickle: report the file, not a traceback)
        raise OfficialFormatError(f"{path}: not a readable network pickle ({type(e).__name__}: {e})") from None
    if not (isinstance(obj, tuple) and obj and all(isinstance(r, NetworkRecord) for r in obj)):
        raise OfficialFormatError(f"{path}: expected a tuple of tfutil.Network objects, found {type(obj).__name__}")
    return obj


# --- variables -> progan_tf weights --------------------------------------------------------

def _g_dense_columns(w, channels):
    """G's 4x4 dense: the original reshapes its output to [C, 4, 4]; ours to [4, 4, C]."""
    n_in = w.shape[0]
    return w.reshape(n_in, channels, 4, 4).transpose(0, 2, 3, 1).reshape(n_in, -1)


def _d_dense_rows(w, channels):
    """D's first dense: the original flattens NCHW [C, 4, 4]; ours flattens [4, 4, C]."""
    n_out = w.shape[1]
    return w.reshape(channels, 4, 4, n_out).transpose(1, 2, 0, 3).reshape(-1, n_out)


def _lod(resolution_log2: int, r: int) -> int:
    return resolution_log2 - r


def _generator_targets(G) -> Dict[str, tuple]:
    """``original variable name -> (our variable, converter)`` for a Generator."""
    nf1 = G.nf(1)
    targets = {"4x4/Dense/weight": (G.dense.kernel, lambda w: _g_dense_columns(w, nf1)),
               "4x4/Dense/bias": (G.dense_bias, None)}
    for r in range(2, G.resolution_log2 + 1):
        size = 2 ** r
        for k, conv in enumerate(G.convs[r]):
            name = "Conv" if r == 2 else (
                "Conv0_up" if isinstance(conv, EqualizedUpscaleConv2D) else f"Conv{k}")
            targets[f"{size}x{size}/{name}/weight"] = (conv.kernel, None)
            targets[f"{size}x{size}/{name}/bias"] = (conv.bias, None)
        to_rgb = G.to_rgb[r]
        targets[f"ToRGB_lod{_lod(G.resolution_log2, r)}/weight"] = (to_rgb.kernel, None)
        targets[f"ToRGB_lod{_lod(G.resolution_log2, r)}/bias"] = (to_rgb.bias, None)
    return targets


def _discriminator_targets(D) -> Dict[str, tuple]:
    """``original variable name -> (our variable, converter)`` for a Discriminator."""
    nf1 = D.nf(1)
    targets = {"4x4/Conv/weight": (D.conv0_4x4.kernel, None), "4x4/Conv/bias": (D.conv0_4x4.bias, None),
               "4x4/Dense0/weight": (D.dense0.kernel, lambda w: _d_dense_rows(w, nf1)),
               "4x4/Dense0/bias": (D.dense0.bias, None),
               "4x4/Dense1/weight": (D.dense1.kernel, None), "4x4/Dense1/bias": (D.dense1.bias, None)}
    for r in range(2, D.resolution_log2 + 1):
        size, lod = 2 ** r, _lod(D.resolution_log2, r)
        targets[f"FromRGB_lod{lod}/weight"] = (D.from_rgb[r].kernel, None)
        targets[f"FromRGB_lod{lod}/bias"] = (D.from_rgb[r].bias, None)
        if r > 2:
            conv0, conv1 = D.convs[r]
            last = "Conv1_down" if isinstance(conv1, EqualizedConv2DDownscale) else "Conv1"
            for name, conv in (("Conv0", conv0), (last, conv1)):
                targets[f"{size}x{size}/{name}/weight"] = (conv.kernel, None)
                targets[f"{size}x{size}/{name}/bias"] = (conv.bias, None)
    return targets


def assign_network_weights(network, record: NetworkRecord) -> None:
    """Copies an original network's variables into ``network`` (a Generator or Discriminator).

    Every trainable variable of the record must have exactly one target of the same size,
    and every weight of ``network`` must be covered; anything else is an error naming
    the variable. The non-trainable ``lod`` is not a weight here.
    """
    targets = _generator_targets(network) if isinstance(network, Generator) else _discriminator_targets(network)
    values = {k: v for k, v in record.variables.items() if k != "lod"}
    unknown = sorted(set(values) - set(targets))
    missing = sorted(set(targets) - set(values))
    if unknown or missing:
        raise OfficialFormatError(f"network {record.name!r}: variables do not match a "
                                  f"{type(network).__name__} of this configuration"
                                  + (f"; unexpected {unknown}" if unknown else "")
                                  + (f"; missing {missing}" if missing else ""))
    for name, (variable, convert) in targets.items():
        value = np.asarray(values[name], np.float32)
        value = convert(value) if convert is not None else value
        if tuple(value.shape) != tuple(variable.shape):
            raise OfficialFormatError(f"network {record.name!r}: {name} has shape {tuple(values[name].shape)}, "
                                      f"expected one that maps onto {tuple(variable.shape)}")
        variable.assign(value)


# --- static_kwargs -> progan_tf network options ---------------------------------------------

# The original's G_paper / D_paper options that progan_tf's networks take under the same name.
_G_OPTIONS = ("num_channels", "resolution", "label_size", "fmap_base", "fmap_decay", "fmap_max", "latent_size",
              "normalize_latents", "use_wscale", "use_pixelnorm", "pixelnorm_epsilon", "use_leakyrelu",
              "fused_scale")
_D_OPTIONS = ("num_channels", "resolution", "label_size", "fmap_base", "fmap_decay", "fmap_max", "use_wscale",
              "mbstd_group_size", "fused_scale")
# Options that choose how the original builds its graph, not what it computes.
_GRAPH_OPTIONS = {"structure": (None, "linear", "recursive"), "is_template_graph": (False, True),
                  "dtype": ("float32", "float16")}
# The original's defaults where they differ from progan_tf's constructor defaults.
_ORIGINAL_DEFAULTS = {"num_channels": 1, "resolution": 32, "label_size": 0}
_BUILDERS = {"G_paper": ("G", _G_OPTIONS), "D_paper": ("D", _D_OPTIONS)}


def network_kwargs(record: NetworkRecord) -> dict:
    """progan_tf constructor options for one original network (``G_paper`` or ``D_paper``).

    An option progan_tf does not support, or a value it cannot reproduce, is refused by name.
    """
    if record.build_func_name not in _BUILDERS:
        raise OfficialFormatError(f"network {record.name!r}: built by {record.build_func_name!r}; "
                                  f"only the original's G_paper and D_paper networks are supported")
    kind, supported = _BUILDERS[record.build_func_name]
    kwargs = dict(_ORIGINAL_DEFAULTS)
    for key, value in record.static_kwargs.items():
        if key in _GRAPH_OPTIONS:
            if value not in _GRAPH_OPTIONS[key]:
                raise OfficialFormatError(f"network {record.name!r}: unsupported {key}={value!r}")
        elif key in supported:
            kwargs[key] = value
        else:
            raise OfficialFormatError(f"network {record.name!r}: the original's option {key}={value!r} "
                                      f"has no progan_tf equivalent")
    if kwargs["num_channels"] not in (1, 3):
        raise OfficialFormatError(f"network {record.name!r}: num_channels={kwargs['num_channels']} "
                                  f"(progan_tf networks have 1 or 3 channels)")
    return kwargs


def build_networks(records) -> Tuple:
    """``(G, D, Gs)`` progan_tf networks holding the weights of the original's ``(G, D, Gs)`` records."""
    if len(records) != 3 or [r.build_func_name for r in records] != ["G_paper", "D_paper", "G_paper"]:
        found = [f"{r.name}:{r.build_func_name}" for r in records]
        raise OfficialFormatError(f"expected the original's (G, D, Gs) networks, found {found}")
    networks = []
    for record in records:
        cls = Generator if record.build_func_name == "G_paper" else Discriminator
        try:
            network = cls(**network_kwargs(record), name=record.name)
        except ValueError as e:
            raise OfficialFormatError(f"network {record.name!r}: {e}") from None
        assign_network_weights(network, record)
        networks.append(network)
    return tuple(networks)

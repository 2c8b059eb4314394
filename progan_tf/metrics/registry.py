"""The metric protocol and registry: every metric is a registered `Metric` subclass.

A metric says what it needs from each image set (`needs`: the images
themselves, or one output of a feature extractor), makes an `Accumulator` that
turns one set into cacheable per-set statistics (named NumPy arrays), and turns
the reference set's and the evaluated set's statistics into its result values::

    @register_metric
    class MeanBrightness(Metric):
        name = "brightness"                 # --metrics=brightness, metric-brightness.txt

        def accumulator(self):
            return MeanAccumulator()        # add(uint8 NHWC batch), statistics() -> {"mean": ...}

        def results(self, reference, evaluated):
            return {"Brightness": float(evaluated["mean"]), "Brightness_ref": float(reference["mean"])}

The `Evaluator` (see `evaluate`) feeds every requested metric from one pass
over each image set and caches the statistics of dataset images under
``cache_key(name, dataset, ..., statistics_id(...))``. The built-in metrics
(swd, fid, is, msssim) are registered by `builtin`, which `evaluate` imports.
"""
import abc
import dataclasses
import inspect
import re
from typing import ClassVar, Dict, List, Optional, Protocol, Sequence, Type, Union

import numpy as np

Arrays = Dict[str, np.ndarray]

IMAGES = "images"  # `Metric.needs`: the uint8 NHWC batches themselves


@dataclasses.dataclass(frozen=True)
class Features:
    """`Metric.needs`: one output of a feature extractor, run once per batch for all metrics that share it.

    `extractor` is ``"fid"`` for the FID feature extractor (``--feature_extractor``
    if given, else InceptionV3) or ``"inception"`` for InceptionV3 itself.
    `output` is ``"features"`` or ``"probs"`` (InceptionV3's class probabilities,
    which load it with its classification top).
    """
    output: str = "features"
    extractor: str = "fid"


Need = Union[str, Features]


@dataclasses.dataclass(frozen=True)
class MetricSettings:
    """What every metric may depend on besides its own options: the set size and the seed."""
    num_images: int
    seed: int = 0
    num_threads: Optional[int] = None  # worker threads for metrics that use them (SWD)


class Accumulator(Protocol):
    """Statistics of one image set, fed batch by batch (images, or extractor outputs: see `Metric.needs`)."""

    def add(self, batch: np.ndarray) -> None: ...

    def statistics(self) -> Arrays: ...


class Metric(abc.ABC):
    """Base class of registered metrics; one instance per `Evaluator`, with its `settings`.

    Subclasses set `name` (lower case, file-name safe: ``--metrics`` and
    ``metric-<name>.txt``), `title` (progress and log lines) and `needs`, and
    implement `accumulator` and `results`. `results` returns this metric's
    result keys (e.g. ``FID``, or ``SWDx1e3_<res>`` per level); keys must not
    clash with another metric's.
    """
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    needs: ClassVar[Need] = IMAGES

    def __init__(self, settings: MetricSettings):
        self.settings = settings

    def statistics_id(self, extractor_name: Optional[str]) -> str:
        """What a set's statistics depend on besides the images (part of their cache key).

        `extractor_name` is the feature extractor's name for `Features` metrics
        (None for image metrics). The default: the extractor, or the seed.
        """
        return extractor_name if extractor_name is not None else f"seed{self.settings.seed}"

    @abc.abstractmethod
    def accumulator(self) -> Accumulator:
        """A fresh accumulator for one image set of ``settings.num_images`` images."""

    @abc.abstractmethod
    def results(self, reference: Arrays, evaluated: Arrays) -> Dict[str, float]:
        """This metric's values from the statistics of the reference set and of the evaluated set."""


_REGISTRY: Dict[str, Type[Metric]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_metric(cls: Type[Metric]) -> Type[Metric]:
    """Class decorator: makes `cls` available as ``--metrics=<cls.name>``. Names are unique."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise TypeError(f"register_metric takes a Metric subclass, got {cls!r}")
    if not _NAME_RE.match(cls.name or ""):
        raise ValueError(f"metric name {cls.name!r} must be lower case letters, digits and _")
    if cls.name in _REGISTRY:
        raise ValueError(f"a metric named {cls.name!r} is registered already ({_REGISTRY[cls.name].__qualname__})")
    if isinstance(cls.needs, Features):
        if cls.needs.extractor not in ("fid", "inception"):
            raise ValueError(f"metric {cls.name!r}: unknown extractor {cls.needs.extractor!r} (fid or inception)")
    elif cls.needs != IMAGES:
        raise ValueError(f"metric {cls.name!r}: needs must be IMAGES or Features(...), got {cls.needs!r}")
    if inspect.isabstract(cls):
        raise TypeError(f"metric {cls.name!r} must implement accumulator() and results()")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_metric(name: str) -> None:
    """Removes a registered metric (e.g. one registered by a test or a plugin)."""
    _REGISTRY.pop(name, None)


def metric_names() -> List[str]:
    """Registered metric names, in registration order (the order of result columns)."""
    return list(_REGISTRY)


def get_metric(name: str) -> Type[Metric]:
    """The metric class registered as `name`; ValueError listing the registered names otherwise."""
    return _REGISTRY[resolve_names([name])[0]]


def resolve_names(names: Union[str, Sequence[str]]) -> List[str]:
    """Cleans a list (or comma list) of metric names: stripped, lower case, de-duplicated, in the given order.

    Raises ValueError naming the unknown ones and the registered ones.
    """
    if isinstance(names, str):
        names = names.split(",")
    cleaned = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in cleaned if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(_REGISTRY)}")
    return cleaned

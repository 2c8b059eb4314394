"""Numeric precision and XLA choices for training (``train.precision``, ``train.jit_compile``).

``auto`` picks from the hardware found: bfloat16 on TPUs and on CPUs with
AMX (where oneDNN runs bfloat16 convolutions several times faster, docs/method.md#tensorflow)
or AVX512_BF16 (B32 measured 1.7x faster), float16 on GPUs with tensor cores (compute
capability 7.0+), and
float32 everywhere else. XLA is on for GPUs and TPUs and off on CPUs, where it
was measured slower (it does not reach the oneDNN kernels).
"""

from __future__ import annotations

import functools

import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
JIT_SETTINGS = ("off", "on", "auto")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    """The CPU feature flags of /proc/cpuinfo (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def hardware() -> dict:
    """What the precision and XLA choices depend on."""
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(details.get("compute_capability") or (0, 0))
    flags = cpu_flags()
    return {"gpus": len(gpus), "gpu_compute_capabilities": capabilities,
            "tpus": len(tf.config.list_logical_devices("TPU")),
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def resolve_precision(name: str, hw: dict | None = None) -> tuple[str, str]:
    """``(policy, reason)`` for a ``train.precision`` setting."""
    if name not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        return name, "set in the config"
    hw = hardware() if hw is None else hw
    if hw["tpus"]:
        return "mixed_bfloat16", "TPU found"
    if hw["gpus"]:
        if all(tuple(c) >= (7, 0) for c in hw["gpu_compute_capabilities"]):
            return "mixed_float16", "GPUs with tensor cores (compute capability 7.0+) found"
        return "float32", "GPU without tensor cores"
    if hw["amx_bf16"]:
        return "mixed_bfloat16", "CPU with AMX-BF16 found"
    if hw["avx512_bf16"]:
        return "mixed_bfloat16", "CPU with AVX512_BF16 found (B32 measured 1.7x faster than float32 on one)"
    return "float32", "CPU without bfloat16 instructions"


def resolve_jit(setting: str, hw: dict | None = None) -> tuple[bool, str]:
    """``(jit_compile, reason)`` for a ``train.jit_compile`` setting."""
    if setting not in JIT_SETTINGS:
        raise ValueError(f"train.jit_compile must be one of {', '.join(JIT_SETTINGS)}, got {setting!r}")
    if setting != "auto":
        return setting == "on", "set in the config"
    hw = hardware() if hw is None else hw
    if hw["gpus"] or hw["tpus"]:
        return True, "accelerator found"
    return False, "CPU: XLA was measured slower than the oneDNN kernels"

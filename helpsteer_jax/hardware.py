"""What the host CPU can do that changes which settings are fast: bf16 hardware or not.

XLA:CPU (and oneDNN under torch) run bf16 matmuls natively only with AVX512-BF16 or AMX. On a
CPU without either (an AVX2-only or plain AVX-512 server, most laptops) a bf16 dot is emulated
through float32, and a bf16 train step is slower than the float32 one. On an AVX2-only AMD EPYC
Zen 4 (benchmarks/RESULTS.md) our bf16 + remat step took 1.8x the float32 step's time with
XLA's bf16 dots and 1.2-1.4x with the dots widened to float32 (bf16_dots_emulated, which the
model does by itself); torch's bf16 autocast took 23x. The trainer says so at the start of such
a run, once.
"""
from __future__ import annotations

import functools
import os

import jax

# /proc/cpuinfo flags that give native bf16 dot products.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
BF16_DOTS_ENV = "HELPSTEER_JAX_BF16_DOTS"


@functools.lru_cache(maxsize=None)
def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, str]:
  """The first processor's fields ("model name", "cpu family", "flags", ...) from a Linux cpuinfo
  file; empty where there is none."""
  fields: dict[str, str] = {}
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if not line.strip():
          break  # the blank line after the first processor
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  return fields


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str] | None:
  """The first processor's ISA flags from a Linux cpuinfo file; None where there is none."""
  flags = cpu_info(path).get("flags")
  return None if flags is None else frozenset(flags.split())


def bf16_dots_emulated() -> bool:
  """True when jax computes on a CPU whose flags are known and show no bf16 dot hardware: there
  the model widens bf16 dot operands to float32 (models/llama._dot), faster and as exact.

  $HELPSTEER_JAX_BF16_DOTS overrides the detection: "native" keeps bf16 dots, "widen" widens
  (the tests pin "native", so their programs are the same on every processor).
  """
  choice = os.environ.get(BF16_DOTS_ENV, "auto")
  if choice not in ("auto", "native", "widen"):
    raise ValueError(f"${BF16_DOTS_ENV}={choice!r}: expected auto, native or widen")
  if choice != "auto":
    return choice == "widen"
  return jax.default_backend() == "cpu" and _lacks_bf16_hardware(cpu_flags())


def _lacks_bf16_hardware(flags: frozenset[str] | None) -> bool:
  """Known flags without any that give native bf16 dots (unknown flags: we do not guess)."""
  return flags is not None and not any(f in flags for f in BF16_FLAGS)


def bf16_on_cpu_note(dtype: str, backend: str | None = None,
                     flags: frozenset[str] | None = None) -> str | None:
  """A warning when a run computes in bfloat16 on a CPU without bf16 hardware, else None.

  Unknown flags (not Linux) give no warning: we do not guess.
  """
  backend = backend or jax.default_backend()
  flags = cpu_flags() if flags is None else flags
  if str(dtype) != "bfloat16" or backend != "cpu" or not _lacks_bf16_hardware(flags):
    return None
  return ("warning: model.dtype=bfloat16 on a CPU without bf16 hardware (no AVX512-BF16 or AMX "
          "in /proc/cpuinfo): bf16 arithmetic is emulated through float32, and on such a CPU our "
          "bf16 + remat step took 1.2-1.4x the float32 step's time (benchmarks/RESULTS.md). "
          "--config.model.dtype=float32 is faster here.")

"""Which processor and software a benchmark figure came from.

The same command gives different ratios on this project's two CPU kinds (a Xeon with AMX and
AVX512-BF16, and one with AVX-512 and VNNI only), so every benchmark prints this line first and
puts it in its JSON output, and benchmarks/RESULTS.md keeps one table per processor kind.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform

# /proc/cpuinfo flag -> what the table calls it. bf16 hardware (AVX512-BF16, AMX) is what makes
# bf16 dots fast on XLA:CPU and oneDNN; without it a bf16 matmul is emulated through float32.
_FLAGS = {"avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx512_bf16": "AVX512-BF16",
          "amx_tile": "AMX"}
_PACKAGES = ("jax", "jaxlib", "torch", "transformers", "trl")


def cpu() -> dict[str, object]:
  """Model name, the ISA extensions that matter here, and the core count (Linux /proc/cpuinfo)."""
  model, flags = platform.processor() or "unknown", set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags = set(value.split())
          break
  except OSError:
    pass
  return {"model": model, "isa": [name for flag, name in _FLAGS.items() if flag in flags],
          "cores": os.cpu_count(), "kind": processor_kind(flags)}


def processor_kind(flags: set[str]) -> str:
  """The table a figure belongs in: 'AMX' (bf16 hardware), 'AVX-512 without bf16', or other."""
  if "amx_tile" in flags or "avx512_bf16" in flags:
    return "AMX" if "amx_tile" in flags else "AVX512-BF16"
  return "AVX-512 without bf16" if "avx512f" in flags else "no AVX-512"


def versions() -> dict[str, str]:
  out = {}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def describe() -> dict[str, object]:
  """Everything above plus XLA_FLAGS, as one JSON-able dict."""
  return {"cpu": cpu(), "versions": versions(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def header(info: dict[str, object] | None = None) -> str:
  """One line: 'Intel(R) Xeon(R) Processor [AVX-512, VNNI, AVX512-BF16, AMX], 2 cores; jax ...'."""
  info = info or describe()
  c = info["cpu"]
  soft = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
  flags = f"; XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else ""
  return f"{c['model']} [{', '.join(c['isa']) or 'no AVX-512'}], {c['cores']} cores; {soft}{flags}"

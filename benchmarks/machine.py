"""Which processor and software a benchmark figure came from.

The same command gives different ratios on the CPUs this project's machines come with (a Xeon
with AMX and AVX512-BF16, a Xeon with AVX-512 and VNNI only, AMD EPYC Zen 4 and Zen 5 with
AVX512-BF16), so every benchmark prints this line first and puts it in its JSON output, and
benchmarks/RESULTS.md keeps one table per processor kind.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform

from helpsteer_jax import hardware

# /proc/cpuinfo flag -> what the table calls it. bf16 hardware (AVX512-BF16, AMX) is what makes
# bf16 dots fast on XLA:CPU and oneDNN; without it a bf16 matmul is emulated through float32.
_FLAGS = {"avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx512_bf16": "AVX512-BF16",
          "amx_tile": "AMX"}
_PACKAGES = ("jax", "jaxlib", "torch", "transformers", "trl")


def cpu() -> dict[str, object]:
  """Model name, family and model numbers (with the core generation where known), the ISA
  extensions that matter here, and the core count (Linux /proc/cpuinfo). A VM's model name can
  hide the generation ("AMD EPYC"): the family and model numbers do not."""
  fields = hardware.cpu_info()
  model = fields.get("model name") or platform.processor() or "unknown"
  flags = hardware.cpu_flags() or frozenset()
  family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
  number = int(fields["model"]) if fields.get("model", "").isdigit() else None
  return {"model": model, "family": family, "model_number": number,
          "generation": generation(fields.get("vendor_id", ""), family, number),
          "isa": [name for flag, name in _FLAGS.items() if flag in flags]
                 or (["AVX2"] if "avx2" in flags else []),  # an AVX2-only CPU says so
          "cores": os.cpu_count(), "kind": processor_kind(flags)}


# (vendor, family) -> [(first model, last model, generation)]: the server cores seen on machines
# of this kind or likely beside them. Zen 4 and Zen 5 share every flag that _FLAGS names, yet
# Zen 5 executes 512-bit vector instructions at full width (Zen 4 splits them in two): the same
# command gives different ratios on them.
_GENERATIONS = {
    ("AuthenticAMD", 23): [(0, 255, "Zen/Zen 2")],
    ("AuthenticAMD", 25): [(0x10, 0x1F, "Zen 4"), (0x60, 0x7F, "Zen 4"), (0xA0, 0xAF, "Zen 4"),
                           (0, 255, "Zen 3")],
    ("AuthenticAMD", 26): [(0, 255, "Zen 5")],
    ("GenuineIntel", 6): [(85, 85, "Skylake/Cascade Lake"), (106, 106, "Ice Lake"),
                          (108, 108, "Ice Lake"), (143, 143, "Sapphire Rapids"),
                          (207, 207, "Emerald Rapids"), (173, 174, "Granite Rapids")],
}


def generation(vendor: str, family: int | None, number: int | None) -> str | None:
  """The core generation of a vendor / family / model triple, or None when not in the table."""
  for lo, hi, name in _GENERATIONS.get((vendor, family), []):
    if number is not None and lo <= number <= hi:
      return name
  return None


def processor_kind(flags: set[str] | frozenset[str]) -> str:
  """The table a figure belongs in: 'AMX' (bf16 hardware), 'AVX-512 without bf16', or other."""
  if "amx_tile" in flags or "avx512_bf16" in flags:
    return "AMX" if "amx_tile" in flags else "AVX512-BF16"
  if "avx512f" in flags:
    return "AVX-512 without bf16"
  return "AVX2 without AVX-512" if "avx2" in flags else "no AVX-512"


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
  """One line: 'AMD EPYC (Zen 5, family 26 model 2) [AVX-512, VNNI, AVX512-BF16], 2 cores;
  jax ...'."""
  info = info or describe()
  c = info["cpu"]
  ident = ", ".join(x for x in (c.get("generation"), c.get("family") is not None and
                                f"family {c['family']} model {c['model_number']}") if x)
  soft = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
  flags = f"; XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else ""
  model = f"{c['model']} ({ident})" if ident else c["model"]
  return f"{model} [{', '.join(c['isa']) or 'no AVX-512'}], {c['cores']} cores; {soft}{flags}"

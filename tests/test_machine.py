"""benchmarks/machine.py: the processor line every benchmark figure and study result carries.

A VM's model name can be only "AMD EPYC", and Zen 4 and Zen 5 share every ISA flag the line
lists, yet the same benchmark gives different ratios on them: the line must tell them apart.
"""
from __future__ import annotations

from benchmarks import machine


def _info(vendor: str, family: int | None, number: int | None) -> dict:
  return {"cpu": {"model": "AMD EPYC", "family": family, "model_number": number,
                  "generation": machine.generation(vendor, family, number),
                  "isa": ["AVX-512", "VNNI", "AVX512-BF16"], "cores": 2,
                  "kind": "AVX512-BF16"},
          "versions": {"jax": "0.10.2"}, "xla_flags": ""}


def test_generations_of_the_cores_seen():
  assert machine.generation("AuthenticAMD", 26, 2) == "Zen 5"
  assert machine.generation("AuthenticAMD", 25, 0x11) == "Zen 4"  # Genoa
  assert machine.generation("AuthenticAMD", 25, 0x01) == "Zen 3"  # Milan
  assert machine.generation("GenuineIntel", 6, 143) == "Sapphire Rapids"
  assert machine.generation("GenuineIntel", 6, 1) is None
  assert machine.generation("", None, None) is None


def test_header_tells_zen4_from_zen5():
  zen4 = machine.header(_info("AuthenticAMD", 25, 0x11))
  zen5 = machine.header(_info("AuthenticAMD", 26, 2))
  assert zen4 != zen5
  assert zen5.startswith("AMD EPYC (Zen 5, family 26 model 2) [AVX-512, VNNI, AVX512-BF16], "
                         "2 cores; jax 0.10.2")
  # An unknown model still gets its numbers; no numbers (not Linux): the name alone.
  assert machine.header(_info("AuthenticAMD", 99, 7)).startswith("AMD EPYC (family 99 model 7) [")
  assert machine.header(_info("", None, None)).startswith("AMD EPYC [AVX-512")


def test_this_machine_is_described():
  c = machine.cpu()
  assert set(c) >= {"model", "family", "model_number", "generation", "isa", "cores", "kind"}
  assert machine.header().split(" [")[0].startswith(str(c["model"]))


def test_avx2_only_cpu_is_its_own_kind():
  assert machine.processor_kind({"avx", "avx2", "fma"}) == "AVX2 without AVX-512"
  assert machine.processor_kind({"avx2", "avx512f"}) == "AVX-512 without bf16"
  assert machine.processor_kind({"avx2", "avx512f", "avx512_bf16"}) == "AVX512-BF16"
  assert machine.processor_kind({"sse2"}) == "no AVX-512"

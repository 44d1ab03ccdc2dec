"""helpsteer_jax.hardware: a bf16 run on a CPU without bf16 hardware is warned, and only that.

On an AVX2-only AMD EPYC Zen 4 our bf16 + remat train step took 1.2-1.4x the float32 step's
time (1.8x before its dots were widened to float32; benchmarks/RESULTS.md), so a user who
copies a bf16 config onto such a CPU is told.
"""
from __future__ import annotations

from pathlib import Path

from helpsteer_jax import hardware

REPO = Path(__file__).resolve().parents[1]

AVX2 = frozenset({"fma", "avx", "avx2"})
AVX512 = AVX2 | {"avx512f", "avx512_vnni"}


def test_bf16_without_bf16_hardware_is_warned():
  for flags in (AVX2, AVX512):
    note = hardware.bf16_on_cpu_note("bfloat16", "cpu", flags)
    assert note is not None and "model.dtype=float32" in note


def test_no_warning_where_bf16_is_native_or_not_used():
  assert hardware.bf16_on_cpu_note("bfloat16", "cpu", AVX512 | {"avx512_bf16"}) is None
  assert hardware.bf16_on_cpu_note("bfloat16", "cpu", AVX512 | {"amx_tile", "amx_bf16"}) is None
  assert hardware.bf16_on_cpu_note("float32", "cpu", AVX2) is None
  assert hardware.bf16_on_cpu_note("bfloat16", "gpu", AVX2) is None
  assert hardware.bf16_on_cpu_note("bfloat16", "cpu", frozenset()) is not None


def test_cpuinfo_flags_are_read(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\n"
                  "processor\t: 1\nflags\t\t: fpu avx2 fma avx512f\n")
  assert hardware.cpu_flags(str(info)) == frozenset({"fpu", "avx2", "fma"})
  assert hardware.cpu_flags(str(tmp_path / "absent")) is None


def test_trainer_prints_the_warning(tmp_path, monkeypatch, capsys, smollm2_tokenizer):
  del smollm2_tokenizer  # the tiny config's tokenizer (skips where the GGUF is absent)
  from helpsteer_jax.train import train
  from helpsteer_jax.training import launch
  monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2)
  c = launch.load_config(f"{REPO}/experiments/scaled_bt.py:tiny")
  c.model.dtype, c.train.steps = "bfloat16", 1
  train(c, str(tmp_path))
  assert "bfloat16 on a CPU without bf16 hardware" in capsys.readouterr().err


def test_bf16_dots_are_widened_only_where_emulated(monkeypatch):
  """models/llama._dot: bf16 operands widened to float32 (same products, float32 accumulation)
  when hardware.bf16_dots_emulated, bf16 dots otherwise; the results agree to float32
  rounding of the sums, and the result dtype is the caller's either way."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import pytest
  from helpsteer_jax.models import llama

  x = jax.random.normal(jax.random.PRNGKey(0), (64, 96)).astype(jnp.bfloat16)
  w = jax.random.normal(jax.random.PRNGKey(1), (96, 32)).astype(jnp.bfloat16)
  dims = (((1,), (0,)), ((), ()))

  def operand_dtypes(preferred):
    jaxpr = jax.make_jaxpr(lambda a, b: llama._dot(a, b, dims, preferred))(x, w).jaxpr
    return [tuple(str(v.aval.dtype) for v in e.invars) for e in jaxpr.eqns
            if e.primitive.name == "dot_general"]

  out = {}
  for choice in ("native", "widen"):
    monkeypatch.setenv(hardware.BF16_DOTS_ENV, choice)
    want = ("float32", "float32") if choice == "widen" else ("bfloat16", "bfloat16")
    assert operand_dtypes(jnp.float32) == [want] and operand_dtypes(None) == [want]
    out[choice] = llama._dot(x, w, dims, jnp.float32)
    assert out[choice].dtype == jnp.float32
    assert llama._dot(x, w, dims).dtype == jnp.bfloat16
  exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  for choice in out:  # float32 sums of exact products: within float32 rounding of 96 terms
    np.testing.assert_allclose(np.asarray(out[choice]), exact, rtol=1e-5, atol=1e-4)
  monkeypatch.setenv(hardware.BF16_DOTS_ENV, "sometimes")
  with pytest.raises(ValueError, match="HELPSTEER_JAX_BF16_DOTS"):
    hardware.bf16_dots_emulated()


def test_detection_follows_the_flags(monkeypatch):
  monkeypatch.setenv(hardware.BF16_DOTS_ENV, "auto")
  monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2)
  assert hardware.bf16_dots_emulated()
  monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX512 | {"avx512_bf16"})
  assert not hardware.bf16_dots_emulated()
  monkeypatch.setattr(hardware, "cpu_flags", lambda: None)
  assert not hardware.bf16_dots_emulated()

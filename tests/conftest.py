"""Test set-up: 8 fake CPU devices and fast-compiling XLA flags (set before XLA starts), fixtures."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# bf16 dots as bf16 on every processor (helpsteer_jax.hardware.bf16_dots_emulated): the same
# programs whether or not this CPU has bf16 hardware; tests/test_hardware.py covers "widen".
os.environ.setdefault("HELPSTEER_JAX_BF16_DOTS", "native")
# Persistent XLA compilation cache, shared by the xdist workers and the CLI subprocesses the tests
# start (they inherit the environment): a second run of the suite skips the compiles. Keyed by
# the HLO, the flags and the jax/jaxlib versions, so a stale entry is never used; point
# $JAX_COMPILATION_CACHE_DIR elsewhere (or at an empty folder) to change or defeat it. Every
# program is kept, however fast its compile: XLA:CPU spends ~25 ms on even a one-op program, and
# the ~6000 small ones (op-by-op execution) were 40% of a warm run's CPU time (5:25 -> 3:19 wall
# on the AVX2 Zen 4; about 40 MB for the whole suite). No size limit: jax's LRU eviction lists
# the folder on every write.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.expanduser("~"), ".cache", "helpsteer_jax", "xla_tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
# Code generation for runs without the slow tests (the default, pytest.ini's -m "not slow"):
# LLVM at -O0 and XLA:CPU's older elemental emitter instead of its MLIR fusion emitters. The
# HLO and its passes are the same, so is every numerical check (all pass unchanged); what
# changes is how long XLA:CPU takes to compile the thousands of small programs the suite makes,
# against how fast their code runs. On the AVX2 Zen 4 (2026-12-07): a tiny model's train step
# compiled in 0.54 s instead of 2.3 s and ran in 0.15 s instead of 0.07 s; the default suite took
# 4 min 55 s instead of 8 min 25 s with an empty compilation cache, 4 min 15 s instead of about
# 3 min 25 s with a warm one. Runs that select slow tests (real SmolLM2 weights: runtime, not
# compiles) keep XLA's defaults, as users run it.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")


def xla_flags(markexpr: str) -> str:
  """XLA_FLAGS for a test run selected by `-m markexpr`, unless the environment sets its own."""
  fast = "not slow" in " ".join(markexpr.split())
  return " ".join((DEVICES_FLAG,) + (FAST_COMPILE_FLAGS if fast else ()))


def pytest_configure(config):
  # Before any test module runs jax (XLA reads the flags when its CPU backend starts); xdist's
  # workers do the same with the same -m.
  os.environ.setdefault("XLA_FLAGS", xla_flags(config.getoption("markexpr")))

from helpsteer_jax.data.paths import shared_data_dir  # noqa: E402

SHARED_DATA = Path(shared_data_dir())


@pytest.fixture(scope="session")
def shared_data() -> Path:
  """../shared/data (or $HELPSTEER_SHARED_DATA); skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent")
  return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_tokenizer():
  """SmolLM2-135M-Instruct's tokenizer and chat template, read from the packaged GGUF."""
  from helpsteer_jax.models import sources
  try:
    sources.smollm2_gguf_path()
  except FileNotFoundError as e:
    pytest.skip(str(e))
  return sources.load_tokenizer("smollm2")

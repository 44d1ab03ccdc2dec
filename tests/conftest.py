"""Test set-up: 8 fake CPU devices (set before jax is imported) and shared fixtures."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
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

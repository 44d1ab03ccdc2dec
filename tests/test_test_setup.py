"""The test run's own set-up (tests/conftest.py): which XLA flags a run starts XLA with."""
import jax

import conftest


def test_runs_without_slow_tests_compile_fast_and_runs_with_them_as_users_do():
  fast = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
          "--xla_cpu_use_fusion_emitters=false")
  assert conftest.xla_flags("not slow") == fast  # pytest.ini's default
  assert conftest.xla_flags("not  slow and needs_torch") == fast
  for markexpr in ("slow", "", "slow or needs_torch"):  # real weights: runtime, not compiles
    assert conftest.xla_flags(markexpr) == "--xla_force_host_platform_device_count=8"


def test_xla_started_after_the_flags_were_set():
  # pytest_configure sets XLA_FLAGS; had XLA's CPU backend started before, there would be one
  # device.
  assert jax.device_count() == 8

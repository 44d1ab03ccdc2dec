"""benchmarks/train_step.py's summary over rounds: the fastest round's step time, and the largest
peak memory of any round (a slower round's larger peak was once dropped); each row's FLOPs."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import train_step  # noqa: E402  pylint: disable=wrong-import-position


def test_fastest_time_and_largest_peak_over_rounds():
  rounds = [{"median_s": 4.0, "peak_rss_gib": 3.30, "compile_s": 4.4},
            {"median_s": 4.1, "peak_rss_gib": 3.38, "compile_s": 4.2},  # slower, larger peak
            {"median_s": 3.9, "peak_rss_gib": 3.20, "compile_s": 4.0}]
  best = None
  for res in rounds:
    best = train_step.keep_best(best, res)
  assert best == {"median_s": 3.9, "peak_rss_gib": 3.38, "compile_s": 4.0}


def test_a_row_counts_the_flops_of_the_model_it_runs(monkeypatch):
  """A row's $BENCH_MODEL (its "@" setting, else the environment's) changes the model our child
  runs, so its FLOPs (GFLOP/s, MFU) are counted on that model; torch rows keep the base shape.
  (A 4-layer row was once counted as 30 layers: 728% MFU.)"""
  monkeypatch.delenv("BENCH_MODEL", raising=False)
  whole = train_step.row_flops_per_token("jax_fp32", 256, True)
  four = train_step.row_flops_per_token("jax_fp32@BENCH_MODEL=num_hidden_layers=4 X=1", 256, True)
  head = train_step.row_flops_per_token("jax_fp32@BENCH_MODEL=num_hidden_layers=0", 256, True)
  # per-token FLOPs are a head term plus one equal term per layer
  assert four - head == pytest.approx((whole - head) * 4 / 30, rel=1e-12) and head < four < whole
  monkeypatch.setenv("BENCH_MODEL", "num_hidden_layers=4")
  assert train_step.row_flops_per_token("jax_fp32", 256, True) == four
  assert train_step.row_flops_per_token("torch_fp32", 256, True) == whole
  assert train_step.row_flops_per_token("jax_fp32", 256, False) == four / 3

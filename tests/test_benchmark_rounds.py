"""benchmarks/train_step.py's summary over rounds: the fastest round's step time, and the largest
peak memory of any round (a slower round's larger peak was once dropped)."""
import sys
from pathlib import Path

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

"""Seed noise and the paired bootstrap (evaluation/compare.py), and RewardBench's linear weights."""
import numpy as np
import pytest

from helpsteer_jax.evaluation import compare, rewardbench

SUBSETS = ["alpacaeval-easy"] * 40 + ["mt-bench-hard"] * 10


def test_bootstrap_interval_of_a_constant_difference_is_that_constant():
  lo, hi = compare.paired_bootstrap_interval(np.ones(30))
  assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
  # stratified: the officially weighted mean of present sections of a uniform +1 is +1
  weights = rewardbench.subset_coefficients(SUBSETS)
  lo, hi = compare.paired_bootstrap_interval(np.ones(len(SUBSETS)), SUBSETS, weights)
  assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
  with pytest.raises(ValueError, match="weights"):
    compare.paired_bootstrap_interval(np.ones(len(SUBSETS)), SUBSETS)


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_pairs():
  rng = np.random.default_rng(3)
  small = rng.choice([-1.0, 0.0, 1.0], 40, p=[0.2, 0.5, 0.3])
  big = np.tile(small, 25)
  lo_s, hi_s = compare.paired_bootstrap_interval(small)
  lo_b, hi_b = compare.paired_bootstrap_interval(big)
  assert lo_s < small.mean() < hi_s and lo_b < big.mean() < hi_b
  # Expected about 1/sqrt(25) = 1/5 as wide; asserted below 1/3 to leave room for resampling noise.
  assert hi_b - lo_b < (hi_s - lo_s) / 3
  assert compare.paired_bootstrap_interval(small) == (lo_s, hi_s)  # seeded: reproducible


def test_rb_coefficients_reproduce_the_official_weighting():
  rng = np.random.default_rng(0)
  correct = rng.integers(0, 2, len(SUBSETS)).astype(np.float64)
  coef = rewardbench.subset_coefficients(SUBSETS)
  names = np.asarray(SUBSETS)
  linear = sum(c * correct[names == s].mean() for s, c in coef.items())
  official = rewardbench.summarize(SUBSETS, correct, np.full_like(correct, 0.5))
  assert linear == pytest.approx(official["mean_of_present_sections"], abs=1e-12)


def test_seed_difference_verdicts():
  assert compare.seed_stat([None, None]) is None
  assert compare.seed_stat([0.5, None]) == (0.5, 0.0, 1)
  diff, noise, verdict = compare.seed_difference([0.8, 0.82, 0.81], [0.6, 0.61, 0.59])
  assert diff == pytest.approx(0.21) and verdict == "holds"
  assert noise == pytest.approx(np.hypot(0.01, 0.01))
  assert compare.seed_difference([0.6, 0.61, 0.59], [0.8, 0.82, 0.81])[2] == "reversed"
  assert compare.seed_difference([0.5, 0.9], [0.6, 0.7])[2] == "within seed noise"
  assert compare.seed_difference([], [0.6])[2] == "not run"


def test_seed_mean_correct():
  np.testing.assert_array_equal(compare.seed_mean_correct([[1, 0, 1], [1, 1, 0]]),
                                [1.0, 0.5, 0.5])
  assert compare.seed_mean_correct([[1, 0], None]) is None
  assert compare.seed_mean_correct([]) is None

"""The small study's report logic: verdicts from seeds and a paired bootstrap over pairs."""
import json

import numpy as np
import pytest

from experiments import report_small
from experiments import reproduce_small
from helpsteer_jax.evaluation import rewardbench


def _runs(name: str, rb_correct: np.ndarray, hs_correct: np.ndarray, subsets: list[str],
          jitter: float = 0.0) -> list[dict]:
  out = []
  for seed in range(3):
    r_c = rb_correct.astype(np.float64)
    summary = rewardbench.summarize(subsets, r_c, np.full_like(r_c, 0.5))
    out.append({"variant": name, "seed": seed, "metrics": {
        "rewardbench": {"mean_of_present_sections": summary["mean_of_present_sections"]},
        "rb_correct": rb_correct.tolist(), "hs_heldout_correct": hs_correct.tolist(),
        "hs_heldout_acc": float(hs_correct.mean()) + jitter * (seed - 1)}})
  return out


SUBSETS = ["alpacaeval-easy"] * 40 + ["mt-bench-hard"] * 10


def test_bootstrap_interval_of_a_constant_difference_is_that_constant():
  lo, hi = report_small._bootstrap_interval(np.ones(30), None)
  assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
  # stratified: the officially weighted mean of present sections of a uniform +1 is +1
  lo, hi = report_small._bootstrap_interval(np.ones(len(SUBSETS)), SUBSETS)
  assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_rb_coefficients_reproduce_the_official_weighting():
  rng = np.random.default_rng(0)
  correct = rng.integers(0, 2, len(SUBSETS)).astype(np.float64)
  coef = report_small._rb_coefficients(SUBSETS)
  names = np.asarray(SUBSETS)
  linear = sum(c * correct[names == s].mean() for s, c in coef.items())
  official = rewardbench.summarize(SUBSETS, correct, np.full_like(correct, 0.5))
  assert linear == pytest.approx(official["mean_of_present_sections"], abs=1e-12)


def test_claim_verdicts():
  rng = np.random.default_rng(1)
  n_rb, n_hs = len(SUBSETS), 100
  good = _runs("a", np.ones(n_rb, int), np.ones(n_hs, int), SUBSETS)
  bad = _runs("b", np.zeros(n_rb, int), np.zeros(n_hs, int), SUBSETS)
  coin = rng.integers(0, 2, n_hs)
  runs = {"a": good, "b": bad, "c": _runs("c", np.ones(n_rb, int), coin, SUBSETS),
          "d": _runs("d", np.ones(n_rb, int), coin, SUBSETS)}
  key = "rewardbench/mean_of_present_sections"
  assert report_small._claim(runs, "a", "b", key, "rb_correct", SUBSETS).endswith("| holds")
  assert report_small._claim(runs, "b", "a", "hs_heldout_acc", "hs_heldout_correct",
                             None).endswith("| reversed")
  # identical decisions: a zero difference is never a verdict
  assert report_small._claim(runs, "c", "d", "hs_heldout_acc", "hs_heldout_correct",
                             None).endswith("| within noise")
  # a difference smaller than the seed spread is within noise even when every pair agrees
  runs["e"] = _runs("e", np.ones(n_rb, int), np.ones(n_hs, int), SUBSETS, jitter=2.0)
  assert report_small._claim(runs, "e", "b", "hs_heldout_acc", "hs_heldout_correct",
                             None).endswith("| within noise")
  assert report_small._claim(runs, "a", "missing", "hs_heldout_acc", "hs_heldout_correct",
                             None).startswith("not run")


def test_result_json_takes_numpy_scalars():
  text = reproduce_small._to_json({"x": np.float32(0.5), "v": np.arange(3), "n": np.int64(2)})
  assert json.loads(text) == {"x": 0.5, "v": [0, 1, 2], "n": 2}
  with pytest.raises(TypeError):
    reproduce_small._to_json({"bad": object()})

"""The small study (projects/reproduce_small): its report's verdicts, and REPORT.md regenerated
byte for byte from the committed result files."""
import json

import numpy as np
import pytest

from helpsteer_jax.evaluation import rewardbench
from projects.reproduce_small import config, report, run


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


def test_claim_verdicts():
  rng = np.random.default_rng(1)
  n_rb, n_hs = len(SUBSETS), 100
  good = _runs("a", np.ones(n_rb, int), np.ones(n_hs, int), SUBSETS)
  bad = _runs("b", np.zeros(n_rb, int), np.zeros(n_hs, int), SUBSETS)
  coin = rng.integers(0, 2, n_hs)
  runs = {"a": good, "b": bad, "c": _runs("c", np.ones(n_rb, int), coin, SUBSETS),
          "d": _runs("d", np.ones(n_rb, int), coin, SUBSETS)}
  key = "rewardbench/mean_of_present_sections"
  assert report.claim_cells(runs, "a", "b", key, "rb_correct", SUBSETS).endswith("| holds")
  assert report.claim_cells(runs, "b", "a", "hs_heldout_acc", "hs_heldout_correct",
                            None).endswith("| reversed")
  # identical decisions: a zero difference is never a verdict
  assert report.claim_cells(runs, "c", "d", "hs_heldout_acc", "hs_heldout_correct",
                            None).endswith("| within noise")
  # a difference smaller than the seed spread is within noise even when every pair agrees
  runs["e"] = _runs("e", np.ones(n_rb, int), np.ones(n_hs, int), SUBSETS, jitter=2.0)
  assert report.claim_cells(runs, "e", "b", "hs_heldout_acc", "hs_heldout_correct",
                            None).endswith("| within noise")
  assert report.claim_cells(runs, "a", "missing", "hs_heldout_acc", "hs_heldout_correct",
                            None).startswith("not run")


def test_result_json_takes_numpy_scalars():
  text = run._to_json({"x": np.float32(0.5), "v": np.arange(3), "n": np.int64(2)})
  assert json.loads(text) == {"x": 0.5, "v": [0, 1, 2], "n": 2}
  with pytest.raises(TypeError):
    run._to_json({"bad": object()})


def test_report_regenerates_from_the_committed_results():
  """`--stage report` on the committed result files gives the committed REPORT.md exactly: the
  numbers, tables and prose of the report are a function of results/, the template and the
  verdict (figures are not drawn here)."""
  assert report.build(figures_dir=None) == config.REPORT.read_text()

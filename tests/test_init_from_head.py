"""Stage 2 of the paper's recipe takes the stage-1 regression run's *helpfulness* output.

The column is looked up in the stage-1 run's own `data.attributes` (config.json), so a stage-1
run whose attributes do not start with helpfulness still hands over the right output. The data
is a few synthetic rows in the HelpSteer ratings schema, written to tmp_path; the model is the
tiny random preset with SmolLM2's tokenizer. Exact equality: lr=0 leaves the head untouched.
"""
import json
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from helpsteer_jax.train import train
from helpsteer_jax.training.checkpoint import restore_params
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]
ORDER = ("correctness", "helpfulness", "coherence")  # helpfulness is column 1, not 0


def _config(name: str, arg: str = "tiny") -> ml_collections.ConfigDict:
  return launch.load_config(f"{REPO}/experiments/{name}.py:{arg}")


def _ratings_file(path: Path) -> str:
  """Six prompts with two responses each, helpfulness differing within every prompt."""
  rows = []
  for i in range(6):
    for k, (response, h) in enumerate(((f"Answer {i}: yes, because {i} + 1 = {i + 1}.", 4),
                                       (f"No idea about {i}.", 1))):
      rows.append({"prompt": f"Question {i}: is {i} + 1 = {i + 1}?", "response": response,
                   "helpfulness": h, "correctness": 3 - k, "coherence": 4, "complexity": 1,
                   "verbosity": 1 + k})
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def _use_data(c: ml_collections.ConfigDict, path: str, fmt: str) -> None:
  c.data.train = dict(format=fmt, path=path, split="all")
  c.data.eval = {}
  c.data.eval_ratings = {}
  c.train.steps = 1


@pytest.fixture(autouse=True)
def _need_tokenizer(smollm2_tokenizer):
  del smollm2_tokenizer


def test_stage_two_keeps_the_helpfulness_column_of_any_attribute_order(tmp_path):
  data = _ratings_file(tmp_path / "ratings.jsonl")
  c1 = _config("regression")
  _use_data(c1, data, "helpsteer_ratings")
  c1.data.attributes = ORDER
  c1.model.num_labels = len(ORDER)
  train(c1, str(tmp_path / "stage1"))
  stage1 = restore_params(str(tmp_path / "stage1"))["score"]["kernel"]
  assert stage1.shape[-1] == 3

  c2 = _config("scaled_bt_from_regression")
  _use_data(c2, data, "helpsteer_ratings_pairs")
  c2.init_from = str(tmp_path / "stage1")
  c2.optim.lr = 0.0  # no update: the reward head must be stage 1's helpfulness column exactly
  train(c2, str(tmp_path / "stage2"))
  stage2 = restore_params(str(tmp_path / "stage2"))["score"]["kernel"]
  np.testing.assert_array_equal(stage2, stage1[:, [ORDER.index("helpfulness")]])
  assert not np.array_equal(stage2, stage1[:, [0]])  # the columns differ (random init)


def _fake_run(tmp_path: Path, loss: str, attributes) -> str:
  run = tmp_path / f"{loss}_{len(attributes)}"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"loss": {"name": loss},
                                               "data": {"attributes": list(attributes)}}))
  return str(run)


def test_head_columns_by_name_need_a_regression_run_with_that_output(tmp_path):
  from helpsteer_jax.train import init_head_columns
  c = _config("scaled_bt_from_regression")
  c.init_from = _fake_run(tmp_path, "regression", ORDER)
  assert init_head_columns(c) == [1]
  c.init_head_columns = (2, "helpfulness")  # indices pass through unchanged
  assert init_head_columns(c) == [2, 1]
  c.init_head_columns = ("helpfulness",)
  c.init_from = _fake_run(tmp_path, "scaled_bt", ORDER)
  with pytest.raises(ValueError, match="'scaled_bt' run, not a regression run"):
    init_head_columns(c)
  c.init_from = _fake_run(tmp_path, "regression", ("correctness",))
  with pytest.raises(ValueError, match=r"regression run on \['correctness'\]: it has no "
                                       r"helpfulness output"):
    init_head_columns(c)
  c.init_from = str(tmp_path / "nowhere")
  with pytest.raises(ValueError, match="cannot read the init_from run's config"):
    init_head_columns(c)

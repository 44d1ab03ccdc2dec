"""The paradigm table (training/tasks.py), model sources (runs.py) and config arguments."""
import json

import pytest

from helpsteer_jax import losses, runs
from helpsteer_jax.training import configs
from helpsteer_jax.training.tasks import TASKS, task_for


def test_every_loss_belongs_to_exactly_one_task():
  names = [name for task in TASKS.values() for name in task.losses]
  assert sorted(names) == sorted(set(names))
  assert {task_for(n).name for n in losses.PAIRWISE_LOSSES} == {"pairwise"}
  assert {task_for(n).name for n in losses.DPO_LOSSES} == {"dpo"}
  assert task_for("regression").name == "regression"
  with pytest.raises(ValueError, match="unknown loss 'dpo_typo'"):
    task_for("dpo_typo")


def test_what_each_task_trains():
  pairwise, regression, dpo = TASKS["pairwise"], TASKS["regression"], TASKS["dpo"]
  assert (pairwise.batches, regression.batches, dpo.batches) == ("pairs", "ratings", "pairs")
  assert pairwise.packable and not regression.packable and not dpo.packable
  assert dpo.response_mask and dpo.frozen == "ref" and dpo.trained_subtree == ("policy",)
  assert not dpo.reward_head and pairwise.reward_head and regression.reward_head
  assert regression.eval_ratings and not pairwise.eval_ratings


def test_source_kinds(tmp_path):
  assert runs.resolve("tiny").kind == "preset"
  assert runs.resolve("gguf:/x/m.gguf").checkpoint.kind == "gguf"
  hf = runs.resolve(str(tmp_path))
  assert hf.kind == "checkpoint" and hf.checkpoint.kind == "hf"
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "config.json").write_text("{}")
  assert runs.resolve(tmp_path).kind == "workdir"
  assert runs.resolve(hf) is hf  # resolved once, passed on as it is
  with pytest.raises(ValueError, match="preset"):
    runs.load_model("tiny")


def test_workdir_config_follows_its_model_section_and_paradigm(tmp_path):
  """A workdir's config is its run's model (a preset here) with the run's runtime settings; a
  DPO run trained a causal LM (no reward head), a regression run a head per attribute."""
  (tmp_path / "checkpoints").mkdir()
  for loss, num_labels, want in (("regression", 5, 5), ("dpo", 1, None), ("scaled_bt", 1, 1)):
    c = configs.get_base_config(loss, "tiny")
    c.model.tokenizer = ""  # the preset's own vocabulary: no tokenizer to load
    c.model.num_labels = num_labels
    c.model.remat_policy = "full"
    (tmp_path / "config.json").write_text(c.to_json_best_effort())
    cfg, got = runs.load_config(tmp_path, scan_layers=True)
    assert got == want, loss
    assert cfg.remat_policy == "full" and cfg.scan_layers
  rl = {"policy": {"source": "tiny", "tokenizer": "", "dtype": "bfloat16"}, "rl": {}}
  (tmp_path / "config.json").write_text(json.dumps(rl))
  cfg, got = runs.load_config(tmp_path)
  assert got is None and cfg.dtype == "bfloat16"


def test_parse_arg():
  assert configs.parse_arg("tiny", configs.VARIANTS) == ("tiny", "")
  assert configs.parse_arg("smollm2,dpo_scaled", ("smollm2",), ("dpo", "dpo_scaled")) == (
      "smollm2", "dpo_scaled")
  assert configs.parse_arg("smollm2", ("smollm2",), ("dpo",), default_option="dpo") == (
      "smollm2", "dpo")
  with pytest.raises(ValueError, match="unknown variant 'huge'"):
    configs.parse_arg("huge", configs.VARIANTS)
  with pytest.raises(ValueError, match="unknown attribute 'verbosity'"):
    configs.parse_arg("tiny,verbosity", configs.VARIANTS, ("helpfulness",), what="attribute")
  with pytest.raises(ValueError, match="unknown option 'x'"):
    configs.parse_arg("tiny,x", configs.VARIANTS)

"""The files the RewardBench leaderboard reads, in the layout of `allenai/reward-bench-results`.

  OUT/eval-set/ORG/NAME.json         one object: per-subset accuracy (a key per subset), model,
                                     model_type, chat_template (+ ref_model for DPO models)
  OUT/eval-set-scores/ORG/NAME.json  one object of columns, a row per pair: id, subset, results
                                     (1 correct, 0 not), scores_chosen, scores_rejected; + model,
                                     model_type, chat_template

as the official scripts write them (reward-bench's scripts/run_rm.py, run_dpo.py and
run_generative.py through `rewardbench.utils.save_to_hub`: JSON, indent 4, sorted keys). The
leaderboard computes the sections from eval-set with the official weights (our
`rewardbench.section_scores`). As in our results.json, a pair that was not scored (longer than the
model's context, or unscorable by a judge) is in every denominator as wrong: result 0, scores null
(the official files have null scores for models that give none). Integer ids are written as
integers (the dataset's type). The rendered texts (text_chosen/text_rejected of run_rm.py) are
left out: no leaderboard code reads them, and they are the bulk of the file.

Names follow the official ones: ORG/NAME is the model's hub id; a reference-free DPO score gets
the suffix `_ref_free` (as run_dpo.py saves it). A local model is `local/<folder name>` unless a
name is given.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from huggingface_hub.utils import validate_repo_id

from helpsteer_jax.evaluation import implicit_rewards, rewardbench

REF_FREE = "DPO Ref. Free"
# Our scoring mode (results.json "mode"; "judge" for --judge) -> the official model_type
# (run_rm.py's sequence classifiers, run_dpo.py, run_generative.py).
MODEL_TYPES = {"reward_model": "Seq. Classifier", "dpo": "DPO", "judge": "Generative RM",
               **{f"reference_free_{k}": REF_FREE for k in implicit_rewards.REFERENCE_FREE}}
# Our rendering always uses the tokenizer's chat template: the official scripts' value for that.
CHAT_TEMPLATE = "tokenizer"


def model_type(mode: str) -> str:
  if mode not in MODEL_TYPES:
    raise ValueError(f"no leaderboard model_type for mode {mode!r}; known: {sorted(MODEL_TYPES)}")
  return MODEL_TYPES[mode]


def leaderboard_name(model: str, mode: str, name: Optional[str] = None) -> str:
  """ORG/NAME[_ref_free]: `name` if given, else the hub id `model`, else local/<folder name>."""
  if name is None:
    is_hub_id = model.count("/") == 1 and not os.path.exists(model)
    name = model if is_hub_id else f"local/{Path(model.rstrip('/')).name or 'model'}"
  try:
    validate_repo_id(name)
  except ValueError as e:
    raise ValueError(f"leaderboard name {name!r}: {e}") from e
  if name.count("/") != 1:
    raise ValueError(f"leaderboard name {name!r}: must be ORG/NAME")
  return name + ("_ref_free" if model_type(mode) == REF_FREE else "")


def _id(value: str) -> Any:
  return int(value) if value.isdigit() else value


def _score(x: float) -> Optional[float]:
  return None if np.isnan(x) else float(x)


def write(out_dir: str | Path, *, name: str, mode: str, ids: Sequence[str],
          subsets: Sequence[str], correct: np.ndarray, scores_chosen: np.ndarray,
          scores_rejected: np.ndarray, ref_model: Optional[str] = None) -> dict[str, str]:
  """Writes the two files for every pair (`scores_*` NaN where a pair was not scored); returns
  their paths {"eval_set", "eval_set_scores"}."""
  common = {"model": name, "model_type": model_type(mode), "chat_template": CHAT_TEMPLATE}
  per_subset = rewardbench.subset_accuracies(subsets, correct)
  eval_set = {**common, **{s: v["accuracy"] for s, v in per_subset.items()}}
  if common["model_type"] in ("DPO", REF_FREE):
    eval_set["ref_model"] = ref_model  # run_dpo.py's field (null when reference-free)
  scores = {**common, "id": [_id(i) for i in ids], "subset": list(subsets),
            "results": [int(c) for c in correct],
            "scores_chosen": [_score(x) for x in scores_chosen],
            "scores_rejected": [_score(x) for x in scores_rejected]}
  paths = {}
  for key, folder, data in (("eval_set", "eval-set", eval_set),
                            ("eval_set_scores", "eval-set-scores", scores)):
    path = Path(out_dir) / folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, sort_keys=True), encoding="utf-8")
    paths[key] = str(path)
  return paths

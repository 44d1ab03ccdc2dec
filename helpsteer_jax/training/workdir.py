"""A training run's workdir as a model source.

The run's `config.json` names the architecture (a preset or a checkpoint source, with the run's
dtype / remat / scan settings); its latest orbax checkpoint holds the trained parameters. So
`load_pretrained(WORKDIR)` — and every command built on it (score, export, evaluate, RLHF reward
models) — accepts a workdir wherever it accepts a Hugging Face directory or a GGUF file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.loading import Pretrained, storage_dtype_of
from helpsteer_jax.training import checkpoint, model_setup


def run_config(workdir: str | Path) -> ml_collections.ConfigDict:
  path = Path(workdir) / "config.json"
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read the run's config ({e})") from e


def _model_config(run: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  # Reward-model and DPO runs name their model `model`; RLHF runs (rlhf/train.py) `policy`.
  return run.model if "model" in run else run.policy


def _num_labels(params: dict[str, Any]) -> int | None:
  return int(np.shape(params["score"]["kernel"])[-1]) if "score" in params else None


def workdir_config(workdir: str | Path, **runtime) -> tuple[LlamaConfig, int | None]:
  """(config, reward-head width) of a run, without restoring its checkpoint."""
  run = run_config(workdir)
  model_cfg = _model_config(run)
  cfg, _ = model_setup.model_config(model_cfg, tokenizer=False)
  num_labels = model_cfg.get("num_labels")
  if str(run.get("loss", {}).get("name", "")).startswith("dpo"):
    num_labels = None  # a DPO run trains a causal LM
  return cfg.replace(**runtime), (int(num_labels) if num_labels else None)


def load_workdir(workdir: str | Path, *, storage_dtype: Any = None, tokenizer: bool = True,
                 **runtime) -> Pretrained:
  """Host parameters of the run's latest checkpoint, in the layout `runtime` asks for.

  The reward head is the trained one (all its outputs; a regression run keeps its five).
  `runtime` overrides the run's settings (e.g. scan_layers=False, dtype=the compute dtype); the
  layer layout is converted. Parameters come in `storage_dtype` (default the config's
  param_dtype, float32), never in the compute dtype.
  """
  run = run_config(workdir)
  cfg, tok = model_setup.model_config(_model_config(run), tokenizer=tokenizer)
  # A DPO run keeps {"policy", "ref"}: the trained model is the policy, and only it is read.
  dpo = "policy" in checkpoint.params_metadata(workdir)
  params = checkpoint.restore_params(workdir, subtree=("policy",) if dpo else ())
  trained_scan = cfg.scan_layers
  cfg = cfg.replace(**runtime)
  if cfg.scan_layers and not trained_scan:
    params = convert.stack_layers(params, cfg.num_hidden_layers)
  elif trained_scan and not cfg.scan_layers:
    params = convert.unstack_layers(params)
  storage = storage_dtype_of(cfg, storage_dtype)
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, storage), params)
  return Pretrained(cfg, params, tok, _num_labels(params))

"""The reward model named by a config: a random preset or a pretrained checkpoint plus a head."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import (PRESETS, LlamaForCausalLM, LlamaRewardModel, load_pretrained,
                                  load_tokenizer)
from helpsteer_jax.models.loading import load_config
from helpsteer_jax.models.config import LlamaConfig

_RUNTIME = ("dtype", "remat_policy", "scan_layers", "attention_impl", "low_precision_dots")


@dataclasses.dataclass
class BuiltModel:
  config: LlamaConfig
  model: LlamaRewardModel | LlamaForCausalLM
  tokenizer: Any
  # init_params(rng) -> boxed parameters with logical names (used for shapes and fresh inits).
  init_params: Callable[[jax.Array], Any]
  pretrained: dict[str, Any] | None  # host parameters to start from, if any


def _runtime(model_cfg) -> dict[str, Any]:
  return {k: model_cfg[k] for k in _RUNTIME if k in model_cfg}


def fresh_head(rng: np.random.Generator, hidden: int, num_labels: int) -> dict[str, Any]:
  """A new reward head, N(0, 0.02) as Hugging Face initialises `score`."""
  return {"kernel": rng.normal(0.0, 0.02, (hidden, num_labels)).astype(np.float32)}


def preset_config(model_cfg) -> tuple[LlamaConfig, Any]:
  """Config and tokenizer of a preset (random-init) model; the tokenizer fixes the vocabulary."""
  tok = load_tokenizer(model_cfg.tokenizer) if model_cfg.get("tokenizer") else None
  cfg = PRESETS[model_cfg.source]
  if tok is not None:
    cfg = cfg.replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
  return cfg.replace(**_runtime(model_cfg)), tok


def model_config(model_cfg, tokenizer: bool = True) -> tuple[LlamaConfig, Any]:
  """Config (with the run's runtime settings) and tokenizer of a config's model; no weights."""
  if model_cfg.source in PRESETS:
    return preset_config(model_cfg)
  cfg, _ = load_config(model_cfg.source, **_runtime(model_cfg))
  return cfg, (load_tokenizer(model_cfg.source) if tokenizer else None)


def start_model(model_cfg) -> tuple[LlamaConfig, Any, Any]:
  """(config, tokenizer, Pretrained or None for a random preset) of the model a config names.

  The run's runtime settings (compute dtype included) go into the config; the pretrained
  parameters stay in float32 (the config's param_dtype), the master weights of a bf16 run.
  """
  if model_cfg.source in PRESETS:
    return (*preset_config(model_cfg), None)
  pre = load_pretrained(model_cfg.source, **_runtime(model_cfg))
  return pre.config, pre.tokenizer, pre


def build_model(model_cfg, seed: int = 0) -> BuiltModel:
  """`model_cfg.source` is a preset name (random init) or a checkpoint source (smollm2, ...)."""
  num_labels = int(model_cfg.num_labels)
  cfg, tok, pre = start_model(model_cfg)
  pretrained = None
  if pre is not None:
    pretrained = {"model": pre.params["model"]}
    if pre.num_labels == num_labels:
      pretrained["score"] = pre.params["score"]
    else:
      pretrained["score"] = fresh_head(np.random.default_rng(seed), cfg.hidden_size, num_labels)
  model = LlamaRewardModel(cfg, num_labels=num_labels)
  ids = jnp.zeros((1, 8), jnp.int32)
  init_params = lambda rng: model.init(rng, ids)["params"]
  return BuiltModel(cfg, model, tok, init_params, pretrained)


def build_dpo_model(model_cfg, seed: int = 0) -> BuiltModel:
  """A causal LM as {"policy", "ref"}: two copies of the same start, the reference frozen."""
  del seed
  cfg, tok, pre = start_model(model_cfg)
  pretrained = None
  if pre is not None:
    params = pre.causal_lm_params()
    pretrained = {"policy": params, "ref": params}
  model = LlamaForCausalLM(cfg)
  ids = jnp.zeros((1, 8), jnp.int32)

  def init_params(rng):
    p = model.init(rng, ids)["params"]
    return {"policy": p, "ref": p}

  return BuiltModel(cfg, model, tok, init_params, pretrained)


def select_head_columns(params: dict[str, Any], columns: list[int]) -> dict[str, Any]:
  """Keeps output columns of the reward head (e.g. the helpfulness output of a regression RM)."""
  kernel = np.asarray(params["score"]["kernel"])
  return {**params, "score": {"kernel": kernel[:, columns]}}

"""The model a paradigm trains, shaped from a started model: a reward model or a DPO policy pair.

Where the start comes from (a random preset, a checkpoint, another run's workdir) is decided one
layer up, in helpsteer_jax.runs.start_model; here its parameters are arranged for the paradigm
(training/tasks.py): a reward head of the run's width, or {"policy", "ref"} for DPO.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import LlamaForCausalLM, LlamaRewardModel, Pretrained, lora
from helpsteer_jax.models.config import LlamaConfig


@dataclasses.dataclass
class BuiltModel:
  config: LlamaConfig
  model: LlamaRewardModel | LlamaForCausalLM
  tokenizer: Any
  # init_params(rng) -> boxed parameters with logical names (used for shapes and fresh inits).
  init_params: Callable[[jax.Array], Any]
  pretrained: dict[str, Any] | None  # host parameters to start from, if any


def fresh_head(rng: np.random.Generator, hidden: int, num_labels: int) -> dict[str, Any]:
  """A new reward head, N(0, 0.02) as Hugging Face initialises `score`."""
  return {"kernel": rng.normal(0.0, 0.02, (hidden, num_labels)).astype(np.float32)}


def reward_model(model_cfg: Any, cfg: LlamaConfig, tokenizer: Any, pre: Pretrained | None,
                 seed: int = 0) -> BuiltModel:
  """A reward model of `model_cfg.num_labels` outputs; a checkpoint's head is kept if as wide."""
  num_labels = int(model_cfg.num_labels)
  pretrained = None
  if pre is not None:
    pretrained = {"model": pre.params["model"]}
    if pre.num_labels == num_labels:
      pretrained["score"] = pre.params["score"]
    else:
      pretrained["score"] = fresh_head(np.random.default_rng(seed), cfg.hidden_size, num_labels)
    pretrained = lora.add_adapters(pretrained, cfg, _adapter_rng(seed))
  model = LlamaRewardModel(cfg, num_labels=num_labels)
  ids = jnp.zeros((1, 8), jnp.int32)
  init_params = lambda rng: model.init(rng, ids)["params"]
  return BuiltModel(cfg, model, tokenizer, init_params, pretrained)


def _adapter_rng(seed: int) -> np.random.Generator:
  """Where a run's fresh LoRA adapters come from (a stream apart from the head's)."""
  return np.random.default_rng([seed, 1])


def causal_lm(cfg: LlamaConfig, tokenizer: Any, pre: Pretrained | None,
              seed: int = 0) -> BuiltModel:
  """A causal LM (an RL policy), from the checkpoint's LM parameters or a fresh init; with
  `cfg.lora_rank`, a checkpoint gets fresh adapters (B = 0, so the model is the checkpoint's)."""
  model = LlamaForCausalLM(cfg)
  ids = jnp.zeros((1, 8), jnp.int32)
  init_params = lambda rng: model.init(rng, ids)["params"]
  pretrained = pre.causal_lm_params() if pre is not None else None
  if pretrained is not None:
    pretrained = lora.add_adapters(pretrained, cfg, _adapter_rng(seed))
  return BuiltModel(cfg, model, tokenizer, init_params, pretrained)


def dpo_model(model_cfg: Any, cfg: LlamaConfig, tokenizer: Any, pre: Pretrained | None,
              seed: int = 0) -> BuiltModel:
  """A causal LM as {"policy", "ref"}: two copies of the same start, the reference frozen; with
  LoRA {"policy"} alone."""
  del model_cfg
  lm = causal_lm(cfg, tokenizer, pre, seed)
  # With LoRA the reference is no copy: it is the policy with its adapters off (objectives.py).
  names = ("policy",) if cfg.lora_rank else ("policy", "ref")
  pretrained = None
  if lm.pretrained is not None:
    pretrained = {k: lm.pretrained for k in names}

  def init_params(rng):
    p = lm.init_params(rng)
    return {k: p for k in names}

  return BuiltModel(cfg, lm.model, tokenizer, init_params, pretrained)


def select_head_columns(params: dict[str, Any], columns: list[int]) -> dict[str, Any]:
  """Keeps output columns of the reward head (e.g. the helpfulness output of a regression RM)."""
  kernel = np.asarray(params["score"]["kernel"])
  return {**params, "score": {"kernel": kernel[:, columns]}}

"""DPO implicit rewards, as RewardBench computes them for causal LMs, from response log-probs.

A DPO-trained policy pi has no reward head; its reward is implicit in its log-probabilities of the
response tokens (prompt tokens never count). Per sequence the scorer keeps three statistics of
those log-probs (models/logprobs.py `response_stats`), from which every variant follows:

  sum   = sum_t log pi(x_t | x_<t)
  count = number of response tokens
  sumsq = sum_t (log pi(x_t | x_<t))^2

RewardBench's DPO rewards (allenai/reward-bench, rewardbench/dpo.py `get_batch_logps`):

  with a reference   r = beta * (sum_policy - sum_reference)   (beta > 0 does not change accuracy)
  --reference-free sum      r = sum
  --reference-free average  r = sum / count                    (official "avg")
  --reference-free norm     r = -sqrt(sumsq)                   (official "norm": minus the L2 norm
                                of the per-token log-probs, NOT their average; it is the
                                official default for reference-free models)
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models.llama import LlamaForCausalLM
from helpsteer_jax.models.logprobs import response_stats

REFERENCE_FREE = ("sum", "average", "norm")
_ALIASES = {"avg": "average", "mean": "average"}


def stats_fn(model: LlamaForCausalLM, reference_model: LlamaForCausalLM | None = None):
  """fn(params, ids, mask, starts) for `evaluation.scorer.Scorer`: [B, 3] stats of `model`; with a
  `reference_model`, params is {"policy": ..., "reference": ...} and the result [B, 6] is policy
  then reference stats (two forward passes, even when both are the same weights)."""

  def one(m, p, ids, mask, starts):
    return response_stats(m.apply({"params": p}, ids, mask), ids, mask, starts)

  if reference_model is None:
    return lambda p, ids, mask, starts: one(model, p, ids, mask, starts)

  def both(params, ids, mask, starts):
    return jnp.concatenate([one(model, params["policy"], ids, mask, starts),
                            one(reference_model, params["reference"], ids, mask, starts)], axis=-1)

  return both


def reference_free_kind(kind: str) -> str:
  kind = _ALIASES.get(kind, kind)
  if kind not in REFERENCE_FREE:
    raise ValueError(f"unknown reference-free reward {kind!r}; use one of {REFERENCE_FREE}")
  return kind


def reference_free_reward(stats: np.ndarray, kind: str) -> np.ndarray:
  """Rewards from [N, >=3] (sum, count, sumsq) statistics."""
  kind = reference_free_kind(kind)
  s = np.asarray(stats, np.float64)
  if kind == "sum":
    return s[:, 0]
  if kind == "average":
    return s[:, 0] / np.maximum(s[:, 1], 1.0)
  return -np.sqrt(s[:, 2])


def dpo_reward(stats: np.ndarray, beta: float = 1.0) -> np.ndarray:
  """beta * (sum log pi - sum log pi_ref) from [N, 6] (policy stats, reference stats)."""
  s = np.asarray(stats, np.float64)
  return beta * (s[:, 0] - s[:, 3])


def check_same_vocab(policy_cfg: Any, reference_cfg: Any) -> None:
  if policy_cfg.vocab_size != reference_cfg.vocab_size:
    raise ValueError(f"policy vocab {policy_cfg.vocab_size} != reference vocab "
                     f"{reference_cfg.vocab_size}: DPO rewards need one tokenizer")

"""Response log-probabilities of a causal LM, and the DPO rewards RewardBench builds from them.

For a sequence x_0..x_{T-1} whose response starts at token `start` (the prompt/response boundary
from `data.encoding.ChatEncoder`), the response log-probs are log pi(x_t | x_<t) for
start <= t < T: log_softmax of the float32 logits, evaluated at x_t; prompt tokens never count.
Per sequence we keep three statistics, from which every reward variant follows:

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

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import LlamaForCausalLM

REFERENCE_FREE = ("sum", "average", "norm")
_ALIASES = {"avg": "average", "mean": "average"}


def response_stats(logits_btv: jax.Array, ids_bt: jax.Array, mask_bt: jax.Array,
                   starts_b: jax.Array) -> jax.Array:
  """[B, 3] float32 (sum, count, sumsq) of response-token log-probs; see the module docstring."""
  logits = logits_btv[:, :-1].astype(jnp.float32)
  # log_softmax read at the target token only: logit[target] - logsumexp(logits), so no second
  # [B, T, V] array is materialised.
  target = jnp.take_along_axis(logits, ids_bt[:, 1:, None], axis=-1)[..., 0]  # [B, T-1]: token t+1
  tok = target - jax.nn.logsumexp(logits, axis=-1)
  pos = jnp.arange(1, ids_bt.shape[1])[None, :]
  keep = (pos >= starts_b[:, None]) & (mask_bt[:, 1:] > 0)
  tok = jnp.where(keep, tok, 0.0)
  return jnp.stack([tok.sum(-1), keep.sum(-1).astype(jnp.float32), (tok * tok).sum(-1)], axis=-1)


def stats_fn(model: LlamaForCausalLM, reference_model: LlamaForCausalLM | None = None):
  """fn(params, ids, mask, starts) for `score.Scorer`: [B, 3] stats of `model`; with a
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

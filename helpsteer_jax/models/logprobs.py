"""Token log-probabilities of a causal LM: what it assigns to the tokens it is given.

For a sequence x_0..x_{T-1} the model's logits at position t-1 predict x_t, so

  log pi(x_t | x_<t) = logits[t-1, x_t] - logsumexp(logits[t-1, :])      for 1 <= t < T,

read at the target token only: no second [B, T, V] array (a full log_softmax) is materialised.
The logits are float32 (`LlamaForCausalLM` returns them so). Everything that needs log-probs of
given tokens uses these functions: the DPO objective (training/objectives.py), the implicit
rewards RewardBench computes for DPO models (evaluation/implicit_rewards.py) and the RL tests of
the sampler. They live in models/ because training, rlhf and evaluation all build on them and
none of those may import another one's modules for it (ARCHITECTURE.md).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from helpsteer_jax.models.llama import LlamaForCausalLM


def next_token_logprobs(logits_btv: jax.Array, ids_bt: jax.Array) -> jax.Array:
  """log pi(ids[:, t] | ids[:, :t]) for t >= 1 from the logits of the same sequences: [B, T-1]."""
  logits = logits_btv[:, :-1].astype(jnp.float32)
  target = jnp.take_along_axis(logits, ids_bt[:, 1:, None], axis=-1)[..., 0]
  return target - jax.nn.logsumexp(logits, axis=-1)


def token_logprobs(model: LlamaForCausalLM, params: Any, input_ids: jax.Array,
                   attention_mask: jax.Array) -> jax.Array:
  """log p(input_ids[:, t] | input_ids[:, :t]) for t >= 1: float32 [B, T - 1] (full forward)."""
  return next_token_logprobs(model.apply({"params": params}, input_ids, attention_mask),
                             input_ids)


def response_logprobs(model: LlamaForCausalLM, params: Any, input_ids: jax.Array,
                      attention_mask: jax.Array, response_mask: jax.Array) -> jax.Array:
  """Σ log p(response tokens | prompt, earlier tokens): [B]; `response_mask` [B, T] marks them."""
  logp = token_logprobs(model, params, input_ids, attention_mask)
  return jnp.sum(jnp.where(response_mask[:, 1:] != 0, logp, 0.0), axis=-1)


def response_stats(logits_btv: jax.Array, ids_bt: jax.Array, mask_bt: jax.Array,
                   starts_b: jax.Array) -> jax.Array:
  """[B, 3] float32 (sum, count, sumsq) of the response tokens' log-probs.

  The response of row b is its real tokens from position `starts_b[b]` on (the prompt/response
  boundary of `data.encoding.ChatEncoder`); prompt tokens never count. sum = Σ_t log pi,
  count = number of response tokens, sumsq = Σ_t (log pi)^2: every RewardBench DPO reward follows
  from these three (evaluation/implicit_rewards.py).
  """
  tok = next_token_logprobs(logits_btv, ids_bt)
  pos = jnp.arange(1, ids_bt.shape[1])[None, :]
  keep = (pos >= starts_b[:, None]) & (mask_bt[:, 1:] > 0)
  tok = jnp.where(keep, tok, 0.0)
  return jnp.stack([tok.sum(-1), keep.sum(-1).astype(jnp.float32), (tok * tok).sum(-1)], axis=-1)

"""Batched sampling from our Llama with a key-value cache, in one jit.

  out = generate(params, cfg, prompt_ids, prompt_mask, rng, max_new_tokens=64, temperature=1.0,
                 top_p=1.0, top_k=0, eos_ids=(2,), pad_id=2)

Prompts are left-padded ([B, P], mask 1 on real tokens), so every row's next token goes into the
same cache slot; positions come from the mask (models/llama.py), so a padded row gets the numbers
it would get alone. One prefill forward fills slots [0, P); then a `lax.while_loop` samples one
token per step and feeds it at slot P + i, stopping when every row has emitted an EOS or after
`max_new_tokens`.

Returned per new token: the token (pad after EOS), its log-probability under the distribution it
was sampled from, log q(y_t | ...) with q = softmax(sampling_logits(logits)), and a response mask
(1 up to and including the EOS, 0 after). `sampling_logits` is the one implementation of the
transformation (divide by the temperature, then keep the top-k and the top-p nucleus); the sampler
and `sampling_logprobs` (the RLHF trainer's log-probs of the same tokens, with gradients) both go
through it, so the policy gradient is the score function of the distribution that really sampled.
Temperature 0 is greedy decoding and leaves the logits as they are (the reported log-probs are
then the model's own, log softmax(logits)); top-k (0: off) and top-p (1.0: off) filter the
tempered distribution.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.llama import LlamaForCausalLM
from helpsteer_jax.models.logprobs import next_token_logprobs

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  max_new_tokens: int = 64
  temperature: float = 1.0  # 0: greedy
  top_p: float = 1.0  # nucleus sampling; 1.0 keeps every token
  top_k: int = 0  # 0 keeps every token
  eos_ids: tuple[int, ...] = (2,)
  pad_id: int = 0


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Generation:
  tokens: Array  # int32 [B, N]: sampled tokens, pad_id after the EOS
  logprobs: Array  # float32 [B, N]: log q(token) under the sampling distribution; 0 where masked
  response_mask: Array  # int32 [B, N]: 1 up to and including the EOS
  steps: Array  # int32 scalar: decoding steps run (< N when every row stopped early)


def decode_config(cfg: LlamaConfig) -> LlamaConfig:
  """The config to decode with: unrolled layers (the cache lives per layer) and no remat."""
  return cfg.replace(scan_layers=False, remat_policy="none")


def decode_params(params: Any, cfg: LlamaConfig) -> Any:
  """Parameters in the unrolled-layer layout that `decode_config(cfg)` expects."""
  return convert.unstack_layers(params) if cfg.scan_layers else params


def eos_ids_of(eos: int | Sequence[int] | None) -> tuple[int, ...]:
  if eos is None:
    return ()
  return (int(eos),) if isinstance(eos, (int, np.integer)) else tuple(int(e) for e in eos)


def filter_logits(logits: Array, *, top_k: int, top_p: float) -> Array:
  """Sets logits outside the top-k and outside the top-p nucleus to a huge negative number.

  Works on any [..., V]. The best token always stays; a token tied with the last one kept stays
  too. Which tokens are kept is a step function of the logits, so it carries no gradient: the
  kept logits carry it.
  """
  neg = jnp.finfo(logits.dtype).min
  decide = jax.lax.stop_gradient(logits)
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(decide, top_k)[0][..., -1:]
    decide = jnp.where(decide < kth, neg, decide)
  if top_p < 1.0:
    sorted_desc = jnp.flip(jnp.sort(decide, axis=-1), axis=-1)
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    # Keep a token if the probability mass strictly before it is below top_p.
    keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    cutoff = jnp.min(jnp.where(keep_sorted, sorted_desc, jnp.inf), axis=-1, keepdims=True)
    decide = jnp.where(decide < cutoff, neg, decide)
  return jnp.where(decide > neg, logits, neg)


def sampling_logits(logits: Array, sc: SamplingConfig) -> Array:
  """The logits of the distribution `generate` samples from: float32 logits / temperature, then
  filtered by top-k and top-p. Temperature 0 (greedy) leaves them unchanged. [..., V] -> same."""
  logits = logits.astype(jnp.float32)
  if sc.temperature == 0:
    return logits
  return filter_logits(logits / sc.temperature, top_k=sc.top_k, top_p=sc.top_p)


def sample_token(rng: Array, logits_bv: Array, sc: SamplingConfig) -> tuple[Array, Array]:
  """(token [B], its log-probability under the sampling distribution [B]) from logits [B, V]."""
  logits = sampling_logits(logits_bv, sc)
  if sc.temperature == 0:
    tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  else:
    tok = jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tok[:, None], axis=-1)[:, 0]
  return tok, logp


def sampling_logprobs(model: LlamaForCausalLM, params: Any, input_ids: Array,
                      attention_mask: Array, sc: SamplingConfig, tail: int = 0) -> Array:
  """log q(input_ids[:, t] | input_ids[:, :t]) for t >= 1 under the sampling distribution of `sc`:
  float32 [B, T - 1], differentiable in `params` (one full forward).

  For the tokens `generate` sampled these equal its `logprobs` (up to the cached vs full forward
  summation order); they are what REINFORCE's score function needs. `tail` > 0: only the last
  `tail` tokens' log-probs are computed (the vocabulary logits of those positions only); the
  others are 0. A rollout's response is its last max_new_tokens tokens (prompts left-padded), so
  RLHF passes tail = max_new_tokens.
  """
  if not tail:
    logits = model.apply({"params": params}, input_ids, attention_mask)
    return next_token_logprobs(sampling_logits(logits, sc), input_ids)
  logits = model.apply({"params": params}, input_ids, attention_mask, last=tail + 1)
  logp = next_token_logprobs(sampling_logits(logits, sc), input_ids[:, -(tail + 1):])
  return jnp.pad(logp, ((0, 0), (input_ids.shape[1] - 1 - tail, 0)))


def _generate(params: Any, prompt_ids: Array, prompt_mask: Array, rng: Array, eos: Array, *,
              cfg: LlamaConfig, sc: SamplingConfig) -> Generation:
  model = LlamaForCausalLM(cfg)
  b, p = prompt_ids.shape
  n = sc.max_new_tokens
  mask = jnp.concatenate([prompt_mask.astype(jnp.int32), jnp.zeros((b, n), jnp.int32)], axis=1)
  logits, variables = model.apply({"params": params}, prompt_ids, mask, jnp.int32(0),
                                  mutable=["cache"])

  def cond(carry):
    i, _, _, _, done, *_ = carry
    return (i < n) & ~jnp.all(done)

  def body(carry):
    i, cache, last_logits, mask, done, tokens, logps, resp, rng = carry
    rng, key = jax.random.split(rng)
    tok, logp = sample_token(key, last_logits, sc)
    live = ~done
    tok = jnp.where(live, tok, sc.pad_id)
    tokens = tokens.at[:, i].set(tok)
    logps = logps.at[:, i].set(jnp.where(live, logp, 0.0))
    resp = resp.at[:, i].set(live.astype(jnp.int32))
    done = done | jnp.any(tok[:, None] == eos[None, :], axis=-1)
    mask = jax.lax.dynamic_update_slice(mask, live.astype(jnp.int32)[:, None], (0, p + i))
    out, new_vars = model.apply({"params": params, "cache": cache}, tok[:, None], mask, p + i,
                                mutable=["cache"])
    return (i + 1, new_vars["cache"], out[:, 0], mask, done, tokens, logps, resp, rng)

  init = (jnp.int32(0), variables["cache"], logits[:, -1], mask, jnp.zeros((b,), bool),
          jnp.full((b, n), sc.pad_id, jnp.int32), jnp.zeros((b, n), jnp.float32),
          jnp.zeros((b, n), jnp.int32), rng)
  i, _, _, _, _, tokens, logps, resp, _ = jax.lax.while_loop(cond, body, init)
  return Generation(tokens, logps, resp, i)


def generate(params: Any, cfg: LlamaConfig, prompt_ids: Array, prompt_mask: Array, rng: Array,
             sc: SamplingConfig) -> Generation:
  """Samples up to `sc.max_new_tokens` tokens after each left-padded prompt (see module doc)."""
  if sc.max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {sc.max_new_tokens}")
  if not 0.0 < sc.top_p <= 1.0 or sc.top_k < 0 or sc.temperature < 0:
    raise ValueError(f"bad sampling settings {sc}")
  prompt_mask = jnp.asarray(prompt_mask)
  if prompt_mask.shape[1] and not bool(jnp.all(prompt_mask[:, -1] == 1)):
    raise ValueError("prompts must be left-padded: the last column must be a real token")
  # The EOS ids are an argument, not part of the compiled program (-1 never matches a token).
  eos = jnp.asarray(sc.eos_ids or (-1,), jnp.int32)
  sc = dataclasses.replace(sc, eos_ids=())
  fn = _compiled(repr(decode_config(cfg)), repr(sc), decode_config(cfg), sc)
  return fn(decode_params(params, cfg), jnp.asarray(prompt_ids, jnp.int32), prompt_mask, rng, eos)


_JITTED: dict[tuple[str, str], Any] = {}


def _compiled(cfg_key: str, sc_key: str, cfg: LlamaConfig, sc: SamplingConfig):
  # Keyed by repr: a config holding a dict (Llama-3 rope_scaling) is not hashable, so it cannot
  # be a static jit argument.
  key = (cfg_key, sc_key)
  if key not in _JITTED:
    _JITTED[key] = jax.jit(functools.partial(_generate, cfg=cfg, sc=sc))
  return _JITTED[key]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int,
             multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded ids and mask [B, P], P rounded up to `multiple` (fewer shapes to compile)."""
  p = max(len(s) for s in seqs)
  p = -(-p // multiple) * multiple
  ids = np.full((len(seqs), p), pad_id, np.int32)
  mask = np.zeros((len(seqs), p), np.int32)
  for r, s in enumerate(seqs):
    if len(s):
      ids[r, p - len(s):] = s
      mask[r, p - len(s):] = 1
  return ids, mask


"""The KV-cache sampler against full forwards on a tiny random Llama.

Tolerance: cached log-probs equal full-forward log-probs within 1e-5 absolute (float32; the two
paths differ only in summation order over masked key slots, measured ~5e-7; the same bound holds
after dividing the logits by a temperature of 0.7).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaForCausalLM
from helpsteer_jax.models.logprobs import token_logprobs
from helpsteer_jax.rlhf.generate import (SamplingConfig, filter_logits, generate, left_pad,
                                         sampling_logprobs)

CFG = PRESETS["tiny"]
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]


@pytest.fixture(scope="module")
def params():
  model = LlamaForCausalLM(CFG)
  return nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))["params"]


def _greedy_full_forward(params, ids, mask, n):
  """Greedy decoding with no cache: the whole sequence through the model at every step.

  The sequence lives in a [B, P + n] buffer whose future slots are masked out (they come after
  every real token, so they change nothing), which keeps one compiled shape.
  """
  apply = jax.jit(LlamaForCausalLM(CFG).apply)
  p = ids.shape[1]
  ids = np.concatenate([ids, np.zeros((len(ids), n), ids.dtype)], 1)
  mask = np.concatenate([mask, np.zeros((len(mask), n), mask.dtype)], 1)
  for i in range(n):
    logits = apply({"params": params}, ids, mask)[:, p + i - 1]
    ids[:, p + i] = np.asarray(jnp.argmax(logits, -1))
    mask[:, p + i] = 1
  return ids[:, p:], ids, mask


def test_greedy_cached_equals_full_forward_and_logprobs_match(params):
  ids, mask = left_pad(PROMPTS, 0)
  n = 10
  out = generate(params, CFG, ids, mask, jax.random.key(1),
                 SamplingConfig(max_new_tokens=n, temperature=0.0, eos_ids=(), pad_id=0))
  ref_tokens, full_ids, full_mask = _greedy_full_forward(params, ids, mask, n)
  np.testing.assert_array_equal(np.asarray(out.tokens), ref_tokens)
  assert np.asarray(out.response_mask).all() and int(out.steps) == n
  full = token_logprobs(LlamaForCausalLM(CFG), params, jnp.asarray(full_ids),
                        jnp.asarray(full_mask))[:, ids.shape[1] - 1:]
  np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(full), atol=1e-5, rtol=0)


def test_left_padding_does_not_change_a_prompt(params):
  """A prompt alone and the same prompt left-padded in a batch generate the same tokens."""
  sc = SamplingConfig(max_new_tokens=6, temperature=0.0, eos_ids=(), pad_id=0)
  ids, mask = left_pad(PROMPTS, 0)
  batched = np.asarray(generate(params, CFG, ids, mask, jax.random.key(0), sc).tokens)
  ids1, mask1 = left_pad(PROMPTS[1:2], 0)
  alone = np.asarray(generate(params, CFG, ids1, mask1, jax.random.key(0), sc).tokens)
  np.testing.assert_array_equal(batched[1], alone[0])


def test_stops_at_eos_and_masks_after_it(params):
  ids, mask = left_pad(PROMPTS, 0)
  greedy = np.asarray(generate(params, CFG, ids, mask, jax.random.key(1), SamplingConfig(
      max_new_tokens=10, temperature=0.0, eos_ids=(), pad_id=0)).tokens)
  eos = int(greedy[0, 3])  # row 0 emits this token at step 3: make it the EOS
  out = generate(params, CFG, ids, mask, jax.random.key(1), SamplingConfig(
      max_new_tokens=10, temperature=0.0, eos_ids=(eos,), pad_id=0))
  tokens, resp, logp = (np.asarray(out.tokens), np.asarray(out.response_mask),
                        np.asarray(out.logprobs))
  first = int(np.argmax(greedy[0] == eos))
  np.testing.assert_array_equal(tokens[0, :first + 1], greedy[0, :first + 1])
  assert resp[0, :first + 1].all() and not resp[0, first + 1:].any()  # the EOS itself counts
  assert (tokens[0, first + 1:] == 0).all() and (logp[0, first + 1:] == 0).all()
  for r in range(3):  # rows never emitting the EOS run to max_new_tokens
    if eos not in greedy[r]:
      assert resp[r].all()


def test_sampling_is_seeded_and_filters_respected(params):
  ids, mask = left_pad(PROMPTS, 0)
  sc = SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=3, eos_ids=(), pad_id=0)
  a = np.asarray(generate(params, CFG, ids, mask, jax.random.key(3), sc).tokens)
  b = np.asarray(generate(params, CFG, ids, mask, jax.random.key(3), sc).tokens)
  np.testing.assert_array_equal(a, b)
  logits = jnp.asarray([[0.0, 1.0, 2.0, 3.0, 4.0]])
  kept = np.isfinite(np.asarray(filter_logits(logits, top_k=2, top_p=1.0))) & (
      np.asarray(filter_logits(logits, top_k=2, top_p=1.0)) > -1e30)
  np.testing.assert_array_equal(kept[0], [False, False, False, True, True])
  # softmax([..., 3, 4]): p(4) ~ 0.64 < 0.7, so the nucleus is {4, 3}
  nucleus = np.asarray(filter_logits(logits, top_k=0, top_p=0.7)) > -1e30
  np.testing.assert_array_equal(nucleus[0], [False, False, False, True, True])


def _reference_sampling_logprobs(logits: np.ndarray, temperature: float, top_k: int,
                                 top_p: float) -> np.ndarray:
  """log q written out in numpy, independent of generate.py: softmax(logits / T) restricted to the
  top-k, then to the smallest prefix (by probability) whose mass before each token is < top_p,
  renormalised; -inf outside. logits [..., V] (float64)."""
  z = logits / temperature
  order = np.argsort(-z, axis=-1, kind="stable")
  ranks = np.argsort(order, axis=-1, kind="stable")
  z = np.where(ranks < top_k, z, -np.inf)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  p_sorted = np.take_along_axis(p, order, -1)
  keep_sorted = np.cumsum(p_sorted, -1) - p_sorted < top_p
  keep = np.take_along_axis(keep_sorted, ranks, -1)
  z = np.where(keep, z, -np.inf)
  return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(
      -1, keepdims=True)


def test_sampled_logprobs_are_those_of_the_sampling_distribution(params):
  """With temperature 0.7, top-k and top-p, every sampled token lies in the kept set, the sampler
  reports log q of it under the tempered, filtered distribution (not the model's own log π),
  and the trainer's `sampling_logprobs` of the same tokens equals it."""
  # Sharpen the random model (its logits are nearly uniform) so the nucleus is a real cut.
  sharp = jax.tree_util.tree_map(lambda x: x, params)
  sharp["lm_head"] = {"kernel": params["lm_head"]["kernel"] * 8.0}
  sc = SamplingConfig(max_new_tokens=12, temperature=0.7, top_k=20, top_p=0.8, eos_ids=(),
                      pad_id=0)
  ids, mask = left_pad(PROMPTS, 0)
  out = generate(sharp, CFG, ids, mask, jax.random.key(5), sc)
  tokens, logp = np.asarray(out.tokens), np.asarray(out.logprobs)
  assert np.asarray(out.response_mask).all()
  full_ids = np.concatenate([ids, tokens], 1)
  full_mask = np.concatenate([mask, np.asarray(out.response_mask)], 1)
  p = ids.shape[1]
  model = LlamaForCausalLM(CFG)
  logits = np.asarray(jax.jit(model.apply)({"params": sharp}, full_ids, full_mask), np.float64)
  ref = _reference_sampling_logprobs(logits[:, p - 1:-1], 0.7, 20, 0.8)
  want = np.take_along_axis(ref, tokens[..., None], -1)[..., 0]
  assert np.isfinite(want).all()  # nothing sampled outside the top-k / nucleus
  kept = np.isfinite(ref).sum(-1)
  nucleus_alone = np.isfinite(_reference_sampling_logprobs(logits[:, p - 1:-1], 0.7,
                                                           CFG.vocab_size, 0.8)).sum(-1)
  assert (nucleus_alone > 20).any() and (kept < 20).any()  # both the top-k and the nucleus cut
  np.testing.assert_allclose(logp, want, atol=1e-5, rtol=0)
  trained = np.asarray(sampling_logprobs(model, sharp, jnp.asarray(full_ids),
                                         jnp.asarray(full_mask), sc))[:, p - 1:]
  np.testing.assert_allclose(trained, logp, atol=1e-5, rtol=0)
  # The untempered log π is far from it: what the trainer used before.
  untempered = np.asarray(token_logprobs(model, sharp, jnp.asarray(full_ids),
                                         jnp.asarray(full_mask)))[:, p - 1:]
  assert np.abs(untempered - logp).max() > 0.1


def test_filter_logits_on_batched_time_axes_matches_rows():
  """[B, T, V] logits (the trainer's) are filtered exactly as each [V] row alone (the sampler's)."""
  logits = jax.random.normal(jax.random.key(0), (2, 3, 50)) * 3.0
  batched = np.asarray(filter_logits(logits, top_k=10, top_p=0.7))
  for b in range(2):
    rows = np.asarray(filter_logits(logits[b], top_k=10, top_p=0.7))
    np.testing.assert_array_equal(batched[b], rows)


def test_tail_logprobs_are_the_full_forwards_on_the_response_and_zero_before(params):
  """sampling_logprobs(..., tail=N) (RLHF: vocabulary logits of the response positions only)
  gives the full computation's log-probs for the last N tokens and 0 for the others, and its
  gradient on the response tokens is the full one's."""
  sc = SamplingConfig(max_new_tokens=5, temperature=0.7, top_k=0, top_p=1.0, eos_ids=(),
                      pad_id=0)
  ids, mask = left_pad(PROMPTS, 0)
  out = generate(params, CFG, ids, mask, jax.random.key(1), sc)
  full_ids = jnp.asarray(np.concatenate([ids, np.asarray(out.tokens)], 1))
  full_mask = jnp.asarray(np.concatenate([mask, np.asarray(out.response_mask)], 1))
  model = LlamaForCausalLM(CFG)
  # jitted: one program each instead of hundreds of op-by-op ones
  logprobs = lambda t: jax.jit(lambda p: sampling_logprobs(model, p, full_ids, full_mask, sc,
                                                           tail=t))
  full = np.asarray(logprobs(0)(params))
  tail = np.asarray(logprobs(5)(params))
  assert tail.shape == full.shape
  np.testing.assert_allclose(tail[:, -5:], full[:, -5:], atol=1e-6, rtol=0)
  assert not tail[:, :-5].any()
  resp = jnp.zeros(full.shape).at[:, -5:].set(1.0)
  grad = lambda t: jax.jit(jax.grad(lambda p: jnp.sum(logprobs(t)(p) * resp)))(params)
  for a, b in zip(jax.tree_util.tree_leaves(grad(5)), jax.tree_util.tree_leaves(grad(0))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)

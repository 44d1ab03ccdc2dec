"""The KV-cache sampler against full forwards on a tiny random Llama.

Tolerance: cached log-probs equal full-forward log-probs within 1e-5 absolute (float32; the two
paths differ only in summation order over masked key slots, measured ~5e-7).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaForCausalLM
from helpsteer_jax.rlhf.generate import (SamplingConfig, filter_logits, generate, left_pad,
                                         token_logprobs)

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

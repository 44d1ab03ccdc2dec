"""models.llama.grouped_attention equals jax.nn.dot_product_attention's XLA path."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax.models.llama import (attention_mask_4d, grouped_attention, segment_mask_4d)


def _qkv(dtype, b=3, t=10, h=6, kv=2, d=8):
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  q = jax.random.normal(keys[0], (b, t, h, d), dtype)
  k = jax.random.normal(keys[1], (b, t, kv, d), dtype)
  v = jax.random.normal(keys[2], (b, t, kv, d), dtype)
  return q, k, v


def _masks(b=3, t=10):
  right = jnp.asarray([[1] * t, [1] * 6 + [0] * 4, [0] * 3 + [1] * 7], jnp.int32)[:b]
  segments = jnp.asarray([[1] * 4 + [2] * 5 + [0], [1] * t, [1, 1, 2, 2, 2, 3, 3, 3, 3, 0]])[:b]
  return {"padded": attention_mask_4d(right), "packed": segment_mask_4d(segments)}


@pytest.mark.parametrize("vjp", ["recompute", "autodiff"])
@pytest.mark.parametrize("mask_name", ["padded", "packed"])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_forward_and_gradients_match_xla(mask_name, dtype, tol, vjp):
  q, k, v = _qkv(dtype)
  mask = _masks()[mask_name]
  ref = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.35,
                                                     implementation="xla")
  ours = lambda q, k, v: grouped_attention(q, k, v, mask, 0.35, vjp)
  # tol: float32 results agree to rounding (1e-6); bf16 outputs carry 8 significant bits, so
  # the two orders of the same bf16 sums differ by up to a few bf16 steps of values ~1 (1e-2).
  _compare(ours, ref, q, k, v, dtype, tol)


def _compare(ours, ref, q, k, v, dtype, tol):
  """Outputs within tol and gradients within 10 x tol, both sides jitted (one compiled program
  each instead of an eager dispatch per operation)."""
  np.testing.assert_allclose(np.asarray(jax.jit(ours)(q, k, v), np.float32),
                             np.asarray(jax.jit(ref)(q, k, v), np.float32), atol=tol, rtol=tol)
  cot = jax.random.normal(jax.random.PRNGKey(5), q.shape, dtype)
  loss = lambda f: lambda *a: jnp.sum((f(*a) * cot).astype(jnp.float32))
  grad = lambda f: jax.jit(jax.grad(loss(f), (0, 1, 2)))
  # Gradients sum over queries and group heads: 10x the output tolerance.
  for ga, gb in zip(grad(ours)(q, k, v), grad(ref)(q, k, v)):
    np.testing.assert_allclose(np.asarray(ga, np.float32), np.asarray(gb, np.float32),
                               atol=10 * tol, rtol=10 * tol)


@pytest.mark.parametrize("block", [0, 4])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_backward_keeps_no_score_sized_tensor(dtype, block):
  """The VJP's residuals (the leaves of the function jax.vjp returns) hold nothing of the
  [B, heads, T, S] score size: the probabilities are recomputed from q, k and the softmax's row
  statistics. Autodiff kept two such float32 tensors per layer."""
  b, t, h, kv, d = 3, 16, 6, 2, 4  # a score tensor (b*h*t*t = 4608) outsizes q, k, v (<= 1152)
  q, k, v = _qkv(dtype, b=b, t=t, h=h, kv=kv, d=d)
  mask = attention_mask_4d(jnp.ones((b, t), jnp.int32))
  _, vjp = jax.vjp(lambda q, k, v: grouped_attention(q, k, v, mask, 0.5, causal_block=block),
                   q, k, v)
  sizes = [x.size for x in jax.tree_util.tree_leaves(vjp)
           if jnp.issubdtype(x.dtype, jnp.floating)]
  assert sizes and max(sizes) < b * h * t * t, sizes
  # Query blocks save the same tensors as one block, not a slice of k and v per block.
  _, whole = jax.vjp(lambda q, k, v: grouped_attention(q, k, v, mask, 0.5), q, k, v)
  assert sum(x.size for x in jax.tree_util.tree_leaves(vjp)) == sum(
      x.size for x in jax.tree_util.tree_leaves(whole))


@pytest.mark.parametrize("mask_name", ["padded", "packed"])
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
def test_causal_blocks_match_xla(mask_name, dtype, tol):
  """Query blocks of 3 over 10 tokens (blocks 3, 3, 3, 1), each against the keys up to its end:
  the same outputs and gradients as the whole score matrix, with the tolerances above."""
  q, k, v = _qkv(dtype)
  mask = _masks()[mask_name]
  ref = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.35,
                                                     implementation="xla")
  ours = lambda q, k, v: grouped_attention(q, k, v, mask, 0.35, causal_block=3)
  _compare(ours, ref, q, k, v, dtype, tol)


def test_causal_blocks_skip_the_scores_above_the_diagonal():
  """Compiled FLOPs at 64 tokens in blocks of 16: the score and probability dots cover 10 of
  the 16 blocks of 16 x 16 (1 + 2 + 3 + 4), so the program does fewer FLOPs than one block."""
  q, k, v = _qkv(jnp.float32, b=2, t=64, h=4, kv=2, d=16)
  mask = attention_mask_4d(jnp.ones((2, 64), jnp.int32))
  flops = {}
  for block in (0, 16):
    fn = jax.jit(lambda q, k, v, block=block: grouped_attention(q, k, v, mask, 0.25,
                                                                causal_block=block))
    flops[block] = fn.lower(q, k, v).compile().cost_analysis()["flops"]
  # dots: 2 x (2 * b * h * T * S * d) = 2 * 2 * 2 * 4 * 64 * 64 * 16 = 2.1 MFLOP in one block
  assert flops[16] < 0.75 * flops[0], flops


def test_causal_blocks_refuse_a_mask_that_sees_later_keys():
  """Blocks would drop the keys after each block's end: such a mask gives NaN, not a wrong
  number. The same mask without blocks is computed as given."""
  q, k, v = _qkv(jnp.float32)
  mask = jnp.ones((3, 1, 10, 10), bool)  # bidirectional
  assert np.isnan(np.asarray(grouped_attention(q, k, v, mask, 0.35, causal_block=3))).all()
  assert np.isfinite(np.asarray(grouped_attention(q, k, v, mask, 0.35))).all()


@pytest.mark.parametrize("block", [0, 3])
def test_fewer_queries_than_keys_see_every_key(block):
  """Cached decoding's shape: 4 new queries at slots 6..9 over 10 cached keys. Every query sees
  all its keys (no query blocks apply when T != S); outputs and gradients as XLA's."""
  q = _qkv(jnp.float32, t=4)[0]
  _, k, v = _qkv(jnp.float32)
  rows = jnp.asarray([[1] * 10, [1] * 6 + [0] * 4, [0] * 3 + [1] * 7], jnp.int32)
  mask = attention_mask_4d(rows)[:, :, 6:]  # the last 4 query rows of the full mask
  ref = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.35,
                                                     implementation="xla")
  ours = lambda q, k, v: grouped_attention(q, k, v, mask, 0.35, causal_block=block)
  _compare(ours, ref, q, k, v, jnp.float32, 1e-6)

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
  np.testing.assert_allclose(np.asarray(ours(q, k, v), np.float32),
                             np.asarray(ref(q, k, v), np.float32), atol=tol, rtol=tol)
  cot = jax.random.normal(jax.random.PRNGKey(5), q.shape, dtype)
  loss = lambda f: lambda *a: jnp.sum((f(*a) * cot).astype(jnp.float32))
  # Gradients sum over queries and group heads: 10x the output tolerance.
  for ga, gb in zip(jax.grad(loss(ours), (0, 1, 2))(q, k, v), jax.grad(loss(ref), (0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(np.asarray(ga, np.float32), np.asarray(gb, np.float32),
                               atol=10 * tol, rtol=10 * tol)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_backward_keeps_no_score_sized_tensor(dtype):
  """The VJP's residuals (the leaves of the function jax.vjp returns) hold nothing of the
  [B, heads, T, S] score size: the probabilities are recomputed from q, k and the softmax's row
  statistics. Autodiff kept two such float32 tensors per layer."""
  b, t, h, kv, d = 3, 16, 6, 2, 4  # a score tensor (b*h*t*t = 4608) outsizes q, k, v (<= 1152)
  q, k, v = _qkv(dtype, b=b, t=t, h=h, kv=kv, d=d)
  mask = attention_mask_4d(jnp.ones((b, t), jnp.int32))
  _, vjp = jax.vjp(lambda q, k, v: grouped_attention(q, k, v, mask, 0.5), q, k, v)
  sizes = [x.size for x in jax.tree_util.tree_leaves(vjp)
           if jnp.issubdtype(x.dtype, jnp.floating)]
  assert sizes and max(sizes) < b * h * t * t, sizes

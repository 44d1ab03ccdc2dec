"""cuDNN's attention arguments: right-padded rows as `is_causal` plus sequence lengths.

With attention_impl="cudnn" the model hands `jax.nn.dot_product_attention` no [B, 1, T, T] mask
(jax would turn it into an additive bias the flash kernel must read and differentiate) but
is_causal=True and each row's length (models/llama.causal_padded_attention). cuDNN cannot run on
CPU, so these tests run the same arguments through the XLA implementation and require the masked
path's results at every real token: attention outputs and gradients within 1e-6 (float32; the
two paths mask the same logits with the same large negative number), rewards and parameter
gradients of a reward model within 1e-6. Masks of another form (left padding, packed segments)
must give NaN, never a silently different answer. The last test runs real cuDNN against XLA in
bfloat16 and is skipped without a GPU (the GPU suite, benchmarks/gpu, runs it).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaRewardModel
from helpsteer_jax.models.llama import (attention_mask_4d, causal_lengths, causal_padded_attention,
                                        segment_mask_4d)

TINY = PRESETS["tiny"]
ATOL = 1e-6
LENGTHS = [12, 5, 1, 11]  # full row, padded rows, a filler row (one attended pad token)
T = 12


def _right_padded(lengths, t=T):
  return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)


def _qkv(dtype=jnp.float32, b=len(LENGTHS), t=T, h=4, kv=2, hd=16):
  ks = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(ks[0], (b, t, h, hd), dtype)
  k = jax.random.normal(ks[1], (b, t, kv, hd), dtype)
  v = jax.random.normal(ks[2], (b, t, kv, hd), dtype)
  ct = jax.random.normal(ks[3], (b, t, h, hd), dtype)
  return q, k, v, ct


def _masked(q, k, v, mask, impl="xla"):
  return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=q.shape[-1] ** -0.5,
                                      implementation=impl)


def _outputs_and_grads(attend, q, k, v, ct, real_bt):
  """Outputs and d(sum(out * ct over real tokens))/d(q, k, v)."""
  keep = jnp.asarray(real_bt, q.dtype)[:, :, None, None]
  out, vjp = jax.vjp(attend, q, k, v)
  return out * keep, vjp(ct * keep)


def test_lengths_read_off_the_mask():
  mask = attention_mask_4d(jnp.asarray(_right_padded([12, 5, 1, 11, 0])))
  lengths, fits = causal_lengths(mask)
  # 11 real tokens of 12 read as 12: the one padding query sees all keys before it and itself,
  # so the mask is that of the unpadded row, and causal attention over 12 is exactly right.
  np.testing.assert_array_equal(lengths, [12, 5, 1, 12, 0])
  assert bool(fits)


def test_lengths_path_equals_masked_path():
  q, k, v, ct = _qkv()
  real = _right_padded(LENGTHS)
  mask = attention_mask_4d(jnp.asarray(real))
  scale = q.shape[-1] ** -0.5
  got = jax.jit(lambda *x: _outputs_and_grads(
      lambda *a: causal_padded_attention(*a, mask, scale, "xla"), *x, real))(q, k, v, ct)
  want = jax.jit(lambda *x: _outputs_and_grads(lambda *a: _masked(*a, mask), *x, real))(
      q, k, v, ct)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(got))


@pytest.mark.parametrize("kind", ["left_padded", "packed"])
def test_other_masks_give_nan(kind):
  q, k, v, _ = _qkv()
  if kind == "left_padded":
    mask = attention_mask_4d(jnp.asarray(_right_padded(LENGTHS)[:, ::-1].copy()))
  else:
    seg = np.array([[1] * 5 + [2] * 7, [1] * 12, [1] * 3 + [2] * 3 + [0] * 6, [1] * 12])
    mask = segment_mask_4d(jnp.asarray(seg))
  assert not bool(causal_lengths(mask)[1])
  out = causal_padded_attention(q, k, v, mask, q.shape[-1] ** -0.5, "xla")
  assert np.isnan(np.asarray(out)).all()


def _cudnn_on_xla(monkeypatch):
  """Runs the model's cuDNN calls on XLA (CPU) and records the arguments they were given."""
  calls = []
  real = jax.nn.dot_product_attention

  def fake(*args, implementation=None, **kw):
    calls.append(dict(kw, implementation=implementation, mask=kw.get("mask") is not None
                      or len(args) > 4))
    return real(*args, implementation="xla" if implementation == "cudnn" else implementation,
                **kw)
  monkeypatch.setattr(jax.nn, "dot_product_attention", fake)
  return calls


@pytest.mark.parametrize("scan", [True, False])
def test_reward_model_cudnn_config_equals_masked(monkeypatch, scan):
  """Unrolled, the last layer computes only the row it reads (LlamaModel's read_index_bk): one
  query per sequence over all keys, which is no causal self-attention, so it takes the masked
  XLA path; the layers below take cuDNN's."""
  calls = _cudnn_on_xla(monkeypatch)
  ids = jax.random.randint(jax.random.key(1), (len(LENGTHS), T), 3, TINY.vocab_size)
  mask = jnp.asarray(_right_padded(LENGTHS))
  cfg = TINY.replace(scan_layers=scan)
  params = nn.unbox(jax.jit(LlamaRewardModel(cfg).init)(jax.random.key(0), ids, mask))["params"]

  def rewards_and_grads(c):
    model = LlamaRewardModel(c)

    @jax.jit
    def run(p):
      r, vjp = jax.vjp(lambda p: model.apply({"params": p}, ids, mask), p)
      return r, vjp(jnp.linspace(-1.0, 1.0, r.size).reshape(r.shape))[0]
    return run(params)

  got = rewards_and_grads(cfg.replace(attention_impl="cudnn"))
  cudnn_calls = [c for c in calls if c["implementation"] == "cudnn"]
  assert cudnn_calls and all(c["is_causal"] and not c["mask"] and
                             c["key_value_seq_lengths"] is not None for c in cudnn_calls)
  read_calls = [c for c in calls if c["implementation"] == "xla"]
  if scan:  # every layer is the scan's body (traced more than once): all cuDNN
    assert not read_calls
  else:
    assert (len(cudnn_calls), len(read_calls)) == (TINY.num_hidden_layers - 1, 1)
  assert all(c["mask"] and not c.get("is_causal") for c in read_calls)
  want = rewards_and_grads(cfg.replace(attention_impl="xla"))
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs an NVIDIA GPU")
def test_cudnn_matches_xla_on_gpu():
  """bfloat16 on a GPU: cuDNN flash attention against XLA's masked attention, both with float32
  softmax; tolerance 2e-2 absolute on values of order 1 (bf16 rounding of outputs and grads)."""
  b, t = 4, 256
  q, k, v, ct = _qkv(jnp.bfloat16, b=b, t=t, h=8, kv=2, hd=64)
  real = _right_padded([256, 200, 1, 130], t)
  mask = attention_mask_4d(jnp.asarray(real))
  scale = q.shape[-1] ** -0.5
  got = jax.jit(functools.partial(
      _outputs_and_grads, lambda *a: causal_padded_attention(*a, mask, scale, "cudnn"),
      real_bt=real))(q, k, v, ct)
  want = jax.jit(functools.partial(_outputs_and_grads, lambda *a: _masked(*a, mask),
                                   real_bt=real))(q, k, v, ct)
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), atol=2e-2,
                               rtol=0)

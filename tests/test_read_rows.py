"""A reward model's last layer computes only the rows it reads (LlamaModel's `read_index_bk`).

The reference is the whole model's hidden states, rows taken after the final norm: what
LlamaRewardModel computed before. Tolerances: float32 rewards within rtol 1e-5 (atol 1e-6),
gradients within rtol 1e-5 with atol 1e-5 x each leaf's largest magnitude: the last layer's dots
have a different row count, so XLA may order the sums differently, nothing else. bfloat16: 2e-2
in place of 1e-5, a few bf16 roundings (8 bits) of the last layer's outputs. Causal-LM logits
(values of order 1): within rtol and atol 1e-5, for the same reason.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import PRESETS
from helpsteer_jax.models.llama import LlamaRewardModel, last_token_index, rows

B, T = 3, 12


def _inputs(vocab):
  ids = jax.random.randint(jax.random.PRNGKey(1), (B, T), 1, vocab)
  mask = jnp.asarray([[1] * T, [1] * 7 + [0] * 5, [0] * 4 + [1] * 8], jnp.int32)  # right, left
  return ids, mask


def _every_row_then_read(module, ids, mask):
  """The rewards from all positions' hidden states (no read rows), rows taken afterwards."""
  h = module.model(ids, mask)
  return module.score(rows(h, last_token_index(mask)[:, None])[:, 0])


def _setup(**overrides):
  cfg = dataclasses.replace(PRESETS["tiny"], num_hidden_layers=3, **overrides)
  model = LlamaRewardModel(cfg, num_labels=2)
  ids, mask = _inputs(cfg.vocab_size)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, mask)["params"])
  return model, params, ids, mask


@pytest.mark.parametrize("overrides,tol", [
    (dict(), 1e-5),
    (dict(attention_impl="xla"), 1e-5),  # read rows on jax.nn.dot_product_attention ("cudnn")
    (dict(dtype="bfloat16"), 2e-2),
    (dict(remat_policy="full"), 1e-5),  # nn.remat around the last layer's extra argument
], ids=["f32", "xla", "bf16", "remat"])
def test_rewards_and_gradients_equal_every_row(overrides, tol):
  model, params, ids, mask = _setup(**overrides)
  weights = jnp.asarray([1., -.5])

  def loss_and_rewards(method):
    def f(p):
      r = model.apply({"params": p}, ids, mask, method=method)
      return jnp.sum(r * weights), r
    return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

  (l_read, r_read), g_read = loss_and_rewards(None)
  (l_whole, r_whole), g_whole = loss_and_rewards(_every_row_then_read)
  np.testing.assert_allclose(r_read, r_whole, rtol=tol, atol=tol / 10)
  np.testing.assert_allclose(l_read, l_whole, rtol=tol, atol=tol / 10)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_read), jax.tree.leaves(g_whole)):
    scale = float(jnp.max(jnp.abs(b))) or 1.0
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=jax.tree_util.keystr(path))


def test_scanned_layers_read_the_same_rewards():
  """The same parameters, scanned (stacked) or unrolled: the same rewards."""
  model, params, ids, mask = _setup()
  scanned = LlamaRewardModel(dataclasses.replace(model.cfg, scan_layers=True), num_labels=2)
  stacked = jax.tree.map(jnp.asarray, convert.stack_layers(params, model.cfg.num_hidden_layers))
  got = jax.jit(lambda p: scanned.apply({"params": p}, ids, mask))(stacked)
  want = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(params)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_packed_rows_read_the_same_rewards():
  """Packed rows read K sequences a row: the same rewards as every row's hidden states."""
  model, params, ids, _ = _setup()
  seg = jnp.asarray([[1] * 5 + [2] * 7, [1] * 9 + [0] * 3, [1, 1, 2, 2, 2, 3, 3, 3, 3, 0, 0, 0]])
  read = jnp.asarray([[4, 11, 0], [8, 0, 0], [1, 4, 8]])

  def whole(module, ids, seg, read):
    return module.score(rows(module.model(ids, segment_ids_bt=seg), read))

  got = jax.jit(lambda p: model.apply({"params": p}, ids, seg, read,
                                      method=LlamaRewardModel.packed))(params)
  want = jax.jit(lambda p: model.apply({"params": p}, ids, seg, read, method=whole))(params)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_last_layer_skips_the_rows_it_does_not_read():
  """Compiled FLOPs of the reward's forward and gradient: the last layer's queries, output
  projection and MLP run on B rows instead of B x T, which saves at least 90% of those
  projections' FLOPs on T - 1 of T rows (the attention and norms come on top)."""
  model, params, ids, mask = _setup(intermediate_size=256)
  cfg = model.cfg
  d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
  # per row: q and o projections (2 * D * heads * head_dim), MLP (3 * D * F), 2 FLOPs a MAC
  per_row = 2 * (2 * d * cfg.num_attention_heads * hd + 3 * d * f)
  saved = per_row * B * (T - 1)
  reward = lambda method: lambda p: jnp.sum(model.apply({"params": p}, ids, mask, method=method))
  flops = lambda fn: jax.jit(fn).lower(params).compile().cost_analysis()["flops"]
  # the gradient: the backward's two dots per forward dot, 3x the forward's saving
  for name, transform, factor in (("forward", lambda f: f, 1), ("gradient", jax.grad, 3)):
    read, whole = (flops(transform(reward(m))) for m in (None, _every_row_then_read))
    assert whole - read >= 0.9 * factor * saved, (name, read, whole, saved)


@pytest.mark.parametrize("scan", [False, True])
def test_policy_logits_of_the_last_positions_equal_every_row(scan):
  """LlamaForCausalLM(last=k) (RLHF's response log-probs) and the judges' next-token logits:
  the last layer computes those rows only; the same logits as every row's, sliced."""
  from helpsteer_jax.evaluation.judges import last_token_logits
  from helpsteer_jax.models.llama import LlamaForCausalLM
  cfg = dataclasses.replace(PRESETS["tiny"], num_hidden_layers=3, scan_layers=scan)
  model = LlamaForCausalLM(cfg)
  ids, mask = _inputs(cfg.vocab_size)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, mask)["params"])
  every = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(params)
  for last in (5, T + 3):  # more positions than the rows have: all of them, as a slice gives
    tail = jax.jit(lambda p: model.apply({"params": p}, ids, mask, last=last))(params)
    np.testing.assert_allclose(tail, every[:, -last:], rtol=1e-5, atol=1e-5)
  judged = last_token_logits(model, params, ids, mask)
  np.testing.assert_allclose(judged, rows(every, last_token_index(mask)[:, None])[:, 0],
                             rtol=1e-5, atol=1e-5)

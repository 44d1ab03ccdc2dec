"""Remat policies of the decoder layers: what they keep for the backward pass, and that they do
not change the gradients.

Tolerance: gradients under any policy equal those without remat within 1e-6 (float32; the
recomputed forward is the same program, XLA may fuse it differently).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import LlamaConfig, LlamaRewardModel
from saved_residuals import saved_shapes, saved_text

CFG = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, scan_layers=True)
IDS = jnp.asarray(np.random.default_rng(0).integers(3, 128, size=(2, 16)), jnp.int32)


def _loss_and_params(policy: str):
  model = LlamaRewardModel(LlamaConfig(**CFG, remat_policy=policy), num_labels=1)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), IDS)["params"])
  loss = lambda p: jnp.sum(model.apply({"params": p}, IDS, jnp.ones_like(IDS)) ** 2)
  return loss, params


def _saved(policy: str) -> list[tuple[int, ...]]:
  """Shapes of what the backward pass keeps."""
  return saved_shapes(*_loss_and_params(policy))


@pytest.mark.parametrize("policy", ["projections", "projections_attention", "full", "dots"])
def test_remat_leaves_gradients_unchanged(policy):
  ref_loss, params = _loss_and_params("none")
  loss, _ = _loss_and_params(policy)
  ref, got = jax.jit(jax.grad(ref_loss))(params), jax.jit(jax.grad(loss))(params)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_projections_policy_keeps_the_projection_outputs_only():
  """The MLP's gate and up outputs ([layers, batch, T, intermediate]) are kept, once each per
  layer stack; the SiLU product of the same shape is not (recomputed); full remat keeps none."""
  mlp = (CFG["num_hidden_layers"], *IDS.shape, CFG["intermediate_size"])
  count = lambda shapes: sum(s == mlp for s in shapes)
  size = lambda shapes: sum(int(np.prod(s)) for s in shapes)
  none, proj, full = _saved("none"), _saved("projections"), _saved("full")
  assert count(proj) == 2 and count(full) == 0 and count(none) > 2
  assert size(full) < size(proj) < size(none)


def _dot_count(policy: str) -> int:
  """dot_generals in the gradient program (the scan body's once for all layers)."""
  loss, params = _loss_and_params(policy)
  return jax.jit(jax.grad(loss)).lower(params).as_text().count("stablehlo.dot_general")


def test_projections_attention_policy_recomputes_no_dot():
  """"projections_attention" also keeps grouped attention's output ([layers, batch, T, hidden],
  the o_proj input) and its softmax row maximum and sum, so the backward pass recomputes only
  rotary and the norms: its gradient program has exactly the dots of the one without remat,
  while "projections" recomputes the attention's two forward dots (scores, probs @ v)."""
  hidden = (CFG["num_hidden_layers"], *IDS.shape, CFG["hidden_size"])
  kv, heads = CFG["num_key_value_heads"], CFG["num_attention_heads"]
  stats = (CFG["num_hidden_layers"], IDS.shape[0], kv, heads // kv, IDS.shape[1], 1)
  proj, proj_attn = _saved("projections"), _saved("projections_attention")
  # hidden-sized: the q_proj, o_proj and down_proj outputs, + the attention output.
  assert proj.count(hidden) == 3 and proj_attn.count(hidden) == 4
  assert proj.count(stats) == 0 and proj_attn.count(stats) == 2
  none = _dot_count("none")
  assert _dot_count("projections_attention") == none
  assert _dot_count("projections") == none + 2


def _bf16_step_parts(policy: str):
  cfg = LlamaConfig(**CFG, remat_policy=policy, dtype="bfloat16",
                    low_precision_dots="f32_accumulate")
  model = LlamaRewardModel(cfg, num_labels=1)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), IDS)["params"])
  loss = lambda p: jnp.sum(model.apply({"params": p}, IDS, jnp.ones_like(IDS)) ** 2)
  return loss, params


def test_bf16_projections_are_kept_in_float32():
  """With bf16 compute and float32 accumulation the kept projection outputs are the float32 dot
  results: XLA:CPU updates a float32 layer stack in place, but rewrites a bf16 stack's per-layer
  dynamic-update-slice as a convert of the whole stack to float32 and back (a copy of every
  layer's stack on every layer). The compiled gradient must hold no such update of the MLP's
  stacked outputs."""
  loss, params = _bf16_step_parts("projections")
  saved = saved_text(loss, params)
  mlp = ",".join(str(d) for d in (CFG["num_hidden_layers"], *IDS.shape, CFG["intermediate_size"]))
  kept = re.findall(rf"^(\w+)\[{mlp}\]", saved, re.M)
  assert kept == ["f32", "f32"], saved
  grad = jax.jit(jax.grad(loss)).lower(params).compile()
  stacked = re.findall(rf"f32\[{mlp}\]\S* dynamic-update-slice\(%?convert", grad.as_text())
  assert not stacked, stacked
  # The same gradients as without remat (bf16 compute: the recomputed forward is the same
  # program; tolerance 1e-6 as above, on gradients of magnitude ~1e-2..1).
  _assert_bf16_grads_match_no_remat(grad, params)


def _assert_bf16_grads_match_no_remat(grad, params):
  ref_loss, _ = _bf16_step_parts("none")
  for a, b in zip(jax.tree_util.tree_leaves(grad(params)),
                  jax.tree_util.tree_leaves(jax.jit(jax.grad(ref_loss))(params))):
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=1e-6,
                               rtol=0)


def test_bf16_attention_output_is_kept_in_float32():
  """projections_attention keeps attention's output as float32 under bf16 compute, for the
  reason above: it adds no whole-stack convert-and-update to the compiled gradient (the one
  that remains, in both policies, is the bf16 residual stream's; residual_dtype="float32"
  removes it), and no bf16 tensor to what is kept. Gradients as without remat (1e-6)."""
  hidden = ",".join(str(d) for d in (CFG["num_hidden_layers"], *IDS.shape, CFG["hidden_size"]))
  converts, bf16_kept = {}, {}
  for policy in ("projections", "projections_attention"):
    loss, params = _bf16_step_parts(policy)
    bf16_kept[policy] = len(re.findall(rf"^bf16\[{hidden}\]", saved_text(loss, params), re.M))
    grad = jax.jit(jax.grad(loss)).lower(params).compile()
    converts[policy] = len(re.findall(r"dynamic-update-slice\(%?convert", grad.as_text()))
  assert converts["projections_attention"] == converts["projections"], converts
  assert bf16_kept["projections_attention"] == bf16_kept["projections"] == 1, bf16_kept
  loss, params = _bf16_step_parts("projections_attention")
  _assert_bf16_grads_match_no_remat(jax.jit(jax.grad(loss)), params)

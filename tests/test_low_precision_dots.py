"""`low_precision_dots="f32_accumulate"`: bf16 operands, float32 results, forward and backward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import LlamaConfig, LlamaRewardModel
from helpsteer_jax.models.llama import matmul_f32_accumulate

TINY = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   pad_token_id=0)


def test_custom_vjp_equals_autodiff_in_float32():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8))
  w = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
  f_ours = lambda x, w: jnp.sum(jnp.sin(matmul_f32_accumulate(x, w)))
  f_ref = lambda x, w: jnp.sum(jnp.sin(x @ w))
  np.testing.assert_allclose(f_ours(x, w), f_ref(x, w), rtol=1e-6)
  for a, b in zip(jax.grad(f_ours, (0, 1))(x, w), jax.grad(f_ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _dots(jaxpr) -> list:
  out = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append(([v.aval.dtype for v in eqn.invars], eqn.outvars[0].aval.dtype))
    for sub in jax.core.jaxprs_in_params(eqn.params):
      out += _dots(sub)
  return out


def test_every_projection_dot_has_bf16_operands_and_float32_result():
  counts = {}
  for setting in ("xla", "f32_accumulate"):
    cfg = TINY.replace(dtype="bfloat16", low_precision_dots=setting)
    model = LlamaRewardModel(cfg, num_labels=1)
    ids = jnp.arange(1, 17, dtype=jnp.int32).reshape(2, 8)
    params = nn.unbox(model.init(jax.random.PRNGKey(0), ids)["params"])
    loss = lambda p, model=model, ids=ids: jnp.sum(model.apply({"params": p}, ids))
    dots = _dots(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
    counts[setting] = {kind: sum(1 for ins, out in dots if (tuple(ins), out) == kind)
                       for kind in (((jnp.bfloat16, jnp.bfloat16), jnp.bfloat16),
                                    ((jnp.bfloat16, jnp.bfloat16), jnp.float32))}
  # 7 projections per layer; forward, dx and dw: 3 dots each. They move from bf16 -> bf16 to
  # bf16 -> float32; the attention's own dots (inside jax.nn.dot_product_attention) are left as
  # they are, and the score head is a float32 dot either way (tests/test_precision.py).
  moved = 3 * 7 * TINY.num_hidden_layers
  bf16_out, f32_out = ((jnp.bfloat16, jnp.bfloat16), jnp.bfloat16), ((jnp.bfloat16, jnp.bfloat16), jnp.float32)
  assert counts["xla"][bf16_out] - counts["f32_accumulate"][bf16_out] == moved
  assert counts["f32_accumulate"][f32_out] - counts["xla"][f32_out] == moved


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_f32_accumulate_matches_xla_bf16_and_float32():
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 128, (4, 16)), jnp.int32)
  rewards, grads = {}, {}
  for name, cfg in (("fp32", TINY),
                    ("xla", TINY.replace(dtype="bfloat16")),
                    ("acc", TINY.replace(dtype="bfloat16", low_precision_dots="f32_accumulate"))):
    model = LlamaRewardModel(cfg, num_labels=1)
    params = nn.unbox(LlamaRewardModel(TINY, 1).init(jax.random.PRNGKey(0), ids)["params"])
    f = lambda p: jnp.sum(model.apply({"params": p}, ids).astype(jnp.float32))
    rewards[name] = np.asarray(model.apply({"params": params}, ids), np.float32)
    grads[name] = np.asarray(jax.grad(f)(params)["model"]["layers"]["0"]["mlp"]["up_proj"]["kernel"])
  scale = np.abs(rewards["fp32"]).max()
  # bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); after two layers and the head
  # both bf16 paths are within 2% of the largest float32 reward / gradient (measured: 0.8%).
  for name in ("xla", "acc"):
    np.testing.assert_allclose(rewards[name], rewards["fp32"], rtol=0, atol=0.02 * scale)
    g_scale = np.abs(grads["fp32"]).max()
    np.testing.assert_allclose(grads[name], grads["fp32"], rtol=0, atol=0.02 * g_scale)


def test_unknown_setting_is_an_error():
  with pytest.raises(ValueError, match="low_precision_dots"):
    TINY.replace(low_precision_dots="fast")


def _transposes(jaxpr) -> int:
  n = sum(1 for eqn in jaxpr.eqns if eqn.primitive.name == "transpose")
  return n + sum(_transposes(sub) for eqn in jaxpr.eqns for sub in jax.core.jaxprs_in_params(eqn.params))


def test_explicit_projection_vjp_equals_autodiff_without_transposes():
  """float32: the written-out projection backward gives autodiff's gradients with no transposes."""
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 128, (2, 2, 12)), jnp.int32)
  params = nn.unbox(LlamaRewardModel(TINY, 1).init(jax.random.PRNGKey(0), ids[0])["params"])
  out, n_transposes = {}, {}
  for setting in ("explicit", "autodiff"):
    model = LlamaRewardModel(TINY.replace(projection_vjp=setting), num_labels=1)
    loss = lambda p, model=model: -jnp.mean(jax.nn.log_sigmoid(
        jnp.diff(model.apply({"params": p}, ids.reshape(4, 12)).reshape(2, 2), axis=1)))
    out[setting] = jax.jit(jax.value_and_grad(loss))(params)
    n_transposes[setting] = _transposes(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  (l_ex, g_ex), (l_ad, g_ad) = out["explicit"], out["autodiff"]
  np.testing.assert_allclose(l_ex, l_ad, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(g_ex), jax.tree_util.tree_leaves(g_ad)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # float32 sums in another order
  # Autodiff transposes the cotangent of every projection (7 per layer) or its result; the
  # explicit backward contracts in place. What is left are attention's own transposes.
  assert n_transposes["autodiff"] - n_transposes["explicit"] >= 7 * TINY.num_hidden_layers


def test_unknown_projection_vjp_is_an_error():
  with pytest.raises(ValueError, match="projection_vjp"):
    TINY.replace(projection_vjp="manual")

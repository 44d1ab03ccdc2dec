"""The MLP activation's backward (config.activation_vjp): silu(gate) * up differentiated from
gate and up alone keeps autodiff's gradients and three fewer intermediate-sized tensors a layer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import LlamaConfig, LlamaRewardModel
from helpsteer_jax.models.llama import gated_silu
from saved_residuals import saved_shapes

# intermediate_size 96 is distinct from every other width, so saved residuals of the MLP's
# intermediate size can be counted by shape.
TINY = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _loss(model, ids):
  return lambda p: -jnp.mean(jax.nn.log_sigmoid(
      jnp.diff(model.apply({"params": p}, ids.reshape(4, 12)).reshape(2, 2), axis=1)))


def test_gradients_equal_autodiff_and_fewer_tensors_are_kept():
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 128, (2, 2, 12)), jnp.int32)
  params = nn.unbox(LlamaRewardModel(TINY, 1).init(jax.random.PRNGKey(0), ids[0])["params"])
  out, kept = {}, {}
  for setting in ("inputs", "autodiff"):
    loss = _loss(LlamaRewardModel(TINY.replace(activation_vjp=setting), num_labels=1), ids)
    out[setting] = jax.jit(jax.value_and_grad(loss))(params)
    shapes = saved_shapes(loss, params)
    # the last layer's MLP runs on the row the reward reads only: [4, 1, F] there
    kept[setting] = sum(shapes.count((4, t, TINY.intermediate_size)) for t in (12, 1))
  (l_in, g_in), (l_ad, g_ad) = out["inputs"], out["autodiff"]
  np.testing.assert_array_equal(l_in, l_ad)  # the forward is the same formula
  for a, b in zip(jax.tree_util.tree_leaves(g_in), jax.tree_util.tree_leaves(g_ad)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # float32, another order of products
  # Per layer: gate, up and the down projection's input; autodiff keeps three more.
  assert kept["inputs"] == 3 * TINY.num_hidden_layers
  assert kept["autodiff"] >= kept["inputs"] + 3 * TINY.num_hidden_layers


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gated_silu_vjp_matches_autodiff(dtype):
  rng = np.random.default_rng(1)
  g, u, ct = (jnp.asarray(rng.normal(0, 3, (5, 7)), dtype) for _ in range(3))
  y, vjp = jax.vjp(gated_silu, g, u)
  y_ad, vjp_ad = jax.vjp(lambda a, b: nn.silu(a) * b, g, u)
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ad, np.float32))
  # bf16: both round each product to 8 bits, in a different order: a few bf16 ulps.
  tol = dict(rtol=1e-6, atol=1e-6) if dtype == jnp.float32 else dict(rtol=3e-2, atol=3e-2)
  for a, b in zip(vjp(ct), vjp_ad(ct)):
    assert a.dtype == dtype
    np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), **tol)


def test_unknown_activation_vjp_is_an_error():
  with pytest.raises(ValueError, match="activation_vjp"):
    TINY.replace(activation_vjp="manual")

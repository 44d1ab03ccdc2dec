"""RMSNorm's weight gradient (models/llama.scale_last_axis): a sum over every token, accumulated
in float32. Autodiff summed it in the compute dtype: in bf16, rounded after every addition."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax.models.llama import scale_last_axis


def _inputs(dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0, 1, (8, 256, 64)), dtype)
  ct = jnp.asarray(rng.normal(0.5, 1, (8, 256, 64)), dtype)  # a mean: the sum grows
  w = jnp.asarray(rng.normal(1, 0.1, (64,)), jnp.float32)
  return x, w, ct


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_is_hf_and_gradients_are_exact_sums(dtype):
  x, w, ct = _inputs(dtype)
  y, vjp = jax.vjp(scale_last_axis, x, w)
  np.testing.assert_array_equal(np.asarray(y, np.float32),
                                np.asarray(w.astype(dtype) * x, np.float32))
  dx, dw = vjp(ct)
  assert dx.dtype == dtype and dw.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(dx, np.float32),
                                np.asarray(ct * w.astype(dtype), np.float32))
  exact = (np.asarray(ct, np.float64) * np.asarray(x, np.float64)).sum(axis=(0, 1))
  # float32 accumulation of 2048 products of magnitude ~1: relative error well below 1e-5.
  np.testing.assert_allclose(np.asarray(dw), exact, rtol=1e-5, atol=1e-3)


def test_bf16_weight_gradient_is_closer_than_autodiff():
  x, w, ct = _inputs(jnp.bfloat16)
  exact = (np.asarray(ct, np.float64) * np.asarray(x, np.float64)).sum(axis=(0, 1))
  _, vjp = jax.vjp(scale_last_axis, x, w)
  _, ad_vjp = jax.vjp(lambda x, w: w.astype(x.dtype) * x, x, w)
  ours = np.abs(np.asarray(vjp(ct)[1], np.float64) - exact).max()
  autodiff = np.abs(np.asarray(ad_vjp(ct)[1], np.float64) - exact).max()
  assert ours < 1e-2 and autodiff > 10 * ours, (ours, autodiff)

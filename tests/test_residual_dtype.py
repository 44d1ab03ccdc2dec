"""model.residual_dtype: a float32 residual stream under bf16 compute (torch autocast's layout).

What is checked: it changes nothing in float32; under bf16 it moves the outputs towards the
float32 model's (the stream is no longer rounded to bf16 after every layer); the tied LM head
still multiplies in the compute dtype; and with full remat over scanned layers the compiled
gradient updates the stack of layer inputs in place (no whole-stack convert, which XLA:CPU
emits for a bf16 stack).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import runs
from helpsteer_jax.models import LlamaConfig, LlamaForCausalLM, LlamaRewardModel
from helpsteer_jax.training.configs import model_block

CFG = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
           num_attention_heads=4, num_key_value_heads=2, scan_layers=True)
IDS = jnp.asarray(np.random.default_rng(0).integers(3, 128, size=(2, 16)), jnp.int32)
MASK = jnp.ones_like(IDS)


def _reward(params=None, **kw):
  model = LlamaRewardModel(LlamaConfig(**CFG, **kw), num_labels=1)
  if params is None:
    params = nn.unbox(model.init(jax.random.PRNGKey(0), IDS)["params"])
  return model, params


def test_float32_is_unchanged():
  model, params = _reward()
  ref = model.apply({"params": params}, IDS, MASK)
  got = _reward(params, residual_dtype="float32")[0].apply({"params": params}, IDS, MASK)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_bf16_with_a_float32_stream_is_closer_to_float32():
  model, params = _reward()
  ref = np.asarray(model.apply({"params": params}, IDS, MASK), np.float64)
  bf16 = dict(dtype="bfloat16", low_precision_dots="f32_accumulate")
  plain = np.asarray(_reward(params, **bf16)[0].apply({"params": params}, IDS, MASK), np.float64)
  mixed = np.asarray(_reward(params, residual_dtype="float32", **bf16)[0]
                     .apply({"params": params}, IDS, MASK), np.float64)
  err_plain, err_mixed = np.abs(plain - ref).max(), np.abs(mixed - ref).max()
  assert err_mixed < err_plain, (err_mixed, err_plain)


def test_tied_lm_head_in_the_compute_dtype():
  cfg = LlamaConfig(**CFG, tie_word_embeddings=True)
  model = LlamaForCausalLM(cfg)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), IDS)["params"])
  ref = np.asarray(model.apply({"params": params}, IDS, MASK), np.float64)
  mixed = LlamaForCausalLM(cfg.replace(dtype="bfloat16", residual_dtype="float32"))
  got = mixed.apply({"params": params}, IDS, MASK)
  jaxpr = str(jax.make_jaxpr(lambda p: mixed.apply({"params": p}, IDS, MASK))(params))
  head = [l for l in jaxpr.splitlines() if "dot_general" in l and f",{CFG['vocab_size']}] =" in l]
  assert head and all("bf16[" in l for l in head), head  # the vocabulary-sized dot in bf16
  # bf16 logits of a random 4-layer model (|logit| < 1): within 2^-6 of float32's.
  np.testing.assert_allclose(np.asarray(got, np.float64), ref, atol=2 ** -6, rtol=0)


def test_full_remat_stack_of_layer_inputs_is_float32():
  model, params = _reward(dtype="bfloat16", low_precision_dots="f32_accumulate",
                          residual_dtype="float32", remat_policy="full")
  loss = lambda p: jnp.sum(model.apply({"params": p}, IDS, MASK) ** 2)
  hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
  stack = ",".join(str(d) for d in (CFG["num_hidden_layers"], *IDS.shape, CFG["hidden_size"]))
  assert re.search(rf"f32\[{stack}\]", hlo), "no stack of layer inputs found"
  assert not re.findall(rf"f32\[{stack}\]\S* dynamic-update-slice\(%?convert", hlo)


def test_the_config_reaches_the_model():
  block = model_block()
  cfg = LlamaConfig(**CFG)
  assert cfg.replace(**runs.runtime_of(block)).residual_dtype is None  # default: dtype
  block.update(dtype="bfloat16", residual_dtype="float32")
  assert cfg.replace(**runs.runtime_of(block)).residual_dtype == "float32"
  with pytest.raises(ValueError, match="residual_dtype"):
    LlamaConfig(**CFG, residual_dtype="float8")

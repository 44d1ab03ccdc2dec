"""A reward model split at a layer (models/split.py) computes what the whole model computes.

Tolerances: float32 throughout; the split runs the same layers in the same order, so rewards
agree to 1e-5 (absolute, rewards of order 1) and parameters round-trip exactly.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import LlamaConfig, LlamaRewardModel, split
from helpsteer_jax.training.objectives import pairwise_objective, regression_objective

CFG = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def _model(scan: bool, labels: int = 1):
  cfg = CFG.replace(scan_layers=scan)
  model = LlamaRewardModel(cfg, num_labels=labels)
  params = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))["params"]
  return cfg, model, params


def _batch(b=3, t=12, seed=1):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, CFG.vocab_size, (b, t)).astype(np.int32)
  lengths = rng.integers(4, t + 1, b)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
  return ids * mask, mask


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_bottom_then_top_is_the_whole_model(scan, k):
  cfg, model, params = _model(scan, labels=2)
  ids, mask = _batch()
  want = jax.jit(model.apply)({"params": params}, ids, mask)
  bcfg, tcfg, bottom, top = split.split(cfg, params, k)
  assert bcfg.num_hidden_layers == 5 - k and tcfg.num_hidden_layers == k
  h = jax.jit(split.bottom_model(bcfg).apply)({"params": bottom}, ids, mask)
  assert h.shape == (*ids.shape, CFG.hidden_size)
  got = jax.jit(split.top_model(tcfg, 2).apply)({"params": top}, h, mask)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
  assert "embed_tokens" not in top["model"] and "score" not in bottom


@pytest.mark.parametrize("scan", [False, True])
def test_join_restores_the_parameters_exactly(scan):
  cfg, _, params = _model(scan)
  _, _, bottom, top = split.split(cfg, params, 2)
  joined = split.join(bottom, top, cfg)
  assert jax.tree_util.tree_structure(joined) == jax.tree_util.tree_structure(params)
  for a, b in zip(jax.tree_util.tree_leaves(joined), jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_objectives_take_the_residual_stream():
  """The library's pairwise and regression objectives run the top on cached hidden states."""
  cfg, model, params = _model(False)
  bcfg, tcfg, bottom, top = split.split(cfg, params, 2)
  ids, mask = _batch(b=4)
  h = jax.jit(split.bottom_model(bcfg).apply)({"params": bottom}, ids, mask)
  strength = jnp.asarray([1.0, 2.0])
  weight = jnp.ones(2)
  full = {"input_ids": ids.reshape(2, 2, -1), "attention_mask": mask.reshape(2, 2, -1),
          "strength": strength, "weight": weight}
  cached = dict(full, input_ids=h.reshape(2, 2, *h.shape[1:]))
  for loss in ("bt", "scaled_bt"):
    want, _ = pairwise_objective(model, loss)(params, full)
    got, _ = pairwise_objective(split.top_model(tcfg), loss)(top, cached)
    np.testing.assert_allclose(float(got), float(want), atol=1e-5)
  r_model = LlamaRewardModel(cfg, num_labels=1)
  labels = {"labels": jnp.arange(4.0)[:, None], "label_mask": jnp.ones((4, 1)),
            "weight": jnp.ones(4), "attention_mask": mask}
  want, _ = regression_objective(r_model, ("helpfulness",))(params, dict(labels, input_ids=ids))
  got, _ = regression_objective(split.top_model(tcfg), ("helpfulness",))(top,
                                                                          dict(labels, input_ids=h))
  np.testing.assert_allclose(float(got), float(want), atol=1e-5)


def test_split_refuses_what_it_cannot_cut():
  cfg, _, params = _model(False)
  with pytest.raises(ValueError, match="top_layers must be in 1..4"):
    split.split(cfg, params, 5)
  with pytest.raises(ValueError, match="no 'score' head"):
    split.split(cfg, {"model": params["model"]}, 2)

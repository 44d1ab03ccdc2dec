"""Mesh and logical-axis rules on 8 fake CPU devices (see conftest.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import sharding
from helpsteer_jax.models import PRESETS, LlamaRewardModel


def test_make_mesh_fills_minus_one_and_checks_size():
  assert jax.device_count() == 8
  mesh = sharding.make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  with pytest.raises(ValueError, match="needs 12 devices"):
    sharding.make_mesh({"data": 3, "fsdp": 2, "tensor": 2})
  with pytest.raises(ValueError, match="unknown mesh axes"):
    sharding.make_mesh({"model": 8})


def test_every_parameter_is_sharded_by_a_rule_and_unknown_names_fail():
  model = LlamaRewardModel(PRESETS["tiny"])
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  sh = sharding.logical_shardings(abstract, mesh, sharding.DEFAULT_RULES)
  q = sh["params"]["model"]["layers"]["0"]["self_attn"]["q_proj"]["kernel"]
  assert q.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  rules = tuple(r for r in sharding.DEFAULT_RULES if r[0] != "mlp")
  with pytest.raises(ValueError, match="'mlp'"):
    sharding.logical_shardings(abstract, mesh, rules)


def test_sharded_forward_equals_single_device():
  cfg = PRESETS["tiny"]
  model = LlamaRewardModel(cfg, num_labels=2)
  ids = np.random.RandomState(0).randint(3, 256, size=(8, 24)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[::2, 17:] = 0
  params = nn.unbox(model.init(jax.random.key(0), ids))
  ref = np.asarray(model.apply(params, ids, mask))

  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  abstract = jax.eval_shape(model.init, jax.random.key(0), ids)
  p_sh = sharding.logical_shardings(abstract, mesh, sharding.DEFAULT_RULES)
  b_sh = sharding.batch_sharding(mesh)
  params_s = jax.device_put(params, p_sh)
  assert len(params_s["params"]["model"]["embed_tokens"]["embedding"].sharding.device_set) == 8

  def fwd(p, i, m):
    with nn.logical_axis_rules(sharding.DEFAULT_RULES):
      return model.apply(p, i, m)
  with jax.set_mesh(mesh):
    out = jax.jit(fwd)(params_s, jax.device_put(ids, b_sh), jax.device_put(mask, b_sh))
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=0)

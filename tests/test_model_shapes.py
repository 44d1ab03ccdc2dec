"""Full-size configs checked by `jax.eval_shape`: parameter counts without allocating anything."""
import math

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaConfig, LlamaForCausalLM, LlamaRewardModel


def _count(module, scan=False):
  shapes = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 8), np.int32))
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(nn.unbox(shapes)))


@pytest.mark.parametrize("name,expected", [("llama3_8b", 8_030_261_248),
                                           ("llama3_70b", 70_553_706_496),
                                           ("smollm2_135m", 134_515_008)])
def test_parameter_counts(name, expected):
  cfg = PRESETS[name]
  assert _count(LlamaForCausalLM(cfg)) == expected == cfg.num_params
  # Scanned layers hold the same parameters, stacked.
  assert _count(LlamaForCausalLM(cfg.replace(scan_layers=True))) == expected


def test_reward_head_replaces_lm_head():
  cfg = PRESETS["llama3_8b"]
  n = _count(LlamaRewardModel(cfg, num_labels=5))
  assert n == cfg.num_params - cfg.vocab_size * cfg.hidden_size + 5 * cfg.hidden_size


def test_config_from_hf_both_layouts():
  v4 = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 256, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
  v5 = dict(v4)
  v5["rope_parameters"] = dict(v5.pop("rope_scaling"), rope_theta=v5.pop("rope_theta"))
  a, b = LlamaConfig.from_hf(v4), LlamaConfig.from_hf(v5)
  assert a == b and a.rope_theta == 500000.0 and a.rope_scaling["factor"] == 8.0
  assert a.head_dim == 16


def test_config_rejects_what_it_cannot_run():
  with pytest.raises(ValueError, match="not a multiple"):
    LlamaConfig(num_attention_heads=6, num_key_value_heads=4)
  with pytest.raises(NotImplementedError, match="yarn"):
    LlamaConfig(rope_scaling={"rope_type": "yarn", "factor": 4.0})
  with pytest.raises(ValueError, match="model_type"):
    LlamaConfig.from_hf({"model_type": "mistral"})

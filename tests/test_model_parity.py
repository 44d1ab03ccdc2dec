"""Golden parity against transformers' PyTorch Llama on tiny random configs.

Tolerances (float32): logits and rewards within 1e-4 absolute of transformers; the HF -> ours ->
HF round trip is exact (bitwise); padding invariance within 1e-5.
"""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from helpsteer_jax.export import export_hf
from helpsteer_jax.models import (PRESETS, LlamaForCausalLM, LlamaRewardModel, load_pretrained)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.needs_torch

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
CONFIGS = {
    "gqa_untied": PRESETS["tiny"],
    "mha_tied": PRESETS["tiny"].replace(num_key_value_heads=4, tie_word_embeddings=True),
    "gqa_llama3_rope": PRESETS["tiny"].replace(rope_scaling=LLAMA3_ROPE, rope_theta=500000.0),
    "mqa_head_dim": PRESETS["tiny"].replace(num_key_value_heads=1, head_dim=32),
}
ATOL = 1e-4


def _randomise(module, seed):
  """Weights far from init (N(0, 0.2), norms around 1) so parity is tested on large values."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      if name.endswith("norm.weight"):
        p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
      else:
        p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _hf_model(cfg, cls, tmp_path, seed=0, **extra):
  hf_cfg = transformers.LlamaConfig(**cfg.to_hf(), **extra)
  torch.manual_seed(seed)
  m = cls(hf_cfg).eval()
  _randomise(m, seed)
  m.save_pretrained(tmp_path)
  return m


def _ids(batch, length, seed=0, low=3):
  return np.random.RandomState(seed).randint(low, 256, size=(batch, length)).astype(np.int32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_causal_lm_logits_match_transformers(name, tmp_path):
  cfg = CONFIGS[name]
  hf = _hf_model(cfg, transformers.LlamaForCausalLM, tmp_path)
  pre = load_pretrained(str(tmp_path), tokenizer=False)
  ids = _ids(2, 48)
  with torch.no_grad():
    ref = hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()
  ours = np.asarray(jax.jit(LlamaForCausalLM(pre.config).apply)({"params": pre.causal_lm_params()},
                                                                ids))
  assert np.abs(ref).max() > 1.0  # the comparison is on non-trivial values
  np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reward_matches_sequence_classification(name, tmp_path):
  cfg = CONFIGS[name]
  hf = _hf_model(cfg, transformers.LlamaForSequenceClassification, tmp_path, num_labels=5)
  pre = load_pretrained(str(tmp_path), tokenizer=False)
  assert pre.num_labels == 5
  # Right padding with pad id 0 (never a real token here), as HF finds the last non-pad token.
  ids = _ids(3, 40, seed=1)
  mask = np.ones_like(ids)
  for row, n in enumerate((40, 31, 17)):
    ids[row, n:] = 0
    mask[row, n:] = 0
  with torch.no_grad():
    ref = hf(torch.tensor(ids, dtype=torch.long),
             attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()
  ours = np.asarray(jax.jit(LlamaRewardModel(pre.config, num_labels=5).apply)(
      {"params": pre.reward_params()}, ids, mask))
  assert ours.shape == (3, 5)
  np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("task,cls", [("causal_lm", "LlamaForCausalLM"),
                                      ("reward", "LlamaForSequenceClassification")])
def test_hf_round_trip_is_exact(task, cls, tmp_path):
  cfg = CONFIGS["gqa_untied"]
  extra = {"num_labels": 3} if task == "reward" else {}
  hf = _hf_model(cfg, getattr(transformers, cls), tmp_path / "in", **extra)
  pre = load_pretrained(str(tmp_path / "in"), tokenizer=False)
  export_hf(pre.params, pre.config, tmp_path / "out", task=task)
  back = getattr(transformers, cls).from_pretrained(tmp_path / "out").eval()
  a, b = hf.state_dict(), back.state_dict()
  assert sorted(a) == sorted(b)
  for k in a:
    assert torch.equal(a[k], b[k]), k
  assert back.config.num_labels == (3 if task == "reward" else 2)


def test_scanned_layers_round_trip_and_logits(tmp_path):
  cfg = CONFIGS["gqa_untied"]
  hf = _hf_model(cfg, transformers.LlamaForCausalLM, tmp_path / "in")
  pre = load_pretrained(str(tmp_path / "in"), tokenizer=False, scan_layers=True,
                        remat_policy="full")
  assert pre.params["model"]["layers"]["self_attn"]["q_proj"]["kernel"].shape == (2, 64, 64)
  ids = _ids(2, 24)
  with torch.no_grad():
    ref = hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()
  ours = jax.jit(LlamaForCausalLM(pre.config).apply)({"params": pre.causal_lm_params()}, ids)
  np.testing.assert_allclose(np.asarray(ours), ref, atol=ATOL, rtol=0)
  export_hf(pre.params, pre.config, tmp_path / "out", task="causal_lm")
  back = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out")
  for k, v in hf.state_dict().items():
    assert torch.equal(v, back.state_dict()[k]), k


def test_reward_invariant_to_padding_side_and_batch(tmp_path):
  cfg = CONFIGS["gqa_llama3_rope"]
  _hf_model(cfg, transformers.LlamaForSequenceClassification, tmp_path, num_labels=1)
  pre = load_pretrained(str(tmp_path), tokenizer=False)
  apply = jax.jit(LlamaRewardModel(pre.config).apply)
  p = {"params": pre.reward_params()}
  seq = _ids(1, 21, seed=3)[0]
  other = _ids(1, 33, seed=4)[0]
  # pad == eos == 2 and the sequence itself ends in that id: the mask, not the ids, decides.
  seq[-1] = 2
  alone = np.asarray(apply(p, seq[None], np.ones((1, 21), np.int32)))[0]
  for side in ("right", "left"):
    ids = np.full((2, 33), 2, np.int32)
    mask = np.zeros((2, 33), np.int32)
    ids[1], mask[1] = other, 1
    if side == "right":
      ids[0, :21], mask[0, :21] = seq, 1
    else:
      ids[0, -21:], mask[0, -21:] = seq, 1
    batched = np.asarray(apply(p, ids, mask))[0]
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0, err_msg=side)


def test_bfloat16_compute_close_to_float32(tmp_path):
  cfg = CONFIGS["gqa_untied"]
  _hf_model(cfg, transformers.LlamaForCausalLM, tmp_path)
  pre = load_pretrained(str(tmp_path), tokenizer=False)
  ids = _ids(2, 16)
  f32 = jax.jit(LlamaForCausalLM(pre.config).apply)({"params": pre.causal_lm_params()}, ids)
  bf16 = jax.jit(LlamaForCausalLM(pre.config.replace(dtype="bfloat16")).apply)(
      {"params": pre.causal_lm_params()}, ids)
  assert bf16.dtype == jnp.float32  # logits are returned in float32
  # bf16 has 8 bits of mantissa: agreement to a few percent of the logit scale.
  scale = float(jnp.abs(f32).max())
  assert float(jnp.abs(bf16 - f32).max()) < 0.05 * scale
  assert float(jnp.abs(bf16 - f32).max()) > 0  # it really ran in bf16

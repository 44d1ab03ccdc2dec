"""LoRA: zero adapters change nothing, only adapters and the reward head train, export merges.

A tiny random Llama reward model (SmolLM2's tokenizer) is written as a Hugging Face directory and
used as the pretrained start, so "before" is known exactly.

Tolerances: zero adapters add exact zeros, so rewards are bitwise equal; a frozen parameter is
bitwise unchanged after training; the merged model (W + s A B in float32) against the unmerged
one, both ours, within 1e-6; transformers on the merged export against our unmerged model within
1e-5 (float32 through XLA and PyTorch, rewards of order 0.1 here).
"""
import functools
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import export
from helpsteer_jax.models import PRESETS, LlamaForCausalLM, LlamaRewardModel, convert, lora
from helpsteer_jax.runs import load_model, run_config
from helpsteer_jax.train import train
from helpsteer_jax.training.checkpoint import restore_params
from helpsteer_jax.training.optimizer import make_optimizer, restrict, trainable_mask
from helpsteer_jax.training.state import abstract_state
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["What is 2+2? The answer is 4.", "Name a colour. Blue is a colour; so is green.",
         "Say something long. " * 12, "Hi."]


def _config(name: str, arg: str = "tiny"):
  return launch.load_config(f"{REPO}/experiments/{name}.py:{arg}")


def _ids(tok):
  enc = tok(TEXTS, padding=True, return_tensors="np")
  return np.asarray(enc["input_ids"]), np.asarray(enc["attention_mask"])


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, smollm2_tokenizer):
  tok = smollm2_tokenizer
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
  params = nn.unbox(LlamaRewardModel(cfg, 1).init(jax.random.key(3), np.zeros((1, 4), np.int32)))
  out = tmp_path_factory.mktemp("base")
  export.export_hf(params["params"], cfg, out, task="reward", tokenizer=tok)
  return out


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, smollm2_tokenizer):
  """The same kind of tiny model as a causal LM (the start of DPO and RL)."""
  tok = smollm2_tokenizer
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
  params = nn.unbox(LlamaForCausalLM(cfg).init(jax.random.key(4), np.zeros((1, 4), np.int32)))
  out = tmp_path_factory.mktemp("lm")
  export.export_hf(params["params"], cfg, out, task="causal_lm", tokenizer=tok)
  return out


@pytest.fixture(scope="module")
def lora_run(base_dir, tmp_path_factory):
  """Three steps of Scaled BT with rank-4 adapters on every projection, from `base_dir`."""
  c = _config("scaled_bt")
  c.model.source = str(base_dir)
  c.model.lora_rank, c.model.lora_alpha = 4, 8.0
  c.optim.lr, c.optim.warmup_steps = 1e-2, 1  # large steps: the adapters move visibly
  c.train.steps = 3
  c.mesh.data = 1
  workdir = tmp_path_factory.mktemp("lora_run")
  train(c, str(workdir))
  return workdir


def test_zero_adapters_leave_the_rewards_unchanged(base_dir, smollm2_tokenizer):
  pre = load_model(str(base_dir))
  cfg = pre.config.replace(lora_rank=4, lora_targets="q_proj,v_proj,down_proj")
  with_adapters = lora.add_adapters(pre.params, cfg, np.random.default_rng(0))
  flat = dict(convert.flatten(with_adapters))
  assert {p[-2] for p in flat if lora.is_adapter(p)} == {"q_proj", "v_proj", "down_proj"}
  a = flat[("model", "layers", "0", "self_attn", "q_proj", "lora_a")]
  b = flat[("model", "layers", "0", "self_attn", "q_proj", "lora_b")]
  assert a.shape == (64, 4) and b.shape == (4, 64) and np.any(a) and not np.any(b)
  # The model's own init has the same layout (what a fresh preset run starts from).
  init = nn.unbox(LlamaRewardModel(cfg, 1).init(jax.random.key(0), np.zeros((1, 4), np.int32)))
  assert jax.tree_util.tree_structure(init["params"]) == jax.tree_util.tree_structure(
      with_adapters)
  ids, mask = _ids(smollm2_tokenizer)
  plain = jax.jit(LlamaRewardModel(pre.config, 1).apply)({"params": pre.params}, ids, mask)
  adapted = jax.jit(LlamaRewardModel(cfg, 1).apply)({"params": with_adapters}, ids, mask)
  np.testing.assert_array_equal(np.asarray(adapted), np.asarray(plain))


def test_adapters_off_is_the_start_model(base_dir, smollm2_tokenizer):
  pre = load_model(str(base_dir))
  cfg = pre.config.replace(lora_rank=4)
  params = lora.add_adapters(pre.params, cfg, np.random.default_rng(0))
  params = jax.tree_util.tree_map_with_path(  # adapters that have trained: B non-zero
      lambda p, x: x + 0.5 if p[-1].key == "lora_b" else x, params)
  ids, mask = _ids(smollm2_tokenizer)
  model = LlamaRewardModel(cfg, 1)
  plain = jax.jit(LlamaRewardModel(pre.config, 1).apply)({"params": pre.params}, ids, mask)
  assert not np.allclose(jax.jit(model.apply)({"params": params}, ids, mask), plain)
  off = jax.jit(model.apply)({"params": lora.adapters_off(params)}, ids, mask)
  np.testing.assert_array_equal(np.asarray(off), np.asarray(plain))


def test_only_adapters_and_head_train(base_dir, lora_run):
  base = load_model(str(base_dir)).params
  saved = restore_params(lora_run)
  flat_base = dict(convert.flatten(base))
  moved = {"lora_b": 0, "score": 0}
  for path, value in convert.flatten(saved):
    if lora.is_adapter(path):
      moved["lora_b"] += path[-1] == "lora_b" and bool(np.any(value))
    elif path[0] == "score":
      moved["score"] += not np.array_equal(value, flat_base[path])
    else:
      np.testing.assert_array_equal(value, flat_base[path], err_msg="/".join(path))
  assert moved["lora_b"] == 2 * 7 and moved["score"] == 1  # every adapter of both layers


def test_lora_state_keeps_moments_for_adapters_and_head_only():
  c = _config("scaled_bt")
  cfg = PRESETS["tiny"].replace(lora_rank=4)
  model = LlamaRewardModel(cfg, 1)
  init = lambda r: model.init(r, np.zeros((1, 4), np.int32))["params"]
  tx = restrict(make_optimizer(c.optim), functools.partial(trainable_mask, adapters_only=True))
  state = abstract_state(init, tx)
  size = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))
  params = dict(convert.flatten(state.params))
  trained = sum(int(np.prod(v.shape)) for p, v in params.items()
                if lora.is_adapter(p) or p[0] == "score")
  assert trained < size(state.params) / 10
  moments = [x for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim]  # not the counts
  assert sum(int(np.prod(x.shape)) for x in moments) == 2 * trained  # AdamW's mu and nu


def test_merged_export_equals_the_unmerged_model_in_transformers(lora_run, tmp_path,
                                                                smollm2_tokenizer):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  saved = restore_params(lora_run)
  model = run_config(lora_run).model
  cfg = load_model(str(lora_run), tokenizer=False).config  # merged: a plain Llama
  assert cfg.lora_rank == 0
  lora_cfg = cfg.replace(lora_rank=model.lora_rank, lora_alpha=model.lora_alpha,
                         lora_targets=model.lora_targets)
  ids, mask = _ids(smollm2_tokenizer)
  unmerged = np.asarray(jax.jit(LlamaRewardModel(lora_cfg, 1).apply)({"params": saved}, ids,
                                                                     mask))[:, 0]
  merged_params = lora.merge(saved, lora_cfg)
  assert not lora.has_adapters(merged_params)
  merged = np.asarray(jax.jit(LlamaRewardModel(cfg, 1).apply)({"params": merged_params}, ids,
                                                               mask))[:, 0]
  np.testing.assert_allclose(merged, unmerged, rtol=0, atol=1e-6)
  assert np.ptp(unmerged) > 100 * 1e-5  # distinct rewards: the comparison below can fail

  out = tmp_path / "hf"
  export.main(["--model", str(lora_run), "--out", str(out), "--task", "reward"])
  from safetensors import safe_open
  with safe_open(str(out / "model.safetensors"), "np") as f:
    assert not any("lora" in k for k in f.keys())
  assert "lora" not in (out / "config.json").read_text()
  hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  tok = transformers.AutoTokenizer.from_pretrained(out)
  rows = []
  with torch.no_grad():  # one sequence at a time: transformers reads the last non-pad token
    for text in TEXTS:
      e = tok([text], return_tensors="pt")
      rows.append(float(hf(**e).logits[0, 0]))
  np.testing.assert_allclose(np.asarray(rows), unmerged, rtol=0, atol=1e-5)
  card = json.loads((out / "config.json").read_text())
  assert card["architectures"] == ["LlamaForSequenceClassification"]


@pytest.mark.slow
def test_lora_dpo_trains_the_policy_adapters_only(lm_dir, tmp_path):
  c = _config("dpo")
  c.model.source = str(lm_dir)
  c.model.lora_rank = 4
  c.data.max_length = c.data.pad_to_multiple_of = 160
  c.data.max_train_examples, c.data.batch_size = 4, 2
  c.data.eval, c.data.max_eval_examples, c.data.eval_batch_size = c.data.train, 4, 4
  c.optim.lr, c.optim.warmup_steps = 1e-2, 1
  c.train.steps = 3
  c.mesh.data = 1
  out = train(c, str(tmp_path))
  # The reference is the policy with its adapters off: at step 0 they are the same model, so
  # every implicit reward is 0 (loss log 2, strict accuracy 0), as with a reference copy.
  before, after = out["eval_before"], out["eval_after"]
  assert before["accuracy"] == 0.0 and before["loss"] == pytest.approx(np.log(2), abs=1e-5)
  assert after["loss"] < before["loss"]
  saved = restore_params(tmp_path)
  assert set(saved) == {"policy"}  # no second copy of the frozen weights
  base = dict(convert.flatten(load_model(str(lm_dir)).causal_lm_params()))
  for path, value in convert.flatten(saved["policy"]):
    if path[-1] == "lora_b":
      assert np.any(value), "/".join(path)
    elif path[-1] != "lora_a":
      np.testing.assert_array_equal(value, base[path], err_msg="/".join(path))
  # The workdir loads as a plain causal LM, the policy's adapters merged.
  pre = load_model(str(tmp_path), tokenizer=False)
  assert pre.config.lora_rank == 0 and not lora.has_adapters(pre.params)


@pytest.mark.slow
def test_lora_rl_trains_the_policy_adapters_only(lm_dir, tmp_path):
  from helpsteer_jax.rlhf.train import train as rl_train
  c = _config("reinforce")
  c.policy.source = str(lm_dir)
  c.policy.lora_rank = 4
  c.optim.lr = 1e-2
  c.train.steps = 2
  out = rl_train(c, str(tmp_path))
  assert out["step"] == 2
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  kl = [r["train/kl"] for r in rows if "train/kl" in r]
  assert kl[0] == 0.0 and kl[1] != 0.0  # the reference is the start, the policy moved away
  base = dict(convert.flatten(load_model(str(lm_dir)).causal_lm_params()))
  moved = 0
  for path, value in convert.flatten(restore_params(tmp_path)):
    if lora.is_adapter(path):
      moved += path[-1] == "lora_b" and bool(np.any(value))
    else:
      np.testing.assert_array_equal(value, base[path], err_msg="/".join(path))
  assert moved > 0

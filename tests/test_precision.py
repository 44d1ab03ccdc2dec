"""Precision: bf16 compute with float32 master weights, float32 rewards, weight decay by name.

- A checkpoint-sourced model asked for `dtype=bfloat16` computes in bf16 (its config and its dots)
  while its parameters, and so the AdamW state built from them, stay float32; the same through
  the reward-model trainer's `build_model`, the RLHF `build_policy`, `evaluate --dtype` and a
  training workdir.
- The reward head reads a float32 final hidden state through a float32 dot, so two rewards that
  bf16 would round to one value stay apart (exact values below).
- Weight decay reaches kernels and embeddings, never norm weights, whether layers are scanned
  (norm weights [L, D]) or not.
"""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaForCausalLM, LlamaRewardModel, convert
from word_tokenizer import word_tokenizer

TINY = PRESETS["tiny"]  # vocab 256, pad 0, bos 1, eos 2


def _tiny_tokenizer():
  """A word-level tokenizer over TINY's 256 ids with a chat template (no files, no network)."""
  return word_tokenizer(TINY.vocab_size)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
  """A tiny random LlamaForCausalLM written as a Hugging Face directory (safetensors, float32)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("tiny_lm")
  params = nn.unbox(jax.jit(LlamaForCausalLM(TINY).init)(jax.random.key(0),
                                                         np.zeros((1, 4), np.int32)))
  save_file(convert.to_hf_state_dict(params["params"]), str(out / "model.safetensors"))
  hf = {**TINY.to_hf(), "architectures": ["LlamaForCausalLM"]}
  (out / "config.json").write_text(json.dumps(hf))
  _tiny_tokenizer().save_pretrained(str(out))
  return out


def _leaf_dtypes(tree) -> set:
  return {np.asarray(x).dtype for x in jax.tree_util.tree_leaves(tree)}


def _dot_operand_dtypes(fn, *args) -> set:
  """Operand dtypes of every dot_general in fn's jaxpr (nested jaxprs included)."""
  out = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        out.add(tuple(str(v.aval.dtype) for v in eqn.invars))
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return out


def _model_cfg(source, **kw) -> ml_collections.ConfigDict:
  fields = dict(source=str(source), num_labels=1, dtype="bfloat16", remat_policy="none",
                scan_layers=False, low_precision_dots="f32_accumulate")
  return ml_collections.ConfigDict({**fields, **kw})


# ----------------------------------------------------------------------------- defect 1
@pytest.mark.parametrize("scan", [False, True])
def test_build_model_from_checkpoint_computes_bf16_with_float32_params(lm_dir, scan):
  from helpsteer_jax import runs  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training.model_setup import reward_model  # pylint: disable=g-import-not-at-top
  model_cfg = _model_cfg(lm_dir, scan_layers=scan)
  built = reward_model(model_cfg, *runs.start_model(model_cfg))
  assert built.config.dtype == "bfloat16"
  assert built.config.low_precision_dots == "f32_accumulate"
  assert built.config.scan_layers == scan
  # Master weights float32 (and the AdamW moments, which are zeros_like of them).
  assert _leaf_dtypes(built.pretrained) == {np.dtype(np.float32)}
  # The projections really run as bf16 dots (f32_accumulate: bf16 operands).
  ids = jnp.asarray([[5, 6, 7, 8]], jnp.int32)
  dots = _dot_operand_dtypes(lambda p: built.model.apply({"params": p}, ids), built.pretrained)
  assert ("bfloat16", "bfloat16") in dots


def test_rlhf_policy_from_checkpoint_computes_bf16_with_float32_params(lm_dir):
  from helpsteer_jax.rlhf.train import build_policy  # pylint: disable=g-import-not-at-top
  policy = build_policy(_model_cfg(lm_dir))
  assert policy.config.dtype == "bfloat16" and policy.model.cfg.dtype == "bfloat16"
  assert policy.config.low_precision_dots == "f32_accumulate"
  assert _leaf_dtypes(policy.pretrained) == {np.dtype(np.float32)}


def test_load_pretrained_dtype_is_compute_and_storage_is_separate(lm_dir):
  from helpsteer_jax.models import load_pretrained  # pylint: disable=g-import-not-at-top
  pre = load_pretrained(str(lm_dir), dtype="bfloat16", tokenizer=False)
  assert pre.config.dtype == "bfloat16"
  assert _leaf_dtypes(pre.params) == {np.dtype(np.float32)}
  # Storage only when asked for by its own name; the compute dtype is then untouched.
  small = load_pretrained(str(lm_dir), storage_dtype="bfloat16", tokenizer=False)
  assert small.config.dtype == "float32"
  assert _leaf_dtypes(small.params) == {np.dtype(jnp.bfloat16)}


def test_evaluate_dtype_reaches_the_config(lm_dir, tmp_path, monkeypatch):
  from helpsteer_jax import runs  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.evaluation import pair_eval  # pylint: disable=g-import-not-at-top
  # A reward-model checkpoint: the LM above with a head, written as a sequence classifier.
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  rm = tmp_path / "rm"
  rm.mkdir()
  state = load_file(str(lm_dir / "model.safetensors"))
  state = {k: v for k, v in state.items() if not k.startswith("lm_head")}
  state["score.weight"] = np.random.default_rng(0).normal(0, 0.5, (1, TINY.hidden_size)).astype(
      np.float32)
  save_file(state, str(rm / "model.safetensors"))
  hf = json.loads((lm_dir / "config.json").read_text())
  hf.update(architectures=["LlamaForSequenceClassification"], num_labels=1)
  (rm / "config.json").write_text(json.dumps(hf))
  _tiny_tokenizer().save_pretrained(str(rm))
  data = tmp_path / "pairs.jsonl"
  data.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}", "chosen": f"w{i + 2}",
                                      "rejected": f"w{i + 3} w{i + 4}"}) + "\n" for i in range(3)))
  loaded = []
  real = runs.load_model

  def spy(*args, **kwargs):
    loaded.append(real(*args, **kwargs))
    return loaded[-1]

  monkeypatch.setattr(runs, "load_model", spy)
  results = pair_eval.evaluate(pair_eval.EvalConfig(
      model=str(rm), data=str(data), output=str(tmp_path / "out"), mode="pairwise",
      dtype="bfloat16", progress=False))
  assert results["pairs"]["scored"] == 3  # the model ran on every pair
  (pre,) = loaded
  assert pre.config.dtype == "bfloat16"
  assert _leaf_dtypes(pre.params) == {np.dtype(np.float32)}


def test_workdir_runtime_dtype_is_compute_not_storage(tmp_path):
  from helpsteer_jax.training.configs import get_base_config  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training import checkpoint  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training.optimizer import make_optimizer  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training.state import TrainState  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.runs import load_model  # pylint: disable=g-import-not-at-top
  c = get_base_config("bt", "tiny")
  c.model.tokenizer = ""  # the preset's own 256-token vocabulary
  (tmp_path / "config.json").write_text(c.to_json_best_effort(indent=2))
  model = LlamaRewardModel(TINY, num_labels=1)
  params = nn.unbox(model.init(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  tx = make_optimizer(c.optim)
  state = TrainState(step=jnp.ones((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32))
  ckpt = checkpoint.Checkpointer(tmp_path, every=1, keep=1)
  ckpt.save(1, state, {}, force=True)
  ckpt.close()
  pre = load_model(tmp_path, dtype="bfloat16", tokenizer=False)
  assert pre.config.dtype == "bfloat16"
  assert _leaf_dtypes(pre.params) == {np.dtype(np.float32)}


# ----------------------------------------------------------------------------- defect 3
def _reward_params_with_controlled_hidden_state(cfg, head):
  """Layers that add nothing (o_proj, down_proj = 0), unit norm weights, token t's embedding
  = ±1 per the sign table below: the final hidden state of a sequence is exactly the ±1 embedding
  of its last token (rms 1, eps 0), which bf16 holds exactly."""
  model = LlamaRewardModel(cfg, num_labels=1)
  p = nn.unbox(jax.jit(model.init)(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  p = jax.tree_util.tree_map(np.array, p)
  for i in range(cfg.num_hidden_layers):
    layer = p["model"]["layers"][str(i)]
    layer["self_attn"]["o_proj"]["kernel"][:] = 0.0
    layer["mlp"]["down_proj"]["kernel"][:] = 0.0
  p["model"]["norm"]["weight"][:] = 1.0
  emb = np.ones((cfg.vocab_size, cfg.hidden_size), np.float32)
  emb[4, 0] = -1.0  # token 4's hidden state differs from token 3's in component 0 only
  p["model"]["embed_tokens"]["embedding"] = emb
  p["score"]["kernel"] = head[:, None].astype(np.float32)
  return model, p


def test_bf16_rewards_are_float32_and_keep_close_pairs_apart():
  d = TINY.hidden_size
  # r = k . h with k = 2 everywhere but k_0 = 2^-7: token 3 (h = +1) scores 2(d-1) + 2^-7 =
  # 126.0078125 and token 4 (h_0 = -1) 126 - 2^-7 = 125.9921875. bf16's spacing at 126 is 0.5,
  # so a bf16 head rounds both to 126.0 (a tie); float32 holds both exactly.
  head = np.full(d, 2.0, np.float32)
  head[0] = 2.0 ** -7
  want = np.asarray([2.0 * (d - 1) + 2.0 ** -7, 2.0 * (d - 1) - 2.0 ** -7], np.float32)
  ids = np.asarray([[7, 8, 3], [7, 8, 4]], np.int32)
  for low in ("xla", "f32_accumulate"):
    cfg = TINY.replace(dtype="bfloat16", low_precision_dots=low, rms_norm_eps=0.0,
                       num_hidden_layers=1)
    model, params = _reward_params_with_controlled_hidden_state(cfg, head)
    # Eager, op by op, on purpose: under jit XLA:CPU may keep a bf16 dot's float32 result through
    # the cast after it (excess precision), which would hide a bf16 head.
    r = model.apply({"params": params}, ids)
    assert r.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(r)[:, 0], want)  # exact: every step is exact
    # The packed path reads the same hidden states through the same head.
    seg = np.asarray([[1, 1, 1, 2, 2, 2]], np.int32)
    packed = model.apply({"params": params}, ids.reshape(1, 6), seg, np.asarray([[2, 5]]),
                         method=LlamaRewardModel.packed)
    assert packed.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(packed)[0, :, 0], want)


# ----------------------------------------------------------------------------- defect 2
def _moved_by_decay(scan: bool) -> dict[str, bool]:
  """{parameter name (layer index dropped): whether one AdamW step with zero gradients and
  weight decay moves it}, through the optimizer the trainers build."""
  from helpsteer_jax.training.configs import get_base_config  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training.optimizer import make_optimizer  # pylint: disable=g-import-not-at-top
  optim = get_base_config("bt", "tiny").optim
  optim.update(lr=0.5, weight_decay=0.1, warmup_steps=0, grad_clip=0.0)
  tx = make_optimizer(optim)
  cfg = TINY.replace(scan_layers=scan)
  model = LlamaRewardModel(cfg, num_labels=1)
  boxed = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
  jax.eval_shape(tx.init, boxed)  # the trainers' state init sees boxed (logical-axis) leaves
  params = nn.unbox(boxed)
  step = jax.jit(lambda p: tx.update(jax.tree_util.tree_map(jnp.zeros_like, p), tx.init(p), p)[0])
  updates = step(params)
  moved = {}
  for path, u in convert.flatten(updates):
    name = "/".join(n for n in path if not n.isdigit())
    moved.setdefault(name, set()).add(bool(np.any(np.asarray(u) != 0)))
  assert all(len(v) == 1 for v in moved.values())  # every layer alike
  return {k: v.pop() for k, v in moved.items()}


def test_weight_decay_spares_norms_scanned_or_not():
  flat, scanned = _moved_by_decay(False), _moved_by_decay(True)
  assert flat == scanned
  norms = {k for k in flat if "norm" in k}
  assert norms == {"model/layers/input_layernorm/weight",
                   "model/layers/post_attention_layernorm/weight", "model/norm/weight"}
  assert not any(flat[k] for k in norms)
  assert all(flat[k] for k in flat if k not in norms)  # kernels, embedding, reward head
  assert "model/embed_tokens/embedding" in flat and "score/kernel" in flat


def test_weight_decay_refuses_an_unknown_parameter():
  from helpsteer_jax.training.optimizer import decay_mask  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="gate/offset"):
    decay_mask({"gate": {"offset": np.zeros(3)}})

"""RLOO REINFORCE: advantages, KL, learning a programmatic reward, and the :tiny config end to end.

The learning test: a tiny random Llama (vocab 256) starts near-uniform, so the reward "fraction of
response tokens in ids 16..31" starts at about 16/256 = 0.0625 (the std of a step's mean over
8 prompts x 4 samples x 16 tokens is ~0.011). With LR 3e-3 it reaches ~0.6 after 30 steps at this
seed; the test asks the mean of the last 5 steps to beat the first 5 by 0.2 (~18 noise stds).
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from helpsteer_jax.models import PRESETS, LlamaForCausalLM
from helpsteer_jax.rlhf import reinforce
from helpsteer_jax.rlhf.generate import SamplingConfig
from helpsteer_jax.rlhf.rewards import token_fraction_reward
from helpsteer_jax.rlhf.train import Learner
from helpsteer_jax.training.state import TrainState
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]


def test_rloo_advantage_is_reward_minus_mean_of_the_others():
  rewards = np.asarray([1.0, 2.0, 4.0, 8.0, -1.0, 0.5, 0.0, 3.0], np.float32)
  k = 4
  expected = []
  for g in rewards.reshape(-1, k):
    for i in range(k):
      expected.append(g[i] - np.mean(np.delete(g, i)))
  np.testing.assert_allclose(np.asarray(reinforce.rloo_advantages(rewards, k)), expected,
                             rtol=0, atol=1e-6)
  # Equal rewards within a prompt: no signal.
  np.testing.assert_array_equal(np.asarray(reinforce.rloo_advantages(np.ones(6), 3)), 0.0)
  with pytest.raises(ValueError, match="k >= 2"):
    reinforce.rloo_advantages(np.ones(4), 1)


def test_kl_zero_for_identical_policies_and_masked_tokens_ignored():
  logp = jnp.asarray([[-1.0, -2.0, -3.0], [-0.5, -0.1, -9.0]])
  mask = jnp.asarray([[1, 1, 0], [1, 0, 0]])
  np.testing.assert_array_equal(np.asarray(reinforce.sequence_kl(logp, logp, mask)), [0.0, 0.0])
  ref = logp - jnp.asarray([[0.1, 0.2, 100.0], [0.3, 100.0, 100.0]])
  np.testing.assert_allclose(np.asarray(reinforce.sequence_kl(logp, ref, mask)), [0.3, 0.3],
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(reinforce.shaped_rewards(jnp.asarray([1.0, 2.0]),
                                                                 jnp.asarray([10.0, 0.0]), 0.01)),
                             [0.9, 2.0], atol=1e-6)


def test_reinforce_loss_sums_response_tokens_and_averages_sequences():
  logp = jnp.asarray([[-1.0, -2.0, -5.0], [-0.5, -0.5, -0.5]])
  mask = jnp.asarray([[1, 1, 0], [1, 1, 1]])
  adv = jnp.asarray([2.0, -1.0])
  loss, _ = reinforce.reinforce_loss(logprobs=logp, advantages=adv, response_mask=mask)
  assert float(loss) == pytest.approx(-(2.0 * -3.0 + -1.0 * -1.5) / 2)
  grad = jax.grad(lambda lp: reinforce.reinforce_loss(logprobs=lp, advantages=adv,
                                                      response_mask=mask)[0])(logp)
  np.testing.assert_allclose(np.asarray(grad), [[-1.0, -1.0, 0.0], [0.5, 0.5, 0.5]])


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_thirty_steps_raise_a_programmatic_reward():
  cfg = PRESETS["tiny"]
  model = LlamaForCausalLM(cfg)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  params = params["params"]
  tx = optax.adam(3e-3)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32))
  ref = jax.tree_util.tree_map(jnp.copy, params)
  rng = np.random.default_rng(0)
  prompts = [rng.integers(3, 256, rng.integers(3, 7)).astype(np.int32) for _ in range(8)]
  sc = SamplingConfig(max_new_tokens=16, temperature=1.0, eos_ids=(), pad_id=0)
  learner = Learner(model, tx, sc, token_fraction_reward(range(16, 32)), k=4, beta=0.01)
  history = []
  for s in range(30):
    state, m = learner.step(state, ref, prompts, [None] * 8,
                            jax.random.fold_in(jax.random.key(1), s))
    history.append(m)
  assert history[0]["kl"] == 0.0  # the first rollout comes from the reference itself
  rewards = np.asarray([m["reward_mean"] for m in history])
  assert rewards[:5].mean() < 0.12
  assert rewards[-5:].mean() > rewards[:5].mean() + 0.2, rewards
  assert all(np.isfinite(m["kl"]) and np.isfinite(m["loss"]) for m in history)
  assert int(state.step) == 30 and int(state.bad_step) == -1


def test_tiny_config_runs_and_checkpoints(tmp_path, smollm2_tokenizer):
  del smollm2_tokenizer
  from helpsteer_jax.rlhf.train import train
  c = launch.load_config(f"{REPO}/experiments/reinforce.py:tiny")
  out = train(c, str(tmp_path))
  assert out["step"] == c.train.steps
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(1, c.train.steps + 1))
  for key in ("reward_mean", "reward_std", "kl", "response_length", "tokens_per_s",
              "gen_tokens_per_s"):
    assert all(np.isfinite(r[f"train/{key}"]) for r in rows), key
  assert rows[0]["train/kl"] == 0.0
  assert (tmp_path / "checkpoints" / str(c.train.steps)).is_dir()


def test_fixed_prompt_evaluation_with_a_monitor_reward_model(tmp_path, smollm2_tokenizer):
  """eval.every: the fixed prompts are answered before training, every N steps and at the end,
  scored by the optimised reward model and by a monitor that is not optimised."""
  del smollm2_tokenizer
  from helpsteer_jax.rlhf.train import train
  c = launch.load_config(f"{REPO}/experiments/reinforce.py:tiny")
  c.eval.update(every=1, max_prompts=8, monitors={"other": "tiny"})
  c.eval.prompts.split = "train"  # short enough for the tiny config's 128-token prompt limit
  train(c, str(tmp_path))
  gens = [json.loads(l) for l in (tmp_path / "eval_generations.jsonl").read_text().splitlines()]
  n = sum(g["step"] == 0 for g in gens)
  assert n >= 2 and [g["step"] for g in gens] == [0] * n + [1] * n + [2] * n
  for g in gens:
    assert isinstance(g["response"], str) and g["tokens"] >= 1
    assert np.isfinite(g["reward"]) and np.isfinite(g["monitor_other"])
  assert all(g["kl"] == 0.0 for g in gens[:n])  # before training the policy is the reference
  # The monitor is another reward model: its scores are not the optimised one's.
  assert any(g["reward"] != g["monitor_other"] for g in gens)
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in rows if "eval/reward_mean" in r]
  assert [r["step"] for r in evals] == [0, 1, 2]
  for r, step in zip(evals, (0, 1, 2)):
    got = [g["monitor_other"] for g in gens if g["step"] == step]
    assert r["eval/monitor_other_mean"] == pytest.approx(np.mean(got), rel=1e-6)


def test_reward_model_reuses_policy_ids_as_its_template_renders_them(smollm2_tokenizer):
  """Same tokenizer: prompt ids + sampled ids (+ the template's end of turn) are exactly the ids of
  the conversation rendered by the chat template, as the reward model was trained on."""
  from helpsteer_jax.rlhf.generate import left_pad
  from helpsteer_jax.rlhf.rewards import RewardModel, Rollout
  tok = smollm2_tokenizer
  rm = RewardModel("tiny", policy_tokenizer=tok, tokenizer="smollm2")
  assert rm.reuse_ids
  messages = [[{"role": "user", "content": "Name a colour."}],
              [{"role": "user", "content": "What is 2+2?"}]]
  replies = ["Blue is a colour.", "It is four"]
  prompt_ids = [tok(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                    add_special_tokens=False)["input_ids"] for m in messages]
  ids, mask = left_pad(prompt_ids, tok.pad_token_id)
  # Row 0 ended with the EOS (<|im_end|>); row 1 was cut at max_new_tokens (no EOS).
  resp = [tok(replies[0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
          tok(replies[1], add_special_tokens=False)["input_ids"]]
  n = max(len(r) for r in resp) + 2
  tokens = np.full((2, n), tok.pad_token_id, np.int32)
  rmask = np.zeros((2, n), np.int32)
  for r, seq in enumerate(resp):
    tokens[r, :len(seq)], rmask[r, :len(seq)] = seq, 1
  rollout = Rollout(messages, ids, mask, tokens, rmask, tok)
  got = rm.sequences(rollout)
  for m, reply, seq in zip(messages, replies, got):
    text = tok.apply_chat_template(m + [{"role": "assistant", "content": reply}], tokenize=False)
    np.testing.assert_array_equal(seq, tok(text, add_special_tokens=False)["input_ids"])
  assert rollout.response_texts() == replies
  scores = rm(rollout)
  assert scores.shape == (2,) and np.all(np.isfinite(scores))


# ----------------------------------------------------------------------------- sampling log-probs
# Tolerance: per-token log-probs of the cached sampler and the full forward agree within 1e-5
# (tests/test_generate.py); a sequence sums 8 of them and |A| <= 2, hence 2e-4 on the loss and
# 1e-4 on the KL.
_SC = SamplingConfig(max_new_tokens=8, temperature=0.7, top_k=20, top_p=0.8, eos_ids=(), pad_id=0)


def _tiny_rollout(sc):
  from helpsteer_jax.rlhf.generate import generate, left_pad
  cfg = PRESETS["tiny"]
  model = LlamaForCausalLM(cfg)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  params = params["params"]
  # Sharpen the near-uniform random model so that top-k and the nucleus both cut.
  params["lm_head"] = {"kernel": params["lm_head"]["kernel"] * 8.0}
  prompts = [np.asarray([5, 6, 7, 8], np.int32), np.asarray([9, 10, 11], np.int32)]
  rows = [s for s in prompts for _ in range(2)]  # k = 2, as Learner.step lays them out
  ids, mask = left_pad(rows, sc.pad_id)
  key = jax.random.key(3)
  gen = generate(params, cfg, ids, mask, key, sc)
  full_ids = np.concatenate([ids, np.asarray(gen.tokens)], 1)
  full_mask = np.concatenate([mask, np.asarray(gen.response_mask)], 1)
  return model, params, prompts, key, gen, ids, full_ids, full_mask


def test_objective_differentiates_the_log_probs_the_sampler_drew_with():
  """The REINFORCE objective's log q of each sampled token is the sampler's own (temperature 0.7,
  top-k, top-p): loss = −mean A_i Σ_t log q(y_t) with the sampler's log q."""
  from helpsteer_jax.rlhf.train import reinforce_objective
  model, params, _, _, gen, ids, full_ids, full_mask = _tiny_rollout(_SC)
  resp = np.asarray(gen.response_mask)
  p = ids.shape[1]
  adv = np.asarray([1.0, -0.5, 2.0, -1.5], np.float32)
  batch = {"input_ids": full_ids, "attention_mask": full_mask, "advantages": adv,
           "target_mask": np.concatenate([np.zeros((len(adv), p - 1), np.int32), resp], 1)}
  loss, _ = jax.jit(reinforce_objective(model, _SC))(params, batch)
  seq_logq = np.sum(np.asarray(gen.logprobs) * resp, axis=1)
  assert float(loss) == pytest.approx(float(-np.mean(adv * seq_logq)), abs=2e-4)


def test_kl_is_against_the_tempered_unfiltered_reference():
  """The documented choice (rlhf/reinforce.py): KL_i = Σ_t log q(y_t) − log softmax(ref / T)(y_t),
  so with the policy equal to the reference and top-k/top-p on it is the (positive) mass the
  filters cut, not the 0 that untempered log π − log π_ref gives."""
  model, params, prompts, key, gen, ids, full_ids, full_mask = _tiny_rollout(_SC)
  p = ids.shape[1]
  logits = model.apply({"params": params}, full_ids, full_mask)[:, p - 1:-1]
  ref_logp = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits / 0.7, axis=-1)),
                                np.asarray(gen.tokens)[..., None], -1)[..., 0]
  want = np.sum((np.asarray(gen.logprobs) - ref_logp) * np.asarray(gen.response_mask), axis=1)
  assert np.all(np.isfinite(want)) and want.min() > 0.1
  tx = optax.sgd(0.0)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=jax.tree_util.tree_map(jnp.copy, params),
                     opt_state=tx.init(params), rng=jax.random.PRNGKey(0),
                     bad_step=jnp.full((), -1, jnp.int32))
  learner = Learner(model, tx, _SC, lambda rollout: np.zeros(len(rollout.prompt_ids)), k=2,
                    beta=0.1)
  _, m = learner.step(state, params, prompts, [None, None], key)
  assert m["kl"] == pytest.approx(float(want.mean()), abs=1e-4)


def test_training_refuses_greedy_decoding():
  model = LlamaForCausalLM(PRESETS["tiny"])
  with pytest.raises(ValueError, match="temperature must be > 0"):
    Learner(model, optax.sgd(0.0), SamplingConfig(temperature=0.0), lambda r: None, k=2, beta=0.1)


class _Killed(Exception):
  pass


@pytest.mark.slow  # two runs of the :tiny config (about a minute); CI runs it with -m slow
def test_sigterm_saves_the_rl_run_and_a_restart_resumes(tmp_path, smollm2_tokenizer):
  """The RL trainer shares the reward-model trainer's set-up: SIGTERM saves and stops at the end
  of the step, and the same command in the same workdir resumes from there."""
  import os
  import signal
  del smollm2_tokenizer
  from helpsteer_jax.rlhf.train import train
  c = launch.load_config(f"{REPO}/experiments/reinforce.py:tiny")
  c.train.checkpoint_every = 0  # only the SIGTERM save and the final one
  base = token_fraction_reward(range(16, 32))
  calls = []

  def reward(rollout):
    calls.append(1)
    if len(calls) == 1:  # during the first step, as a scheduler's preemption notice would
      os.kill(os.getpid(), signal.SIGTERM)
    return base(rollout)

  def killed(*_):  # where no trainer handles SIGTERM, fail the test instead of the test process
    raise _Killed()

  previous = signal.signal(signal.SIGTERM, killed)
  try:
    out = train(c, str(tmp_path), reward_fn=reward)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert out == {"step": 1, "preempted": True}
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
  out = train(c, str(tmp_path), reward_fn=base)
  assert out["step"] == c.train.steps == 2
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2]


def test_evaluation_prompts_are_the_first_that_fit():
  """A fixed evaluation set of N prompts is the first N that fit the prompt limit: too-long
  prompts before them are skipped (and counted), not counted against N."""
  from helpsteer_jax.rlhf.prompts import encode_prompts

  class Words:  # one token per word; the template adds nothing
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
      return messages[-1]["content"]

    def __call__(self, text, add_special_tokens):
      return {"input_ids": list(range(len(text.split())))}

  prompts = [[{"role": "user", "content": "w " * n}] for n in (9, 2, 9, 3, 4, 9, 1)]
  kept, ids, dropped = encode_prompts(prompts, Words(), max_length=5, limit=3)
  assert [len(i) for i in ids] == [2, 3, 4] and dropped == 2
  assert kept == [prompts[1], prompts[3], prompts[4]]
  kept, ids, dropped = encode_prompts(prompts, Words(), max_length=5)  # no limit: all that fit
  assert [len(i) for i in ids] == [2, 3, 4, 1] and dropped == 3

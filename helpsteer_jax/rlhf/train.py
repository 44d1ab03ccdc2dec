"""RLOO REINFORCE with a KL penalty: the RLHF job.

  python -m helpsteer_jax.rlhf.train --config experiments/reinforce.py:tiny --workdir DIR \
      [--config.key=value ...]

Each step: take `prompts_per_step` prompts, sample `samples_per_prompt` (k) responses to each with
the current policy (rlhf/generate.py), score them with the reward model (or a Python reward
function), subtract β·KL against the frozen reference (the starting policy), compute leave-one-out
advantages and take one policy-gradient step (rlhf/reinforce.py). Reads top to bottom like
helpsteer_jax.train, on the same set-up (training/trainer.py: jax.distributed, mesh, state
resume > pretrained > fresh, checkpoints with the prompt position, SIGTERM saves and exits):
set-up, state, the step, the loop, the end. Metrics (reward mean/std, KL, response length,
tokens/s, MFU) go to metrics.jsonl and `train.trackers` (TensorBoard, W&B), a progress bar to
stderr. With `eval.every` > 0, a fixed set of evaluation prompts (`eval.prompts`) is answered
before training, every `eval.every` steps and at the end (one sampled response each, the same
random key every time), scored by the reward model and by the `eval.monitors` reward models that
are not optimised; metrics go under eval/ and every generation to eval_generations.jsonl.
"""
from __future__ import annotations

import functools
import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from helpsteer_jax import distributed, runs
from helpsteer_jax.models import LlamaForCausalLM, lora
from helpsteer_jax.rlhf import reinforce
from helpsteer_jax.rlhf.generate import (SamplingConfig, eos_ids_of, generate, left_pad,
                                         sampling_logprobs)
from helpsteer_jax.rlhf.prompts import encode_prompts, load_prompts
from helpsteer_jax.rlhf.rewards import JudgeReward, RewardFn, RewardModel, Rollout
from helpsteer_jax.training import launch, metrics_log, trainer
from helpsteer_jax.training.model_setup import BuiltModel, causal_lm
from helpsteer_jax.training.optimizer import make_optimizer, restrict, trainable_mask
from helpsteer_jax.training.state import TrainState
from helpsteer_jax.training.step import COUNT_KEY, train_step


def build_policy(policy_cfg) -> BuiltModel:
  """A preset (random init, for tests) or a pretrained causal LM (smollm2, HF dir, gguf:...).

  The reward-model trainer's loader: runtime settings (compute dtype included) go into the
  config, parameters stay float32.
  """
  return causal_lm(*runs.start_model(policy_cfg))


def reinforce_objective(model: LlamaForCausalLM, sc: SamplingConfig):
  """objective(params, batch) for train_step: the RLOO policy-gradient loss on response tokens.

  The log-probs are those of the distribution that sampled the responses (`sc`'s temperature,
  top-k and top-p: rlhf/generate.py's `sampling_logprobs`), so the gradient is unbiased for it.
  batch: input_ids/attention_mask [B, T] (prompt + response), target_mask [B, T-1] (1 where the
  predicted token t+1 is a response token), advantages [B].
  """

  def objective(params, batch):
    logp = sampling_logprobs(model, params, batch["input_ids"], batch["attention_mask"], sc,
                             tail=sc.max_new_tokens)
    loss, metrics = reinforce.reinforce_loss(logprobs=logp, advantages=batch["advantages"],
                                             response_mask=batch["target_mask"])
    metrics[COUNT_KEY] = jnp.asarray(batch["advantages"].shape[0], jnp.float32)
    return loss, metrics

  return objective


class Learner:
  """Rollout, reward, KL, advantages and one update: everything of a step but the data."""

  def __init__(self, model: LlamaForCausalLM, tx: optax.GradientTransformation,
               sc: SamplingConfig, reward_fn: RewardFn, *, k: int, beta: float,
               grad_accum: int = 1, tokenizer: Any = None, pad_to_multiple_of: int = 1,
               state_sharding: Any = None, batch_sharding: Any = None, trainable: Any = None,
               peak_flops: float = 0.0):
    """`peak_flops`: the mesh's peak FLOP/s (all devices), for the MFU metric; 0 for none."""
    self.model, self.cfg, self.sc, self.peak_flops = model, model.cfg, sc, float(peak_flops)
    self.reward_fn, self.k, self.beta = reward_fn, int(k), float(beta)
    self.tokenizer, self.multiple = tokenizer, pad_to_multiple_of
    reinforce.rloo_advantages(np.zeros(self.k), self.k)  # k >= 2 or a clear error now
    if sc.temperature <= 0:
      # Greedy decoding is deterministic: there is no distribution to take a score function of.
      raise ValueError(f"RLHF training samples its responses: rl.temperature must be > 0, got "
                       f"{sc.temperature}")
    step = functools.partial(train_step, objective=reinforce_objective(model, sc), tx=tx,
                             grad_accum=grad_accum, trainable=trainable)
    if state_sharding is not None:
      self._step = jax.jit(step, in_shardings=(state_sharding, batch_sharding),
                           out_shardings=(state_sharding, None), donate_argnums=0)
      self._put = lambda b: jax.tree_util.tree_map(
          # Every host holds the whole batch (see step()): global shape = local shape.
          lambda x: jax.make_array_from_process_local_data(batch_sharding, x, x.shape), b)
    else:
      self._step = jax.jit(step, donate_argnums=0)
      self._put = lambda b: b
    # Policy: the sampling distribution q (tempered and filtered). Reference: tempered the same
    # way but unfiltered, so a sampled token outside the reference's own top-k / nucleus still
    # has a finite log-prob; the KL is then KL(q || softmax(ref_logits / T)) (rlhf/reinforce.py).
    # Log-probs of the response tokens only (the last max_new_tokens of a rollout).
    tail = sc.max_new_tokens
    self._logprobs = jax.jit(functools.partial(sampling_logprobs, model, sc=sc, tail=tail))
    ref_sc = reinforce.reference_sampling(sc)
    self._ref_logprobs = (self._logprobs if ref_sc == sc else jax.jit(
        functools.partial(sampling_logprobs, model, sc=ref_sc, tail=tail)))
    # LoRA: no reference copy (ref_params None); the reference is the policy, adapters off.
    self._base_logprobs = jax.jit(lambda p, ids, m: sampling_logprobs(
        model, lora.adapters_off(p), ids, m, sc=ref_sc, tail=tail))

  def _sample(self, params: Any, rows: list[np.ndarray], rng: jax.Array):
    """(prompt ids, mask, sampled tokens, response mask, seconds) of one rollout."""
    t0 = time.perf_counter()
    ids, mask = left_pad(rows, self.sc.pad_id, self.multiple)
    gen = generate(params, self.cfg, ids, mask, rng, self.sc)
    # Multi-host: the rollout is sampled sharded over all devices, then every host gathers it
    # whole, so that all score, shape and batch the same rows (rewards are host code).
    tokens, resp = distributed.to_host(gen.tokens), distributed.to_host(gen.response_mask)
    return ids, mask, tokens, resp, time.perf_counter() - t0

  def _kl(self, params: Any, ref_params: Any, ids: np.ndarray, mask: np.ndarray,
          tokens: np.ndarray, resp: np.ndarray):
    """(full ids, full mask, target mask, per-sequence KL to the reference) of a rollout."""
    if tokens.shape[1] != self.sc.max_new_tokens:  # the log-probs read the last max_new_tokens
      raise ValueError(f"rollout of {tokens.shape[1]} tokens, expected {self.sc.max_new_tokens}")
    full_ids = np.concatenate([ids, tokens], axis=1)
    full_mask = np.concatenate([mask, resp], axis=1)
    target_mask = np.concatenate([np.zeros((len(ids), ids.shape[1] - 1), np.int32), resp], axis=1)
    pol = self._logprobs(params, full_ids, full_mask)
    ref = (self._ref_logprobs(ref_params, full_ids, full_mask) if ref_params is not None
           else self._base_logprobs(params, full_ids, full_mask))
    kl = distributed.to_host(reinforce.sequence_kl(pol, ref, target_mask))
    return full_ids, full_mask, target_mask, kl

  def step(self, state: TrainState, ref_params: Any, prompt_seqs: list[np.ndarray],
           messages: list[Any], rng: jax.Array) -> tuple[TrainState, dict[str, float]]:
    """One RLOO step on these prompts (each sampled k times). Returns host metrics."""
    t0 = time.perf_counter()
    k = self.k
    rows = [s for s in prompt_seqs for _ in range(k)]
    ids, mask, tokens, resp, t_gen = self._sample(state.params, rows, rng)
    full_ids, full_mask, target_mask, kl = self._kl(state.params, ref_params, ids, mask, tokens,
                                                    resp)
    rollout = Rollout([m for m in messages for _ in range(k)], ids, mask, tokens, resp,
                      self.tokenizer)
    rewards = np.asarray(self.reward_fn(rollout), np.float32)
    if rewards.shape != (len(rows),):
      raise ValueError(f"the reward function returned shape {rewards.shape}, expected "
                       f"({len(rows)},)")
    shaped = np.asarray(reinforce.shaped_rewards(rewards, kl, self.beta))
    adv = np.asarray(reinforce.rloo_advantages(shaped, k))
    batch = {"input_ids": full_ids, "attention_mask": full_mask, "target_mask": target_mask,
             "advantages": adv}
    state, metrics = self._step(state, self._put(batch))
    metrics = {k_: float(v) for k_, v in jax.device_get(metrics).items() if np.ndim(v) == 0}
    dt = time.perf_counter() - t0
    n_resp = float(resp.sum())
    # Model FLOPs (PaLM's count, metrics_log.train_flops_per_token, the LM head included): every
    # real token goes through the training step (forward + backward, 3 forwards' worth) and three
    # forwards more: sampling and the policy's and the reference's log-probs. The reward's are
    # not counted (another model, maybe none).
    flops = 2.0 * float(full_mask.sum()) * metrics_log.train_flops_per_token(
        self.cfg, full_ids.shape[1], num_labels=self.cfg.vocab_size)
    if self.peak_flops:
      metrics["mfu"] = flops / max(dt, 1e-9) / self.peak_flops
    if hasattr(self.reward_fn, "last_unscorable"):  # a judge: responses it could not score
      metrics["reward_unscorable"] = float(self.reward_fn.last_unscorable)
    metrics.update(
        reward_mean=float(rewards.mean()), reward_std=float(rewards.std()),
        kl=float(kl.mean()), shaped_reward_mean=float(shaped.mean()),
        response_length=float(resp.sum(1).mean()),
        eos_fraction=float(np.mean(resp.sum(1) < resp.shape[1])),
        gen_tokens_per_s=n_resp / max(t_gen, 1e-9),
        tokens_per_s=float(full_mask.sum()) / max(dt, 1e-9),
        model_tflops_per_s=flops / max(dt, 1e-9) / 1e12, step_seconds=dt)
    return state, metrics


  def evaluate(self, params: Any, ref_params: Any, prompt_seqs: list[np.ndarray],
               messages: list[Any], rng: jax.Array, monitors: dict[str, RewardFn]
               ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One response per fixed evaluation prompt (the same key every time), scored by the reward
    model and by `monitors` (reward models that are not optimised: a rise of the optimised
    reward that they do not share is reward hacking). Returns metrics and one row per prompt."""
    ids, mask, tokens, resp, _ = self._sample(params, list(prompt_seqs), rng)
    kl = self._kl(params, ref_params, ids, mask, tokens, resp)[3]
    rollout = Rollout(list(messages), ids, mask, tokens, resp, self.tokenizer)
    scores = {"reward": np.asarray(self.reward_fn(rollout), np.float64)}
    scores.update({f"monitor_{name}": np.asarray(fn(rollout), np.float64)
                   for name, fn in monitors.items()})
    lengths = resp.sum(1)
    metrics = {f"{k}_mean": float(v.mean()) for k, v in scores.items()}
    metrics.update(kl=float(np.mean(kl)), response_length=float(lengths.mean()))
    texts = rollout.response_texts() if self.tokenizer is not None else [None] * len(ids)
    rows = [{"prompt": messages[i], "response": texts[i], "tokens": int(lengths[i]),
             "kl": float(kl[i]), **{k: float(v[i]) for k, v in scores.items()}}
            for i in range(len(ids))]
    return metrics, rows


class PromptOrder:
  """Seeded shuffled passes over the prompts; the position is saved with checkpoints."""

  def __init__(self, n: int, seed: int):
    self.n, self.seed, self.epoch, self.position = n, seed, 0, 0

  def take(self, count: int) -> list[int]:
    out = []
    while len(out) < count:
      if self.position >= self.n:
        self.epoch, self.position = self.epoch + 1, 0
      order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
      out.append(int(order[self.position]))
      self.position += 1
    return out

  def state(self) -> dict[str, int]:
    return {"epoch": self.epoch, "position": self.position, "num_prompts": self.n}

  def restore(self, s: dict[str, Any]) -> None:
    if int(s.get("num_prompts", self.n)) != self.n:
      raise ValueError(f"cannot resume: saved with {s['num_prompts']} prompts, now {self.n}")
    self.epoch, self.position = int(s["epoch"]), int(s["position"])


def train(config, workdir: str, reward_fn: RewardFn | None = None) -> dict[str, Any]:
  # --- set-up: the trainers' shared start (training/trainer.py), the policy, prompts, rewards
  job = trainer.start(config, workdir)
  rl = config.rl
  rows = rl.prompts_per_step * rl.samples_per_prompt
  if rows % (job.mesh.shape["data"] * job.mesh.shape["fsdp"] * config.train.grad_accum):
    raise ValueError(f"prompts_per_step x samples_per_prompt = {rows} must divide over data x "
                     f"fsdp devices x grad_accum")
  policy = build_policy(config.policy)
  tok = policy.tokenizer
  log = job.log
  prompts = load_prompts(config.data.prompts, limit=config.data.max_prompts)
  prompts, prompt_ids, dropped = encode_prompts(prompts, tok, config.data.max_prompt_length)
  log.text(f"prompts: {len(prompts)} kept, {dropped} longer than {config.data.max_prompt_length} "
           f"tokens dropped")
  if reward_fn is None and config.reward.get("kind", "model") == "judge":
    reward_fn = JudgeReward(config.reward.source, scorer=config.reward.judge_scorer,
                            samples=config.reward.judge_samples,
                            unscorable_reward=config.reward.judge_unscorable_reward,
                            batch_size=config.reward.batch_size, seed=config.seed + 1)
  elif reward_fn is None:
    reward_fn = RewardModel(config.reward.source, policy_tokenizer=tok,
                            head_index=config.reward.head_index,
                            tokenizer=config.policy.tokenizer, seed=config.seed + 1,
                            batch_size=config.reward.batch_size)
  ev = config.get("eval") or {}
  eval_every = int(ev.get("every", 0) or 0)
  eval_prompts: list[Any] = []
  eval_ids: list[np.ndarray] = []
  monitors: dict[str, RewardFn] = {}
  if eval_every:
    # The first eval.max_prompts prompts that fit data.max_prompt_length (all that fit: 0).
    eval_prompts, eval_ids, too_long = encode_prompts(
        load_prompts(ev.prompts), tok, config.data.max_prompt_length,
        limit=ev.get("max_prompts", 0) or 0)
    if not eval_prompts:
      raise ValueError(f"eval.prompts: all {too_long} evaluation prompts are longer than "
                       f"data.max_prompt_length={config.data.max_prompt_length} tokens")
    monitors = {name: RewardModel(src, policy_tokenizer=tok, tokenizer=config.policy.tokenizer,
                                  seed=config.seed + 2, batch_size=config.reward.batch_size)
                for name, src in dict(ev.get("monitors", {}) or {}).items()}
    log.text(f"evaluation: {len(eval_prompts)} fixed prompts ({too_long} too long dropped) every "
             f"{eval_every} steps; "
             f"monitor reward models: {sorted(monitors) or 'none'}")
  eos = eos_ids_of(tok.eos_token_id if tok is not None else policy.config.eos_token_id)
  pad = tok.pad_token_id if tok is not None else (policy.config.pad_token_id or 0)
  sc = SamplingConfig(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                      top_p=rl.top_p, top_k=rl.top_k, eos_ids=eos, pad_id=pad)

  # --- state: own checkpoint > pretrained > fresh; the reference is the starting policy
  tx = make_optimizer(config.optim)
  rng = jax.random.PRNGKey(config.seed)
  trainable = None
  if policy.config.lora_rank:  # LoRA: the adapters train, the reference is the frozen base
    mask = functools.partial(trainable_mask, adapters_only=True)
    tx = restrict(tx, mask)
    trainable = mask(nn.unbox(jax.eval_shape(policy.init_params, rng)))
  order = PromptOrder(len(prompts), config.data.shuffle_seed)
  state, shardings = job.init_state(policy.init_params, tx, rng, data=order,
                                    pretrained=policy.pretrained)
  # The reference is its own copy of the start (the state is donated at every step); with LoRA
  # it is the policy itself with its adapters off, no copy.
  if policy.config.lora_rank:
    ref_params = None
  elif policy.pretrained is not None:
    ref_params = jax.device_put(policy.pretrained, shardings.params)
  else:
    ref_params = jax.jit(lambda r: nn.unbox(policy.init_params(r)),
                         out_shardings=shardings.params)(rng)

  # --- the step
  learner = Learner(policy.model, tx, sc, reward_fn, k=rl.samples_per_prompt, beta=rl.kl_beta,
                    grad_accum=config.train.grad_accum, tokenizer=tok,
                    pad_to_multiple_of=config.data.pad_to_multiple_of,
                    state_sharding=shardings, batch_sharding=job.batch_sharding(),
                    trainable=trainable,
                    peak_flops=config.train.peak_flops_per_device * jax.device_count())

  # --- the loop
  step = int(state.step)
  history = []
  eval_key = jax.random.PRNGKey(config.seed + 11)  # the same key at every evaluation

  def run_eval(at: int) -> None:
    m, rows = learner.evaluate(state.params, ref_params, eval_ids, eval_prompts, eval_key,
                               monitors)
    log.scalars(at, m, prefix="eval/")
    log.text(f"eval @ step {at}: " + " ".join(f"{k}={v:.4g}" for k, v in sorted(m.items())))
    if job.is_main:
      with (job.workdir / "eval_generations.jsonl").open("a", encoding="utf-8") as f:
        for r in rows:
          f.write(json.dumps({"step": at, **r}, ensure_ascii=False) + "\n")

  with job.loop():
    if eval_every and step == 0:
      run_eval(0)
    log.start_progress(config.train.steps, step, ("reward_mean", "kl", "loss", "tokens_per_s",
                                                  "gen_tokens_per_s", "mfu"), desc="rlhf")
    while step < config.train.steps:
      idx = order.take(rl.prompts_per_step)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 7), step)
      state, m = learner.step(state, ref_params, [prompt_ids[i] for i in idx],
                              [prompts[i] for i in idx], key)
      trainer.check_finite(state)
      step += 1
      history.append(m)
      if step % config.train.log_every == 0 or step == config.train.steps:
        log.scalars(step, m, prefix="train/")
      log.progress(step, m)
      if eval_every and step % eval_every == 0 and step < config.train.steps:
        run_eval(step)
      if job.checkpoint(step, state, order.state()):
        return {"step": step, "preempted": True}
    # --- the end
    job.save_final(step, state, order.state())
    if eval_every:
      run_eval(step)
  return job.write_summary({"step": step, "first": history[0] if history else None,
                            "last": history[-1] if history else None})


def run() -> None:
  """The `helpsteer-rlhf` console script: `python -m helpsteer_jax.rlhf.train` by another name."""
  launch.run(train)


if __name__ == "__main__":
  run()

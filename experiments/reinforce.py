"""RLOO REINFORCE with a KL penalty against the starting policy (Ahmadian et al. 2024).

  python -m helpsteer_jax.rlhf.train --config experiments/reinforce.py:smollm2 --workdir /tmp/rl \
      --config.reward.source=/tmp/runs/sbt_short
Variants: tiny (random tiny policy and reward model, seconds, used by tests), smollm2 (the
packaged SmolLM2-135M-Instruct as the policy; reward.source a reward-model workdir or HF dir),
llama3_70b (NeMo-Aligner-style defaults on a pod). Defaults follow NeMo-Aligner's REINFORCE:
LR 1e-6, temperature 1.0, k = 4 samples per prompt, KL β = 0.01.
"""
from __future__ import annotations

import ml_collections

from helpsteer_jax.training.configs import (HELPSTEER_SAMPLE_PATH, PEAK_FLOPS, base_blocks,
                                            model_block, optim_block, parse_arg, train_block)

VARIANTS = ("tiny", "smollm2", "llama3_70b")


def get_config(arg: str = "tiny"):
  variant, _ = parse_arg(arg, VARIANTS)
  c = ml_collections.ConfigDict()
  base_blocks(c)
  c.policy = model_block()  # a preset (random init) or a causal-LM checkpoint: smollm2, HF dir
  c.reward = ml_collections.ConfigDict(dict(
      source="tiny",  # a reward-model workdir, HF reward-model dir, or a preset (random, tests)
      head_index=0, batch_size=16,
      # kind "judge": `source` is a causal LM grading each response with the rubric of
      # evaluation/judges.py ("expected" score or the mean of `judge_samples` sampled
      # judgments); a response it cannot score gets `judge_unscorable_reward` (counted).
      kind="model", judge_scorer="expected", judge_samples=3, judge_unscorable_reward=0.0))
  c.data = ml_collections.ConfigDict(dict(
      prompts=dict(format="prompts", path=HELPSTEER_SAMPLE_PATH, split="train",
                   validation_fraction=0.1),
      max_prompts=0, max_prompt_length=256, pad_to_multiple_of=32, shuffle_seed=0))
  c.rl = ml_collections.ConfigDict(dict(
      prompts_per_step=4, samples_per_prompt=4, kl_beta=0.01, max_new_tokens=128,
      temperature=1.0, top_p=1.0, top_k=0))
  # Fixed evaluation prompts answered every `every` steps (0: never), scored by the reward model
  # and by `monitors` ({name: reward-model source}), which are not optimised: the first
  # `max_prompts` of the split that fit data.max_prompt_length (0: all that fit).
  c.eval = ml_collections.ConfigDict(dict(
      every=0, prompts=dict(format="prompts", path=HELPSTEER_SAMPLE_PATH, split="validation",
                            validation_fraction=0.1),
      max_prompts=8, monitors={}))
  c.optim = optim_block(lr=1e-6, weight_decay=0.0, warmup_steps=0)
  c.train = train_block(steps=100, log_every=1, checkpoint_every=50)
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1))
  if variant == "tiny":
    c.data.max_prompts = 8
    c.data.max_prompt_length = 128
    c.data.pad_to_multiple_of = 128  # every batch one shape: one compile per function
    c.rl.prompts_per_step = 2
    c.rl.max_new_tokens = 16
    c.train.steps = 2
    c.train.checkpoint_every = 1
    c.optim.lr = 1e-3
  elif variant == "smollm2":
    c.policy.source = "smollm2"
    # Scanned layers with remat in the update (decoding unrolls them itself): unrolled and
    # without remat, a step of 16 x 384 tokens was OOM-killed at 19 GB on a 24 GB machine; with
    # full remat it peaked at 7.7 GB (AMD EPYC Zen 4, 2 cores, about 60 s a step). Keeping the
    # projections' outputs (about 3 GB more at 16 x 320 tokens) skips their recomputation: the
    # train-step benchmark's float32 step took 5.0 s against full remat's 5.5 s in one run on
    # AMD Zen 5 (benchmarks/RESULTS.md); the gradients are the same (tests/test_remat_policies).
    c.policy.scan_layers = True
    c.policy.remat_policy = "projections"
    c.reward.source = "/tmp/runs/sbt_short"  # e.g. a scaled_bt:smollm2 run
    c.rl.max_new_tokens = 64
    c.train.steps = 20
    c.train.checkpoint_every = 10
  else:
    c.policy.source = "meta-llama/Llama-3.1-70B-Instruct"
    c.policy.dtype = "bfloat16"
    c.policy.remat_policy = "dots_no_batch"
    c.reward.source = "/path/to/reward_model_workdir"
    c.data.prompts = dict(format="helpsteer2_ratings", path="nvidia/HelpSteer2", split="train")
    c.data.max_prompt_length = 4096
    c.data.pad_to_multiple_of = 256
    c.rl.prompts_per_step = 64
    c.rl.max_new_tokens = 2048
    c.train.steps = 500
    c.train.peak_flops_per_device = PEAK_FLOPS["h100_bf16"]
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=8))
  return c

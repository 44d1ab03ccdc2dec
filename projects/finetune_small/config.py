"""What the fine-tuning study runs (issue 18): data, settings, seeds, and where results go.

Part 1 (`parity`): SmolLM2-135M-Instruct fine-tuned as a Bradley-Terry reward model, all layers
trainable, by our trainer (`python -m helpsteer_jax.train`) and by TRL's `RewardTrainer` on the
identical pairs: the same start (one Hugging Face directory per seed holding the backbone and the
seed's N(0, 0.02) head, read by both), the same tokenised sequences in the same order (the order
our trainer's batcher draws; TRL reads them with a sequential sampler), the same length limit,
batch size, schedule, optimiser settings, epochs and precision (bf16 compute, float32 master
weights, activation checkpointing: TRL's defaults). Both models are then scored by the library's
evaluator on the held-out HelpSteer pairs and on RewardBench head500, in float32.

Data: `helpsteer_v1_sample.jsonl` as same-prompt pairs (strength = helpfulness difference, ties
dropped), 20% of prompts held out by hash: the split of `projects/reproduce_small`, so its
frozen-probe rows are on the same evaluation sets. Training keeps the pairs whose longer side
fits `max_length` tokens (253 of the 285 training pairs at 1024; the budget's choice); evaluation
scores every pair (up to `eval_max_length` tokens: all 102 held-out pairs and all RewardBench
rows fit).
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"  # committed: what the report reads
REPORT = HERE / "REPORT.md"
TEMPLATE = HERE / "report_template.md"
WORKDIR = REPO / "runs" / "finetune_small"  # start models, checkpoints, trained models

DATA = dict(
    hs_file="helpsteer_v1_sample.jsonl",
    hs_validation_fraction=0.2,  # the reproduce_small split (held-out prompts by hash)
    rb_file="rewardbench_filtered_head500.jsonl",
)

# Part 1: the same recipe for both trainers. The optimiser block mirrors the paper's shape
# (AdamW, beta = (0.9, 0.98), warm-up then a constant learning rate, clipping at 1.0).
PARITY = dict(
    loss="bt",
    seeds=(0, 1),
    max_length=1024,
    eval_max_length=None,  # the model's context (8192): every RewardBench row is scored
    # Pairs per step: 11 divides the 253 training pairs (23 steps an epoch), so no batch is
    # partly filler and TRL's sequential batches are exactly ours.
    batch_size=11,
    epochs=1,
    lr=2e-5,
    warmup_steps=3,  # linear from 0, then constant
    weight_decay=0.1,  # kernels and embeddings; norm weights spared (both trainers' rule)
    b1=0.9, b2=0.98, eps=1e-8, grad_clip=1.0,
    precision="bf16",  # bf16 compute, float32 master weights and head, activation checkpointing
    checkpoint_every=8,  # steps: the runs are resumable (no process here outlives 3 hours)
    eval_dtype="float32",
    eval_batch_size=8,
)
TRAINERS = ("ours", "trl")
# LoRA beside part 1 (issue 20): our trainer on the same pairs, order and recipe, but rank-16
# adapters on every projection (alpha 32) and the head training, everything else frozen, at the
# usual ~10x learning rate of LoRA. Compared with the full fine-tune on the held-out pairs.
LORA = dict(seeds=(0,), rank=16, alpha=32.0,
            targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", lr=2e-4,
            eval_sets=("hs_validation",))
# The paired bootstrap of the report (evaluation/compare.py).
BOOTSTRAP = dict(resamples=2000, level=0.95, seed=0)

# Part 2: the paper's variants with the top `top_layers` decoder layers (+ final norm and head)
# trained on the frozen bottom's cached output (frozen.py), every HelpSteer training pair kept
# (2048 tokens). `dev_fraction` of the training prompts (by a second hash) form the validation
# split that picks learning rates, ExPO's alpha and the model to export; they are not trained on.
# Evaluation sets: the held-out HelpSteer pairs, the preference-mix held-out pairs and every
# RewardBench head500 row, the sets of projects/reproduce_small.
FROZEN = dict(
    top_layers=4,
    max_length=2048,
    mix_max_length=1024,
    dev_fraction=0.2,
    seeds=(0, 1),
    batch_size=8,  # pairs or rated responses per step
    # ... accumulated over micro-batches of 2 (exact): at 2048 tokens a whole batch's attention
    # backward (16 sequences x 9 heads x 2048^2 float32 scores per tensor) took 21.6 GB and was
    # killed on this 24 GB machine.
    grad_accum=4,
    precision="bf16",  # training compute; the cache and every evaluation are float32
    # AdamW, beta = (0.9, 0.98), a short linear warm-up, then constant (the paper's shape).
    optim=dict(b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.1, warmup_steps=3, schedule="constant",
               decay_steps=0, final_lr=0.0, grad_clip=1.0),
    # Swept with seed 0 on the dev split, one lr per loss family: the best dev accuracy, ties to
    # the lower dev log-loss (added after the first sweep's BT tie, see variants.sweep).
    lr_grid=(1e-5, 3e-5, 1e-4),
    eval_batch_size=8,
)
# (name, data, loss, init, epochs): the paper's recipe shape, regression 2 epochs, then the BT
# family 1 epoch (Scaled BT from regression: initialised from the same seed's helpfulness model).
VARIANTS = (
    ("bt", "pairs", "bt", None, 1),
    ("scaled_bt", "pairs", "scaled_bt", None, 1),
    ("regression_helpfulness", "ratings", "regression_helpfulness", None, 2),
    ("regression_5attr", "ratings", "regression", None, 2),
    ("scaled_bt_from_regression", "pairs", "scaled_bt", "regression_helpfulness", 1),
)
LR_FAMILY = {"bt": "bt", "scaled_bt": "bt", "scaled_bt_from_regression": "bt",
             "regression_helpfulness": "regression_helpfulness",
             "regression_5attr": "regression_helpfulness"}
# ExPO: aligned + a * (aligned - init) on the top's parameters (the bottom is shared), a chosen
# per seed by dev-pair accuracy (ties to the lower dev log-loss, then the smaller a).
EXPO = dict(name="expo_scaled_bt_from_regression", aligned="scaled_bt_from_regression",
            init="regression_helpfulness", alphas=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0))
# The model exported as a Hugging Face reward model (the best variant by dev accuracy, seed 0):
# transformers must score `pairs` evaluation pairs as we do, within `tolerance`.
EXPORT_CHECK = dict(pairs=50, tolerance=1e-4)

# Part 3: REINFORCE (RLOO) on SmolLM2-135M-Instruct with part 2's exported reward model. No
# sweep: the settings were fixed before the run (a learning rate above NeMo-Aligner's 1e-6 for
# 70B models, for a visible trend in a CPU-sized number of steps on a 135M policy).
RLHF = dict(
    seed=0,
    prompts_file="hh_rlhf_helpful_train_sample500.jsonl",
    max_prompts=0, max_prompt_length=256,
    prompts_per_step=4, k=4, kl_beta=0.02, max_new_tokens=64, temperature=1.0,
    lr=1e-5, steps=120, checkpoint_every=10,
    eval_every=20, eval_prompts=16,
)

"""Shared base of every experiment config; each file under experiments/ is a small diff over it.

Variants (the argument after ':'): `tiny` (random tiny Llama, seconds, used by tests), `smollm2`
(the packaged SmolLM2-135M-Instruct on this CPU), `llama3_8b` and `llama3_70b` (the paper's
recipe on Llama-3.1-Instruct, for GPU/TPU meshes). A config's argument is `variant[,option]`
(`experiments/dpo.py:smollm2,dpo_scaled`), split by `parse_arg`.

It lives in the package, not beside the experiment files, so that a config file loads from any
folder (`helpsteer-train --config path/to/experiments/bt.py:tiny`) without touching sys.path.
"""
from __future__ import annotations

from typing import Sequence

import ml_collections
from ml_collections import config_dict

from helpsteer_jax.data.paths import HELPSTEER_SAMPLE, packaged, shared_data_dir
from helpsteer_jax.data.records import ATTRIBUTES
from helpsteer_jax.sharding import DEFAULT_RULES

VARIANTS = ("tiny", "smollm2", "llama3_8b", "llama3_70b")
# The other real data files: ../shared/data beside the repository, or $HELPSTEER_SHARED_DATA.
SHARED_DATA = shared_data_dir()
# The default training data, shipped inside the package (HelpSteer v1 sample, CC-BY-4.0).
HELPSTEER_SAMPLE_PATH = packaged(HELPSTEER_SAMPLE)
# H100 SXM dense bf16 peak; the CPU figure is the measured 2048^3 fp32 matmul rate here.
PEAK_FLOPS = {"cpu": 400e9, "h100_bf16": 989e12, "tpu_v5p_bf16": 459e12}


def parse_arg(arg: str, variants: Sequence[str], options: Sequence[str] = (),
              default_option: str = "", what: str = "option") -> tuple[str, str]:
  """`variant[,option]` -> (variant, option), each checked against its choices.

  `default_option` stands in for a missing option; with no `options`, none is accepted.
  """
  variant, _, option = arg.partition(",")
  if variant not in variants:
    raise ValueError(f"unknown variant {variant!r}; choose one of {tuple(variants)}")
  option = option or default_option
  if option and option not in options:
    raise ValueError(f"unknown {what} {option!r} after {variant!r},; choose one of "
                     f"{tuple(options)}")
  return variant, option


def model_block(source: str = "tiny") -> ml_collections.ConfigDict:
  """The model a run starts from and how it runs (see helpsteer_jax.runs)."""
  return ml_collections.ConfigDict(dict(
      source=source,  # a preset name (random init) or a checkpoint: smollm2, HF dir, gguf:PATH
      tokenizer="smollm2",  # tokenizer for presets; checkpoints bring their own
      dtype="float32", remat_policy="none", scan_layers=False,
      # "float32" with dtype="bfloat16": torch autocast's float32 residual stream (unset: the
      # compute dtype; helpsteer_jax/models/config.py).
      residual_dtype=config_dict.placeholder(str),
      # "f32_accumulate": bf16 dots with float32 results (XLA:CPU's fast bf16 path; see
      # helpsteer_jax/models/config.py); "xla" leaves them to XLA. Only matters in bfloat16.
      low_precision_dots="xla",
      # LoRA (models/lora.py): rank 0 = full fine-tuning; else adapters of this rank on the
      # listed projections train, with the reward head, and everything else stays frozen.
      lora_rank=0, lora_alpha=16.0,
      lora_targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"))


def optim_block(**overrides) -> ml_collections.ConfigDict:
  """AdamW with warm-up, a schedule and gradient clipping (training/optimizer.py)."""
  return ml_collections.ConfigDict(dict(
      lr=1e-5, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.1, warmup_steps=10,
      schedule="constant", decay_steps=0, final_lr=0.0, grad_clip=1.0) | overrides)


def train_block(**overrides) -> ml_collections.ConfigDict:
  """Loop length, accumulation, logging and checkpoint cadence (training/trainer.py)."""
  return ml_collections.ConfigDict(dict(
      steps=0, grad_accum=1, log_every=10, checkpoint_every=100, keep_checkpoints=3,
      # Optimizer steps per jitted call (a lax.scan over that many batches): the same updates;
      # on CPU, XLA's temporaries are fresh memory every call, so fewer calls fault in less.
      steps_per_call=1,
      peak_flops_per_device=PEAK_FLOPS["cpu"],
      # Metrics go to metrics.jsonl and these (training/metric_writers.py): "tensorboard",
      # "wandb", both comma-separated, or "". progress: the tqdm bar on stderr.
      trackers="tensorboard", progress=True,
      # W&B: empty entity/name take W&B's default and the workdir's name; mode "" is
      # $WANDB_MODE, else online with $WANDB_API_KEY set and offline without.
      wandb=dict(project="helpsteer_jax", entity="", name="", mode="")) | overrides)


def base_blocks(c: ml_collections.ConfigDict) -> None:
  """The blocks every trainer reads: seed, mesh and sharding rules."""
  c.seed = 0
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.rules = DEFAULT_RULES


def get_base_config(loss: str, variant: str) -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
  c = ml_collections.ConfigDict()
  base_blocks(c)
  c.model = model_block()
  c.model.num_labels = 1
  c.loss = ml_collections.ConfigDict(dict(
      name=loss, normalize="pairs", centering_coef=0.0,
      head_index=0))  # which reward-head output is the reward (BT family)
  c.data = ml_collections.ConfigDict(dict(
      # Matched data on this machine: HelpSteer ratings turned into same-prompt pairs, from the
      # sample shipped in the package (helpsteer_jax/data/assets).
      train=dict(format="helpsteer_ratings_pairs", path=HELPSTEER_SAMPLE_PATH, split="train"),
      eval=dict(format="helpsteer_ratings_pairs", path=HELPSTEER_SAMPLE_PATH,
                split="validation"),
      eval_ratings={},  # regression configs: held-out ratings for per-attribute MSE
      validation_fraction=0.1,  # held-out prompts when a file has no split column
      attributes=ATTRIBUTES,
      max_length=1024, batch_size=8, eval_batch_size=8, pad_to_multiple_of=64,
      skip_invalid=False, shuffle_seed=0, max_train_examples=0, max_eval_examples=0,
      # Sequence packing (BT family): whole pairs several to a row of pack_length tokens
      # (0: the longest pair, rounded up), at most pack_max_pairs per row; batch_size then
      # counts rows. See data.PackedPairBatcher.
      packing=False, pack_length=0, pack_max_pairs=16))
  c.optim = optim_block()
  c.train = train_block(
      epochs=1.0,  # steps > 0 wins; else epochs over the training pairs
      eval_every=0,
      record_batches=False)  # write a hash of every step's batch to batches.jsonl
  c.init_from = ""  # workdir of another run whose parameters start this one
  c.require_init_from = False  # stage-2 configs set it: training without init_from is an error
  c.init_head_columns = (0,)  # which of its reward-head outputs to keep (used with init_from)
  _apply_variant(c, variant)
  return c


def _apply_variant(c: ml_collections.ConfigDict, variant: str) -> None:
  if variant == "tiny":
    c.data.update(max_length=256, batch_size=8, eval_batch_size=8, max_train_examples=16,
                  max_eval_examples=8, pad_to_multiple_of=32)
    c.train.update(steps=4, log_every=1, checkpoint_every=2)
    c.optim.update(lr=1e-3, warmup_steps=1)
  elif variant == "smollm2":
    # Without remat the backward pass of 8 x 1024 tokens needs ~24 GB of XLA temporaries (this
    # machine's whole memory). Full remat keeps only each layer's input and recomputes the rest,
    # but XLA:CPU honours it only inside a scan over layers (unrolled, it hoists the recomputation
    # and the saving vanishes): scanned + full remat needs 2.1 GB (jit(...).memory_analysis()).
    c.model.update(source="smollm2", remat_policy="full", scan_layers=True)
    c.data.update(max_length=1024, batch_size=4)
    c.train.update(epochs=1.0, log_every=5, checkpoint_every=50)
    c.optim.update(lr=1e-5)
  else:  # the paper's recipe (HelpSteer2-Preference, sec. 4) on Llama-3.1
    # The paper starts from Llama-3.1-70B-Instruct; the base models also ship no chat template,
    # which the data encoder needs.
    c.model.source = ("meta-llama/Llama-3.1-8B-Instruct" if variant == "llama3_8b"
                      else "meta-llama/Llama-3.1-70B-Instruct")
    c.model.dtype = "bfloat16"
    c.model.remat_policy = "dots_no_batch"
    c.model.scan_layers = True
    c.data.train = dict(format="helpsteer2_preference", path="nvidia/HelpSteer2", split="train")
    c.data.eval = dict(format="helpsteer2_preference", path="nvidia/HelpSteer2",
                       split="validation")
    c.data.max_length = 4096
    c.data.batch_size = 128  # global batch: 128 pairs (BT family) or rated responses
    c.data.eval_batch_size = 64
    c.data.pad_to_multiple_of = 256
    c.optim.warmup_steps = 10
    c.optim.schedule = "constant"
    c.train.log_every = 1
    c.train.checkpoint_every = 50
    c.train.peak_flops_per_device = PEAK_FLOPS["h100_bf16"]
    if variant == "llama3_8b":
      c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
      c.train.grad_accum = 4
    else:
      c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=8))
      c.train.grad_accum = 8

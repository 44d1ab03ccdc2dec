"""Our trainer's config for the study's runs: `experiments/bt.py:smollm2` with the study's settings.

  python -m helpsteer_jax.train --config projects/finetune_small/train_config.py:0 \
      --workdir W --config.model.source=START_DIR

The argument is the seed (head init is in START_DIR, written by run.py; the seed also orders the
batches), optionally followed by `,lora`: the same run with config.LORA's adapters. Validation runs separately, through the library's evaluator (run.py), so the training
wall time is the training's own.
"""
from __future__ import annotations

from helpsteer_jax.training.configs import get_base_config
from projects.finetune_small.config import DATA, LORA, PARITY, WORKDIR


def get_config(arg: str = "0"):
  seed, _, option = arg.partition(",")
  if option not in ("", "lora"):
    raise ValueError(f"argument {arg!r}: SEED or SEED,lora")
  seed = int(seed)
  p = PARITY
  c = get_base_config(p["loss"], "smollm2")
  c.seed = seed
  c.model.source = str(WORKDIR / "start" / f"seed{seed}")  # run.py passes its own
  if p["precision"] == "bf16":
    c.model.update(dtype="bfloat16", low_precision_dots="f32_accumulate")
  c.data.update(max_length=p["max_length"], batch_size=p["batch_size"], shuffle_seed=seed,
                validation_fraction=DATA["hs_validation_fraction"])
  c.data.eval = {}
  c.optim.update(lr=p["lr"], warmup_steps=p["warmup_steps"], schedule="constant",
                 weight_decay=p["weight_decay"], b1=p["b1"], b2=p["b2"], eps=p["eps"],
                 grad_clip=p["grad_clip"])
  c.train.update(epochs=float(p["epochs"]), steps=0, log_every=1,
                 checkpoint_every=p["checkpoint_every"], keep_checkpoints=1)
  if option == "lora":
    c.model.update(lora_rank=LORA["rank"], lora_alpha=LORA["alpha"], lora_targets=LORA["targets"])
    c.optim.lr = LORA["lr"]
  return c

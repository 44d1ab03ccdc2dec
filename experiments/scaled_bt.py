"""Scaled Bradley-Terry: -m * log sigmoid(r_c - r_r), m = |preference_strength| (HelpSteer2-Pref).

  python -m helpsteer_jax.train --config experiments/scaled_bt.py:smollm2 --workdir /tmp/rm_sbt
Variants: tiny, smollm2, llama3_8b, llama3_70b (1e-6 constant LR, 1 epoch, as the paper).
"""
from helpsteer_jax.training.configs import get_base_config


def get_config(variant: str = "tiny"):
  c = get_base_config("scaled_bt", variant)
  if variant.startswith("llama3"):
    c.optim.lr = 1e-6
    c.train.epochs = 1.0
  return c

"""Margin Bradley-Terry: -log sigmoid(r_c - r_r - m), m = |preference_strength| (Llama 2).

  python -m helpsteer_jax.train --config experiments/margin_bt.py:smollm2 --workdir /tmp/rm_mbt
Variants: tiny, smollm2, llama3_8b, llama3_70b.
"""
from helpsteer_jax.training.configs import get_base_config


def get_config(variant: str = "tiny"):
  c = get_base_config("margin_bt", variant)
  if variant.startswith("llama3"):
    c.optim.lr = 1e-6
  return c

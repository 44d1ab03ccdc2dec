"""DPO on preference pairs (Rafailov et al. 2023), with HelpSteer2-Preference's margin and scaled
variants carried over to DPO's implicit reward (losses.dpo).

  python -m helpsteer_jax.train --config experiments/dpo.py:smollm2 --workdir /tmp/dpo
  python -m helpsteer_jax.train --config experiments/dpo.py:smollm2,dpo_scaled --workdir ...
Variants: tiny, smollm2 (optionally ",dpo_margin" / ",dpo_scaled"). The policy starts from
`model.source` and the frozen reference is the same checkpoint; validation accuracy is the share
of pairs whose implicit reward β·log(π/π_ref) ranks chosen above rejected.
"""
from experiments.base import get_base_config

LOSSES = ("dpo", "dpo_margin", "dpo_scaled")


def get_config(arg: str = "tiny"):
  variant, _, loss = arg.partition(",")
  loss = loss or "dpo"
  if loss not in LOSSES:
    raise ValueError(f"unknown DPO loss {loss!r}; choose one of {LOSSES}")
  if variant not in ("tiny", "smollm2"):
    raise ValueError(f"unknown variant {variant!r}; choose tiny or smollm2")
  c = get_base_config(loss, variant)
  c.loss.beta = 0.1
  if variant == "smollm2":
    # Chosen and rejected of 2 pairs: 4 sequences x 512 tokens x 49k-word logits per step.
    c.data.max_length = 512
    c.data.batch_size = 2
    c.data.eval_batch_size = 2
    c.optim.lr = 5e-7
  return c

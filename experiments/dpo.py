"""DPO on preference pairs (Rafailov et al. 2023), with HelpSteer2-Preference's margin and scaled
variants carried over to DPO's implicit reward (losses.dpo).

  python -m helpsteer_jax.train --config experiments/dpo.py:smollm2 --workdir /tmp/dpo
  python -m helpsteer_jax.train --config experiments/dpo.py:smollm2,dpo_scaled --workdir ...
Variants: tiny, smollm2 (optionally ",dpo_margin" / ",dpo_scaled"). The policy starts from
`model.source` and the frozen reference is the same checkpoint; validation accuracy is the share
of pairs whose implicit reward β·log(π/π_ref) ranks chosen above rejected.
"""
from helpsteer_jax.losses import DPO_LOSSES
from helpsteer_jax.training.configs import get_base_config, parse_arg


def get_config(arg: str = "tiny"):
  variant, loss = parse_arg(arg, ("tiny", "smollm2"), tuple(DPO_LOSSES), default_option="dpo",
                            what="DPO loss")
  c = get_base_config(loss, variant)
  c.loss.beta = 0.1
  if variant == "smollm2":
    # Chosen and rejected of 2 pairs: 4 sequences x 512 tokens x 49k-word logits per step.
    c.data.max_length = 512
    c.data.batch_size = 2
    c.data.eval_batch_size = 2
    c.optim.lr = 5e-7
  return c

"""SteerLM regression reward model: MSE on the five HelpSteer attributes, or helpfulness only.

  python -m helpsteer_jax.train --config experiments/regression.py:smollm2 --workdir /tmp/rm_reg
  python -m helpsteer_jax.train --config experiments/regression.py:smollm2,helpfulness \
      --workdir /tmp/rm_help
Variants: tiny, smollm2, llama3_8b, llama3_70b; append ",helpfulness" for helpfulness only.
The paper's stage 1: 2e-6 constant LR over 2 epochs.
"""
from helpsteer_jax.training.configs import VARIANTS, get_base_config, parse_arg


def get_config(arg: str = "tiny"):
  variant, which = parse_arg(arg, VARIANTS, ("helpfulness",), what="attribute")
  c = get_base_config("regression", variant)
  if which:
    c.data.attributes = ("helpfulness",)
  c.model.num_labels = len(c.data.attributes)
  c.data.train.format = "helpsteer_ratings"
  c.data.eval.format = "helpsteer_ratings_pairs"  # validation: accuracy of predicted helpfulness
  # ... and per-attribute MSE on the held-out rated responses
  c.data.eval_ratings = dict(c.data.eval, format="helpsteer_ratings")
  if variant.startswith("llama3"):
    c.data.train = dict(format="helpsteer2_ratings", path="nvidia/HelpSteer2", split="train")
    c.data.eval = dict(format="helpsteer2_preference", path="nvidia/HelpSteer2",
                       split="validation")
    c.data.eval_ratings = dict(format="helpsteer2_ratings", path="nvidia/HelpSteer2",
                               split="validation")
    c.optim.lr = 2e-6
    c.train.epochs = 2.0
  return c

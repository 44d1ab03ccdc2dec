"""Stage 2 of the paper's best recipe: Scaled BT initialised from a helpfulness regression model.

The stage-1 model's helpfulness output becomes the reward (its column is looked up in the stage-1
run's own data.attributes, so any attribute order works; a stage-1 run that is not a regression
run with a helpfulness output is an error); training then continues with Scaled BT
(HelpSteer2-Preference: 93.7 on RewardBench, 94.1 with ExPO).

  python -m helpsteer_jax.train --config experiments/regression.py:smollm2,helpfulness \
      --workdir /tmp/stage1
  python -m helpsteer_jax.train --config experiments/scaled_bt_from_regression.py:smollm2 \
      --workdir /tmp/stage2 --config.init_from=/tmp/stage1
"""
from helpsteer_jax.training.configs import get_base_config


def get_config(variant: str = "tiny"):
  c = get_base_config("scaled_bt", variant)
  c.require_init_from = True  # --config.init_from=<stage-1 workdir>
  c.init_head_columns = ("helpfulness",)  # found in the init_from run's attributes (train.py)
  if variant.startswith("llama3"):
    c.optim.lr = 1e-6
    c.train.epochs = 1.0
  return c

"""Part 3's RLHF run: REINFORCE (RLOO) on SmolLM2-135M-Instruct with part 2's best reward model.

  python -m helpsteer_jax.rlhf.train --config projects/finetune_small/rl_config.py \
      --workdir W/rlhf

`experiments/reinforce.py:smollm2` with config.RLHF's settings; the reward model is the one part 2
exported (results/part2/export_check.json) and the monitor, scored on the same evaluation
generations but never optimised, is the second model part 2 exported (another loss family, another
seed). Training prompts: HH-RLHF helpful prompts (no reward model here was trained on them);
evaluation prompts: the held-out HelpSteer prompts (held out from every reward model's training).
"""
from __future__ import annotations

import json
from pathlib import Path

from helpsteer_jax.training.configs import SHARED_DATA
from helpsteer_jax.training.launch import load_config
from projects.finetune_small.config import DATA, REPO, RESULTS, RLHF


def get_config(arg: str = ""):
  results = Path(arg) if arg else RESULTS / "part2"
  shared = Path(SHARED_DATA)  # a str (configs.py): `$HELPSTEER_SHARED_DATA` or ../shared/data
  c = load_config(f"{REPO / 'experiments' / 'reinforce.py'}:smollm2")
  check = json.loads((results / "export_check.json").read_text())
  c.reward.source = check["directory"]
  c.seed = RLHF["seed"]
  c.data.prompts = dict(format="hh_rlhf", path=str(shared / RLHF["prompts_file"]),
                        split="train", validation_fraction=0.1, skip_invalid=True)
  c.data.max_prompts = RLHF["max_prompts"]
  c.data.max_prompt_length = RLHF["max_prompt_length"]
  c.rl.update(prompts_per_step=RLHF["prompts_per_step"], samples_per_prompt=RLHF["k"],
              kl_beta=RLHF["kl_beta"], max_new_tokens=RLHF["max_new_tokens"],
              temperature=RLHF["temperature"])
  c.optim.update(lr=RLHF["lr"])
  c.train.update(steps=RLHF["steps"], checkpoint_every=RLHF["checkpoint_every"], log_every=1)
  c.eval.update(every=RLHF["eval_every"], max_prompts=RLHF["eval_prompts"],
                prompts=dict(format="helpsteer_ratings", path=str(shared / DATA["hs_file"]),
                             split="validation",
                             validation_fraction=DATA["hs_validation_fraction"]),
                monitors={"monitor": check["monitor"]["directory"]})
  return c

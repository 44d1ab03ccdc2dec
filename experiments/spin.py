"""SPIN, Self-Play Fine-Tuning (Chen et al. 2024): the SFT response against the model's own.

  python -m helpsteer_jax.iterative --config experiments/spin.py:smollm2 --workdir W
Variants: tiny (tests), smollm2 (SmolLM2-135M-Instruct on this CPU). Each iteration: the current
policy answers every SFT prompt; the SFT data's response is chosen and the generation rejected;
the SPIN loss (losses.spin, DPO-shaped, beta = the paper's lambda) trains from the current
iterate, which is also the reference. SFT data: `sft` (format "prompt_response", or a HelpSteer
ratings file, whose most helpful response per prompt is the target). See helpsteer_jax/iterative.py.
"""
import importlib.util
from pathlib import Path

from helpsteer_jax.training.configs import HELPSTEER_SAMPLE_PATH, parse_arg

_SR = importlib.util.spec_from_file_location("self_rewarding_config",
                                             Path(__file__).with_name("self_rewarding.py"))
_sr = importlib.util.module_from_spec(_SR)
_SR.loader.exec_module(_sr)


def get_config(arg: str = "tiny"):
  variant, _ = parse_arg(arg, _sr.VARIANTS)
  c = _sr.base("spin", variant)
  c.sft = dict(format="helpsteer_ratings", path=HELPSTEER_SAMPLE_PATH, split="train",
               validation_fraction=0.1)
  c.dpo.loss.name = "spin"
  return c

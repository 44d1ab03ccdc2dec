"""Self-Rewarding Language Models (Yuan et al. 2024): the policy judges its own samples, iterative DPO.

  python -m helpsteer_jax.iterative --config experiments/self_rewarding.py:smollm2 --workdir W
Variants: tiny (a random tiny policy, seconds, used by tests), smollm2 (SmolLM2-135M-Instruct on
this CPU, a few dozen HelpSteer prompts). Each round: `samples_per_prompt` responses per prompt
from the current policy, graded by the same model with the additive 5-point rubric
(evaluation/judges.py; `judge_scorer` "expected" = E[score] in one pass, "sampled" = the mean of
`judge_samples` judgments), best vs worst as a DPO pair (ties skipped), DPO from the current
iterate, which is also the reference. See helpsteer_jax/iterative.py.
"""
import ml_collections

from helpsteer_jax.training.configs import HELPSTEER_SAMPLE_PATH, model_block, parse_arg

VARIANTS = ("tiny", "smollm2")


def dpo_block(variant: str) -> ml_collections.ConfigDict:
  """The DPO run of each round: experiments/dpo.py's config for `variant`."""
  from pathlib import Path  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training import launch  # pylint: disable=g-import-not-at-top
  return launch.load_config(f"{Path(__file__).with_name('dpo.py')}:{variant}")


def base(kind: str, variant: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.policy = model_block("tiny" if variant == "tiny" else "smollm2")
  c.prompts = ml_collections.ConfigDict(dict(
      spec=dict(format="helpsteer_ratings", path=HELPSTEER_SAMPLE_PATH, split="train",
                validation_fraction=0.1),
      max_prompts=4 if variant == "tiny" else 32, max_prompt_length=256))
  c.loop = ml_collections.ConfigDict(dict(
      kind=kind, rounds=2, samples_per_prompt=4, max_new_tokens=8 if variant == "tiny" else 128,
      temperature=0.8, top_p=0.95, batch_size=8, judge_scorer="expected", judge_samples=3,
      min_score_gap=0.0,
      monitor=""))  # a scalar reward model that scores every round's generations (outside check)
  c.dpo = dpo_block(variant)
  if variant == "tiny":
    c.dpo.train.update(steps=2, epochs=1.0)
    c.dpo.data.update(max_train_examples=0, max_eval_examples=0)
  else:
    c.dpo.train.update(steps=0, epochs=1.0)
  return c


def get_config(arg: str = "tiny"):
  variant, _ = parse_arg(arg, VARIANTS)
  return base("self_rewarding", variant)

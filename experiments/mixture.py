"""Bradley-Terry on a weighted mixture of preference sources (helpsteer_jax/data/mixture.py).

  python -m helpsteer_jax.train --config experiments/mixture.py:smollm2 --workdir /tmp/rm_mix
  # a source's share, the mixture's size, or how weights are read:
  ... --config.data.train.mixture.arena.weight=2 --config.data.train.size=4000 \
      --config.data.train.weighting=proportions

The mixture is the small study's preference mix (projects/reproduce_small), each source once
("sizes" weighting, all weights 1: the plain concatenation the study used) beside the packaged
HelpSteer sample's same-prompt pairs: Anthropic HH helpful and harmless, PandaLM, the first 250
Stack Exchange questions, Chatbot Arena; 10% of each file's prompts held out (the study's split).
Validation is on the HelpSteer sample's held-out prompts. The shared files are read from
../shared/data (or $HELPSTEER_SHARED_DATA). Variants: tiny (a random tiny model, 32 drawn
examples), smollm2.
"""
import ml_collections

from helpsteer_jax.training.configs import HELPSTEER_SAMPLE_PATH, SHARED_DATA, get_base_config

# (name, format, file under the shared data folder, first rows only): the small study's mix.
PREFERENCE_MIX = (
    ("hh_helpful", "hh_rlhf", "hh_rlhf_helpful_train_sample500.jsonl", 0),
    ("hh_harmless", "hh_rlhf", "hh_rlhf_harmless_train_sample500.jsonl", 0),
    ("pandalm", "pandalm", "pandalm_testset_v1.json", 0),
    ("stack_exchange", "stack_exchange", "stack_exchange_preferences_sample500.jsonl", 250),
    ("arena", "arena", "arena_human_preference_sample500.jsonl", 0),
)


def mixture(data_dir: str = SHARED_DATA, validation_fraction: float = 0.1,
            weighting: str = "sizes", size: int = 0) -> ml_collections.ConfigDict:
  """The HelpSteer sample's pairs and the study's five sources, every weight 1."""
  sources = {"helpsteer": dict(format="helpsteer_ratings_pairs", path=HELPSTEER_SAMPLE_PATH,
                               split="train", weight=1.0)}
  for name, fmt, file, max_rows in PREFERENCE_MIX:
    sources[name] = dict(format=fmt, path=f"{data_dir}/{file}", split="train",
                         validation_fraction=validation_fraction, max_rows=max_rows,
                         skip_invalid=True,  # counted in the run log's per-source report
                         weight=1.0)
  return ml_collections.ConfigDict(dict(mixture=sources, size=size, weighting=weighting))


def get_config(variant: str = "tiny"):
  c = get_base_config("bt", variant)
  c.data.train = mixture(size=32 if variant == "tiny" else 0)
  if variant == "tiny":
    c.data.max_train_examples = 0  # the mixture's size is the cap
  return c

"""The loaders on the real files in ../shared/data (skipped when the folder is absent)."""
import collections
import json
from math import comb

import numpy as np
import pytest

from helpsteer_jax.data import (DataError, PairBatcher, encode_pairs, load_preferences,
                                load_ratings)

pytestmark = pytest.mark.needs_data

HH_FILES = ("hh_rlhf_harmless_base_test.jsonl.gz", "hh_rlhf_helpful_train_sample500.jsonl",
            "hh_rlhf_harmless_train_sample500.jsonl")


def _well_formed(pairs):
  for p in pairs:
    assert p.messages[-1]["role"] == "user" and p.messages[-1]["content"].strip()
    assert p.chosen.strip() and p.rejected.strip() and p.chosen != p.rejected
    assert p.strength > 0 and p.row >= 1


def test_helpsteer_ratings_and_matched_pairs_account_for_every_pair(shared_data):
  path = str(shared_data / "helpsteer_v1_sample.jsonl")
  rated, counts = load_ratings({"format": "helpsteer_ratings", "path": path})
  assert (counts.rows, counts.kept, counts.invalid) == (500, 500, 0)
  assert all(set(r.attributes) == {"helpfulness", "correctness", "coherence", "complexity",
                                   "verbosity"} for r in rated)
  sizes = collections.Counter(json.loads(line)["prompt"] for line in open(path, encoding="utf-8"))
  assert sum(1 for n in sizes.values() if n == 4) == 105
  pairs, pcounts = load_preferences({"format": "helpsteer_ratings_pairs", "path": path}, loss="bt")
  _well_formed(pairs)
  candidates = sum(comb(n, 2) for n in sizes.values())
  assert pcounts.kept + pcounts.dropped_tie + pcounts.skipped.get(
      "identical_responses", 0) == candidates
  assert {p.strength for p in pairs} <= {1.0, 2.0, 3.0}


@pytest.mark.parametrize("name", HH_FILES)
def test_hh_rlhf_files(shared_data, name):
  spec = {"format": "hh_rlhf", "path": str(shared_data / name)}
  with pytest.raises(DataError, match=f"^{name}:[0-9]+: "):  # a few real rows have empty replies
    load_preferences(spec)
  pairs, counts = load_preferences(dict(spec, skip_invalid=True))
  _well_formed(pairs)
  assert counts.kept + counts.invalid == counts.rows and counts.invalid <= counts.rows // 100


def test_pandalm_votes(shared_data):
  pairs, counts = load_preferences({"format": "pandalm", "skip_invalid": True,
                                    "path": str(shared_data / "pandalm_testset_v1.json")})
  _well_formed(pairs)
  assert counts.rows == 999 and counts.kept + counts.dropped_tie + counts.invalid == 999
  assert {p.strength for p in pairs} == {1.0, 2.0, 3.0}


def test_stack_exchange_and_arena(shared_data):
  se, se_counts = load_preferences({
      "format": "stack_exchange", "path": str(shared_data / "stack_exchange_preferences_sample500.jsonl")})
  _well_formed(se)
  assert se_counts.rows == 500 and {p.strength for p in se} <= {1.0, 2.0, 3.0}
  arena, a = load_preferences({"format": "arena", "skip_invalid": True,
                               "path": str(shared_data / "arena_human_preference_sample500.jsonl")})
  _well_formed(arena)
  assert a.kept + a.dropped_tie + a.invalid + sum(a.skipped.values()) == a.rows == 500


def test_rewardbench_through_the_generic_loader(shared_data):
  pairs, counts = load_preferences({"format": "chosen_rejected",
                                    "path": str(shared_data / "rewardbench_filtered_head500.jsonl")})
  _well_formed(pairs)
  assert (counts.rows, counts.kept, counts.invalid) == (500, 500, 0)
  assert all(len(p.messages) == 1 and p.strength == 1.0 for p in pairs)


def test_real_pairs_tokenise_within_max_length_and_batch_with_less_padding(
    shared_data, smollm2_tokenizer):
  pairs, counts = load_preferences({
      "format": "helpsteer_ratings_pairs", "path": str(shared_data / "helpsteer_v1_sample.jsonl")})
  before = counts.kept
  enc = encode_pairs(pairs, smollm2_tokenizer, 1024, counts)
  assert counts.kept == len(enc) == before - counts.too_long and counts.too_long > 0
  assert all(p.length <= 1024 for p in enc)
  ours = [b for b in PairBatcher(enc, 8, seed=0, pad_to_multiple_of=32)]
  real = sum(int((b["attention_mask"] * b["weight"][:, None, None]).sum()) for b in ours)
  ours_total = sum(b["attention_mask"].size for b in ours)
  naive_total = sum(8 * 2 * max(p.length for p in enc[s:s + 8]) for s in range(0, len(enc), 8))
  assert real == sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in enc)
  assert 1 - real / ours_total < 0.5 * (1 - real / naive_total)
  assert np.isfinite([b["strength"] for b in ours]).all()

"""Share of batch tokens that are padding: length-grouped batching vs naive fixed-order batching.

  HF_HUB_OFFLINE=1 python benchmarks/padding.py [--data ../shared/data] [--batch-size 8]

For each real preference file in ../shared/data (and their mix), with the SmolLM2 tokenizer at
max_length 1024 and 2048: the counts report, then the padding share of
  - naive: file order, each batch padded to its longest pair (no rounding);
  - ours: `PairBatcher` (shuffled, length-grouped), L rounded up to `pad_to_multiple_of`;
  - floor: the padding that the [B, 2, L] layout forces even with L = each pair's own longer side
    (chosen and rejected share L, so their length difference is padding whatever the batching);
  - packed: `PackedPairBatcher` (whole pairs several to a row with segment ids, first-fit-
    decreasing per chunk of 64 batches), rows of the longest pair rounded up to 64 tokens,
    `--batch-size` rows per batch, at most 16 pairs per row.
Filler rows of the last batch count as padding. The HelpSteer ratings file is also measured as a
ratings set ([B, L], no pair floor).
"""
from __future__ import annotations

import argparse
import bisect
import os
import sys
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpsteer_jax.data import (Counts, PackedPairBatcher, PairBatcher,  # noqa: E402
                                RatingBatcher, encode_pairs, encode_ratings, load_preferences,
                                load_ratings)

ROOT = Path(__file__).resolve().parents[1]
PAIR_FILES = (  # (format, file); skip_invalid: the real files hold a few empty replies
    ("helpsteer_ratings_pairs", "helpsteer_v1_sample.jsonl"),
    ("hh_rlhf", "hh_rlhf_harmless_base_test.jsonl.gz"),
    ("hh_rlhf", "hh_rlhf_helpful_train_sample500.jsonl"),
    ("hh_rlhf", "hh_rlhf_harmless_train_sample500.jsonl"),
    ("pandalm", "pandalm_testset_v1.json"),
    ("stack_exchange", "stack_exchange_preferences_sample500.jsonl"),
    ("arena", "arena_human_preference_sample500.jsonl"),
    ("chosen_rejected", "rewardbench_filtered_head500.jsonl"),
)


def padding_share(batches, key: str = "attention_mask") -> float:
  real = total = 0
  for b in batches:
    if "segment_ids" in b:  # packed: padding and empty rows have segment 0
      m = b[key]
    else:
      m = b[key] * b["weight"].reshape((-1,) + (1,) * (b[key].ndim - 1))
    real += int(m.sum())
    total += b[key].size
  return 1.0 - real / total


def naive_pair_share(encoded, batch_size: int) -> float:
  """File order, each batch padded to its longest sequence; filler rows are padding."""
  real = total = 0
  for s in range(0, len(encoded), batch_size):
    chunk = encoded[s:s + batch_size]
    real += sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in chunk)
    total += batch_size * 2 * max(p.length for p in chunk)
  return 1.0 - real / total


def floor_pair_share(encoded) -> float:
  real = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in encoded)
  return 1.0 - real / sum(2 * p.length for p in encoded)


def packed_share(lengths, row_length: int) -> float:
  """Estimate for ratings (not packed by the library yet): best-fit-decreasing of the sequences
  into rows of `row_length`."""
  free: list[int] = []  # sorted free space of the open rows
  for n in sorted(lengths, reverse=True):
    k = bisect.bisect_left(free, n)
    if k == len(free):
      bisect.insort(free, row_length - n)
    else:
      bisect.insort(free, free.pop(k) - n)
  return sum(free) / (len(free) * row_length)


def naive_rating_share(encoded, batch_size: int) -> float:
  real = total = 0
  for s in range(0, len(encoded), batch_size):
    chunk = encoded[s:s + batch_size]
    real += sum(e.length for e in chunk)
    total += batch_size * max(e.length for e in chunk)
  return 1.0 - real / total


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--data", default=os.environ.get("HELPSTEER_SHARED_DATA",
                                                   str(ROOT.parent / "shared" / "data")))
  ap.add_argument("--batch-size", type=int, default=8)
  ap.add_argument("--max-lengths", default="1024,2048")
  ap.add_argument("--multiples", default="1,16,32,64", help="pad_to_multiple_of values to show")
  args = ap.parse_args()
  data = Path(args.data)
  if not data.is_dir():
    sys.exit(f"no data folder {data}")
  from helpsteer_jax.models.sources import load_tokenizer  # pylint: disable=g-import-not-at-top
  tok = load_tokenizer("smollm2")
  multiples = [int(m) for m in args.multiples.split(",")]
  b = args.batch_size
  header = (f"{'source':42s} {'max_len':>7s} {'pairs':>6s} {'naive':>7s} "
            + " ".join(f"{'ours/' + str(m):>8s}" for m in multiples) + f" {'floor':>7s} {'packed':>7s}")
  reports: list[str] = []
  for max_length in (int(x) for x in args.max_lengths.split(",")):
    print(f"\n{header}")
    mix, mix_counts = [], Counts()
    for fmt, name in PAIR_FILES:
      pairs, counts = load_preferences({"format": fmt, "path": str(data / name),
                                        "skip_invalid": True}, loss="bt")
      enc = encode_pairs(pairs, tok, max_length, counts)
      mix += enc
      mix_counts = mix_counts + counts
      reports.append(f"max_length={max_length} {counts.report()}")
      _row(name, max_length, enc, b, multiples, tok.pad_token_id)
    _row("mix (all of the above)", max_length, mix, b, multiples, tok.pad_token_id)
    rated, rcounts = load_ratings({"format": "helpsteer_ratings",
                                   "path": str(data / "helpsteer_v1_sample.jsonl")})
    renc = encode_ratings(rated, tok, max_length, rcounts)
    reports.append(f"max_length={max_length} ratings {rcounts.report()}")
    ours = [padding_share(RatingBatcher(renc, b, seed=0, pad_to_multiple_of=m,
                                        pad_id=tok.pad_token_id)) for m in multiples]
    print(f"{'helpsteer_v1_sample.jsonl (ratings)':42s} {max_length:7d} {len(renc):6d} "
          f"{naive_rating_share(renc, b):7.1%} " + " ".join(f"{x:8.1%}" for x in ours)
          + f" {'-':>7s} {packed_share([e.length for e in renc], max_length):7.1%}")
  print("\ncounts:")
  for r in reports:
    print(" ", r)


def _row(name: str, max_length: int, enc, b: int, multiples, pad_id: int) -> None:
  ours = [padding_share(PairBatcher(enc, b, seed=0, pad_to_multiple_of=m, pad_id=pad_id))
          for m in multiples]
  print(f"{name:42s} {max_length:7d} {len(enc):6d} {naive_pair_share(enc, b):7.1%} "
        + " ".join(f"{x:8.1%}" for x in ours) + f" {floor_pair_share(enc):7.1%}"
        + f" {_packed(enc, b, pad_id):7.1%}")


def _packed(enc, b: int, pad_id: int) -> float:
  return padding_share(PackedPairBatcher(enc, b, seed=0, pad_to_multiple_of=64, pad_id=pad_id))


if __name__ == "__main__":
  main()

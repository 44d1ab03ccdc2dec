"""Real-data throughput of the three batch layouts: pad-to-longest, length-grouped, packed.

  HF_HUB_OFFLINE=1 python benchmarks/packing.py                 # scoring (forward), 96 pairs
  HF_HUB_OFFLINE=1 python benchmarks/packing.py --mode train --pairs 24

The same random subset of real pairs (the shared files' mix, SmolLM2 tokenizer, max_length 1024)
goes through a SmolLM2-135M-shaped reward model (random weights, float32, scan over layers; full
remat in train mode, as :smollm2) in three layouts:
  naive   file order, `--batch` pairs per [B, 2, L] batch, L = the batch's longest sequence
  grouped PairBatcher: length-grouped batches, L rounded up to 64 (the library's default path)
  packed  PackedPairBatcher: whole pairs packed into rows of the longest pair (rounded up to
          64), `--batch` / 2 rows per batch, attention restricted to each sequence
Each layout runs one pass over all its batches first (XLA compiles one program per distinct
shape: reported as `first pass`), then `--rounds` timed passes; the best pass counts. Real
tokens/s counts only non-padding tokens, so it is the figure the layouts compete on; the ratio is
against the naive layout. Packed rows cost more attention per real token (a row's attention
spans its full length, masked), which the figures include.
"""
from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from padding import PAIR_FILES  # noqa: E402  (this folder is on sys.path when run as a script)
from helpsteer_jax.data import (PackedPairBatcher, PairBatcher, encode_pairs,  # noqa: E402
                                load_preferences)
from helpsteer_jax.data.batching import round_up  # noqa: E402


def naive_batches(pairs, b: int, pad_id: int):
  for s in range(0, len(pairs), b):
    chunk = pairs[s:s + b]
    length = max(p.length for p in chunk)
    ids = np.full((b, 2, length), pad_id, np.int32)
    mask = np.zeros((b, 2, length), np.int32)
    weight = np.zeros((b,), np.float32)
    mask[:, :, 0] = 1
    for r, p in enumerate(chunk):
      for side, seq in enumerate((p.chosen, p.rejected)):
        n = len(seq.input_ids)
        ids[r, side, :n], mask[r, side, :], mask[r, side, :n] = seq.input_ids, 0, 1
      weight[r] = 1.0
    yield {"input_ids": ids, "attention_mask": mask, "weight": weight,
           "strength": np.ones((b,), np.float32)}


def real_tokens(batch) -> int:
  if "segment_ids" in batch:
    return int((batch["segment_ids"] > 0).sum())
  return int((batch["attention_mask"] * batch["weight"][:, None, None]).sum())


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--data", default=os.environ.get("HELPSTEER_SHARED_DATA",
                                                   str(ROOT.parent / "shared" / "data")))
  ap.add_argument("--mode", choices=("score", "train"), default="score")
  ap.add_argument("--pairs", type=int, default=96)
  ap.add_argument("--batch", type=int, default=4, help="pairs per unpacked batch")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--max-length", type=int, default=1024)
  args = ap.parse_args()
  from helpsteer_jax.models import PRESETS, LlamaRewardModel  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.models.sources import load_tokenizer  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training import objectives  # pylint: disable=g-import-not-at-top

  tok = load_tokenizer("smollm2")
  mix = []
  for fmt, name in PAIR_FILES:
    if name.startswith("rewardbench"):
      continue  # evaluation data, not training data
    pairs, counts = load_preferences({"format": fmt, "path": str(Path(args.data) / name),
                                      "skip_invalid": True}, loss="bt")
    mix += encode_pairs(pairs, tok, args.max_length, counts)
  pick = np.random.default_rng(0).choice(len(mix), size=min(args.pairs, len(mix)), replace=False)
  pairs = [mix[i] for i in sorted(pick)]
  pad = tok.pad_token_id
  layouts = {
      "naive": list(naive_batches(pairs, args.batch, pad)),
      "grouped": list(PairBatcher(pairs, args.batch, seed=0, pad_id=pad, pad_to_multiple_of=64)),
      "packed": list(PackedPairBatcher(pairs, max(1, args.batch // 2), seed=0, pad_id=pad,
                                       pad_to_multiple_of=64)),
  }
  total = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs)
  print(f"{len(pairs)} pairs from the mix, {total} real tokens; mode={args.mode}; "
        f"longest pair {max(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs)}"
        f" -> packed rows of {round_up(max(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in pairs), 64)}")

  cfg = PRESETS["smollm2_135m"].replace(scan_layers=True)
  if args.mode == "train":
    cfg = cfg.replace(remat_policy="full")
  model = LlamaRewardModel(cfg, num_labels=1)
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  params = nn.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"])
  if args.mode == "score":
    fn = jax.jit(lambda p, b: objectives.pair_rewards(model, p, b))
    run = lambda b: jax.block_until_ready(fn(params, b))
  else:
    import optax  # pylint: disable=g-import-not-at-top
    from helpsteer_jax.training.state import TrainState  # pylint: disable=g-import-not-at-top
    from helpsteer_jax.training.step import train_step  # pylint: disable=g-import-not-at-top
    tx = optax.adamw(1e-5, b1=0.9, b2=0.98, weight_decay=0.1)
    holder = [TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                         rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32))]
    step = jax.jit(functools.partial(train_step, objective=objectives.pairwise_objective(
        model, "bt"), tx=tx), donate_argnums=0)

    def run(b):
      holder[0], m = step(holder[0], b)
      m["loss"].block_until_ready()

  print(f"\n{'layout':8s} {'batches':>7s} {'shapes':>6s} {'slots':>8s} {'padding':>8s} "
        f"{'first pass s':>12s} {'best pass s':>11s} {'real tok/s':>10s} {'vs naive':>8s}")
  rows = {}
  for name, batches in layouts.items():
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    assert sum(real_tokens(b) for b in batches) == total, name  # every pair, exactly once
    slots = sum(b["input_ids"].size for b in batches)
    shapes = len({b["input_ids"].shape for b in batches})
    t0 = time.perf_counter()
    for b in batches:
      run(b)
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(args.rounds):
      t0 = time.perf_counter()
      for b in batches:
        run(b)
      best = min(best, time.perf_counter() - t0)
    rows[name] = (len(batches), shapes, slots, 1 - total / slots, first, best, total / best)
  for name, (n, shapes, slots, pad_share, first, best, tps) in rows.items():
    print(f"{name:8s} {n:7d} {shapes:6d} {slots:8d} {pad_share:8.1%} {first:12.1f} {best:11.1f} "
          f"{tps:10.1f} {tps / rows['naive'][6]:7.2f}x")


if __name__ == "__main__":
  main()

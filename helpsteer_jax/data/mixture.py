"""A weighted mixture of data sources, drawn once before training: deterministic and counted.

In a config, `data.train` is either one source spec (data/spec.py) or named sources with weights:

  data.train = {"mixture": {
      "helpsteer": {"format": "helpsteer_ratings_pairs", "path": "...", "weight": 2.0},
      "hh":        {"format": "hh_rlhf", "path": "Anthropic/hh-rlhf", "split": "train",
                    "weight": 1.0},
      "qa":        {"format": "chosen_rejected", "path": "qa.jsonl", "weight": 1.0,
                    "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}}},
    "size": 0,  # examples in the mixture; 0 = as many as all sources hold together
    "weighting": "proportions"}  # or "sizes"

With `weighting="proportions"` (the default) the weights are shares of the mixture, normalised to
sum to 1 whatever the sources' sizes (levanter's and `datasets.interleave_datasets`' sense); with
"sizes" each weight multiplies its source's size (1: every example once, the plain concatenation;
2: twice; 0.5: a half), and `size` 0 means the sum of those. Either way source i gives
round(p_i * size) examples (largest remainders, so they sum to `size`), drawn
without replacement from a seeded permutation of its examples and, past its size, from further
permutations (whole passes, so no example repeats more than once more than another). The draw
happens once, from (seed, source name), so it is the same on every host and on every restart;
the batcher over the drawn list shuffles per epoch and resumes exactly as for a single source.
Each source's counts report (rows read, skipped, too long) comes with how many it gave and in
how many passes.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np

from helpsteer_jax.data.records import DataError

T = TypeVar("T")
_MIX_KEYS = ("mixture", "size", "weighting")
WEIGHTINGS = ("proportions", "sizes")


def is_mixture(source: Any) -> bool:
  return source is not None and "mixture" in source


@dataclasses.dataclass(frozen=True)
class Component:
  name: str
  spec: dict[str, Any]  # a data spec (data/spec.py), without the weight
  weight: float


def components(source: Mapping[str, Any]) -> list[Component]:
  """The named, weighted sources of a `{"mixture": {...}}` config entry, in config order."""
  source = source.to_dict() if hasattr(source, "to_dict") else dict(source)
  unknown = set(source) - set(_MIX_KEYS)
  if unknown:
    raise DataError(f"unknown mixture key(s) {sorted(unknown)}; known: {list(_MIX_KEYS)}")
  out = []
  for name, spec in dict(source["mixture"]).items():
    spec = dict(spec)
    if "weight" not in spec:
      raise DataError(f"mixture source {name!r} has no weight")
    weight = float(spec.pop("weight"))
    if not weight > 0:
      raise DataError(f"mixture source {name!r}: weight must be > 0, got {weight}")
    out.append(Component(name, spec, weight))
  if not out:
    raise DataError("the mixture names no sources")
  return out


def _seed(seed: int, name: str) -> list[int]:
  digest = hashlib.sha256(name.encode()).digest()
  return [int(seed), int.from_bytes(digest[:8], "little")]


def allocate(weights: Sequence[float], size: int) -> list[int]:
  """round(p_i * size) by largest remainders: non-negative, summing to `size` exactly."""
  p = np.asarray(weights, np.float64) / np.sum(weights)
  exact = p * size
  out = np.floor(exact).astype(int)
  for i in np.argsort(-(exact - out), kind="stable")[:size - int(out.sum())]:
    out[i] += 1
  return out.tolist()


def draw(items: Sequence[T], n: int, seed: int, name: str) -> tuple[list[T], int]:
  """n items of one source (seeded by its name) and the number of passes over it they take."""
  if not items:
    raise DataError(f"mixture source {name!r} has no examples left to draw from")
  rng = np.random.default_rng(_seed(seed, name))
  order: list[int] = []
  passes = 0
  while len(order) < n:
    order.extend(rng.permutation(len(items))[:n - len(order)].tolist())
    passes += 1
  return [items[i] for i in order], passes


def mix(sources: Mapping[str, Sequence[T]], weights: Mapping[str, float], *, seed: int,
        size: int = 0, weighting: str = "proportions") -> tuple[list[T], list[str]]:
  """(the mixture in source order, one report line per source)."""
  if weighting not in WEIGHTINGS:
    raise DataError(f"mixture weighting {weighting!r}: one of {WEIGHTINGS}")
  names = list(sources)
  shares = [float(weights[n]) for n in names]
  if weighting == "sizes":
    shares = [w * len(sources[n]) for w, n in zip(shares, names)]
    size = int(size) or int(round(sum(shares)))
  size = int(size) or sum(len(sources[n]) for n in names)
  if not sum(shares) > 0:
    raise DataError(f"the mixture's sources {names} hold no examples")
  counts = allocate(shares, size)
  out: list[T] = []
  lines = []
  for name, share, n in zip(names, shares, counts):
    items, passes = draw(sources[name], n, seed, name) if n else ([], 0)
    out.extend(items)
    lines.append(f"mixture {name}: share {share / sum(shares):.3f} -> {n} of "
                 f"{len(sources[name])} examples ({passes} pass{'es' if passes != 1 else ''})")
  return out, lines

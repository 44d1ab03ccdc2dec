"""The study's data: every source encoded once, as distinct sequences plus index sets.

Three groups of token sequences (helpsteer, mix, rewardbench), each holding every distinct
sequence once in a fixed (length-sorted) order, so the backbone runs once per sequence and the
feature cache (features.py) is deterministic. Ratings and pairs are index sets into a group:
`RatingSet` (HelpSteer ratings, for regression) and `PairSet` (chosen/rejected indices with a
strength, source and response lengths). Every source goes through the library's loaders and
encoders (helpsteer_jax.data) exactly as the trainer and the evaluator read them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from helpsteer_jax.data import encode_pairs, encode_ratings, load_preferences, load_ratings
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import ATTRIBUTES
from helpsteer_jax.evaluation.rows import load_pairs
from projects.reproduce_small.config import MIX


@dataclasses.dataclass
class PairSet:
  """Pairs as indices into one feature group's sequence list."""
  chosen: np.ndarray  # int [P]
  rejected: np.ndarray  # int [P]
  strength: np.ndarray  # float [P]
  source: list[str]  # per pair
  chosen_len: np.ndarray  # response tokens, for the length-bias figures
  rejected_len: np.ndarray


@dataclasses.dataclass
class RatingSet:
  index: np.ndarray  # int [N]
  labels: np.ndarray  # float [N, 5]
  label_mask: np.ndarray  # float [N, 5]


class Group:
  """The distinct token sequences of one data group, in a fixed (length-sorted) order."""

  def __init__(self, name: str):
    self.name = name
    self._index: dict[bytes, int] = {}
    self.sequences: list[np.ndarray] = []

  def add(self, ids: np.ndarray) -> int:
    key = np.asarray(ids, np.int32).tobytes()
    if key not in self._index:
      self._index[key] = len(self.sequences)
      self.sequences.append(np.asarray(ids, np.int32))
    return self._index[key]

  def finalize(self) -> np.ndarray:
    """Sorts sequences by (length, ids); returns old -> new index map."""
    order = sorted(range(len(self.sequences)),
                   key=lambda i: (len(self.sequences[i]), self.sequences[i].tobytes()))
    remap = np.empty(len(order), np.int64)
    remap[np.asarray(order, np.int64)] = np.arange(len(order))
    self.sequences = [self.sequences[i] for i in order]
    self._index = {s.tobytes(): k for k, s in enumerate(self.sequences)}
    return remap


def _pairs(group: Group, encoded: list, source: str | list[str]) -> PairSet:
  c = [group.add(e.chosen.input_ids) for e in encoded]
  r = [group.add(e.rejected.input_ids) for e in encoded]
  srcs = source if isinstance(source, list) else [source] * len(encoded)
  return PairSet(np.asarray(c), np.asarray(r),
                 np.asarray([e.strength for e in encoded], np.float32), srcs,
                 np.asarray([len(e.chosen.input_ids) - e.chosen.prompt_len for e in encoded]),
                 np.asarray([len(e.rejected.input_ids) - e.rejected.prompt_len for e in encoded]))


def _remap(ps: PairSet | RatingSet, remap: np.ndarray) -> None:
  if isinstance(ps, PairSet):
    ps.chosen, ps.rejected = remap[ps.chosen], remap[ps.rejected]
  else:
    ps.index = remap[ps.index]


def _concat(sets: list[PairSet]) -> PairSet:
  return PairSet(*(np.concatenate([getattr(s, f) for s in sets]) if f != "source"
                   else sum((s.source for s in sets), [])
                   for f in ("chosen", "rejected", "strength", "source", "chosen_len",
                             "rejected_len")))


def build_data(study: dict[str, Any], data_dir: str, tokenizer: Any) -> dict[str, Any]:
  """Encodes every source once; returns groups and index sets plus the counts reports."""
  d = Path(data_dir)
  reports: list[str] = []
  hs, mix, rb = Group("helpsteer"), Group("mix"), Group("rewardbench")
  out: dict[str, Any] = {"groups": {"helpsteer": hs, "mix": mix, "rewardbench": rb}}

  # Matched HelpSteer data: ratings and pairs from the same rows, the same held-out prompts.
  for split in ("train", "validation"):
    spec = dict(path=str(d / study["hs_file"]), split=split,
                validation_fraction=study["hs_validation_fraction"])
    rated, counts = load_ratings(dict(spec, format="helpsteer_ratings",
                                      attributes=tuple(ATTRIBUTES)))
    enc = encode_ratings(rated, tokenizer, study["hs_max_length"], counts=counts)
    reports.append(counts.report())
    labels, label_mask = rating_labels(enc)
    out[f"hs_ratings_{split}"] = RatingSet(
        np.asarray([hs.add(e.sequence.input_ids) for e in enc]), labels, label_mask)
    pairs, counts = load_preferences(dict(spec, format="helpsteer_ratings_pairs"), loss="bt")
    enc = encode_pairs(pairs, tokenizer, study["hs_max_length"], counts=counts)
    reports.append(counts.report())
    out[f"hs_pairs_{split}"] = _pairs(hs, enc, "helpsteer")

  # The larger preference mix.
  for split in ("train", "validation"):
    sets = [_pairs(mix, enc, name)
            for name, enc in mix_pairs(study, d, tokenizer, split, reports.append)]
    out[f"mix_pairs_{split}"] = _concat(sets)

  # RewardBench rows, encoded as the built-in evaluator does.
  kept_rows, seqs = rewardbench_rows(d / study["rb_file"], tokenizer, study["rb_max_length"],
                                     reports.append)
  c = [rb.add(pair[0].input_ids) for pair in seqs]
  r = [rb.add(pair[1].input_ids) for pair in seqs]
  cl = [len(pair[0].input_ids) - pair[0].prompt_len for pair in seqs]
  rl = [len(pair[1].input_ids) - pair[1].prompt_len for pair in seqs]
  out["rb_pairs"] = PairSet(np.asarray(c), np.asarray(r), np.ones(len(c), np.float32),
                            [p.subset for p in kept_rows], np.asarray(cl), np.asarray(rl))
  out["rb_ids"] = [p.id for p in kept_rows]

  for g in (hs, mix, rb):
    remap = g.finalize()
    for key, val in out.items():
      if isinstance(val, (PairSet, RatingSet)) and _group_of(key) == g.name:
        _remap(val, remap)
  out["reports"] = reports
  return out


def rating_labels(encoded: list) -> tuple[np.ndarray, np.ndarray]:
  """(labels [N, 5] in ATTRIBUTES order, 0 where unrated; label mask [N, 5])."""
  labels = np.asarray([[np.nan if e.attributes.get(a) is None else e.attributes[a]
                        for a in ATTRIBUTES] for e in encoded], np.float32).reshape(-1, 5)
  return np.nan_to_num(labels), (~np.isnan(labels)).astype(np.float32)


def mix_pairs(study: dict[str, Any], data_dir: Path, tokenizer: Any, split: str,
              report: Callable[[str], None]) -> list[tuple[str, list]]:
  """(source name, encoded pairs) of every preference-mix source for `split`, in MIX order."""
  out = []
  for name, fmt, file in MIX:
    pairs, counts = load_preferences(dict(format=fmt, path=str(data_dir / file), split=split,
                                          validation_fraction=study["mix_validation_fraction"],
                                          skip_invalid=True),  # counted in the report
                                     loss="bt")
    if name == "stack_exchange":
      kept = [p for p in pairs if p.row <= study["se_questions"]]
      counts.skip("beyond_se_questions", len(pairs) - len(kept))
      pairs = kept
    enc = encode_pairs(pairs, tokenizer, study["mix_max_length"], counts=counts)
    report(counts.report())
    out.append((name, enc))
  return out


def rewardbench_rows(path: Path, tokenizer: Any, max_length: int,
                     report: Callable[[str], None]) -> tuple[list, list]:
  """(rows, [(chosen, rejected) encoded]) of the RewardBench rows that fit `max_length`, in
  file order, encoded as the built-in evaluator encodes them."""
  rows = load_pairs(str(path))
  encoded = ChatEncoder(tokenizer, max_length).encode_many(
      [(p.messages, (p.chosen, p.rejected)) for p in rows], [f"{p.source}:{p.line}" for p in rows])
  kept = [(p, seqs) for p, (seqs, _) in zip(rows, encoded) if seqs is not None]
  report(f"{path.name}: rows={len(rows)} kept={len(kept)} too_long={len(rows) - len(kept)} "
         f"(max_length {max_length})")
  return [p for p, _ in kept], [seqs for _, seqs in kept]


def _group_of(key: str) -> str:
  return {"hs": "helpsteer", "mix": "mix", "rb": "rewardbench"}[key.split("_")[0]]

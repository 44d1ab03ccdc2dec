"""The training and validation data named by a config, as batchers, with the counts report.

What a batch holds (pairs or rated responses, response masks, packing) is the paradigm's
(training/tasks.py); where the files are is the config's.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

from pathlib import Path

from helpsteer_jax.data import mixture
from helpsteer_jax.data import (DataError, PackedPairBatcher, PairBatcher, RatingBatcher,
                                encode_pairs, encode_ratings, load_preferences, load_ratings)
from helpsteer_jax.data.paths import missing_file_message
from helpsteer_jax.data.reading import is_local_file
from helpsteer_jax.training.tasks import task_for


@dataclasses.dataclass
class Data:
  train: PairBatcher | PackedPairBatcher | RatingBatcher
  eval: PairBatcher | None
  report: str
  eval_ratings: RatingBatcher | None = None  # regression: held-out rated responses

  def eval_batches(self) -> Iterator[dict[str, Any]]:
    """One full, fixed-order pass over the validation pairs."""
    return iter(self.eval)

  def total_steps(self, train_cfg) -> int:
    if train_cfg.steps > 0:
      return int(train_cfg.steps)
    return max(1, math.ceil(train_cfg.epochs * len(self.train)))


def check_paths(data_cfg, keys: tuple[str, ...] = ("train", "eval", "eval_ratings")) -> None:
  """Fails before any work when a local data file the config names is missing, naming the file,
  the config key and where its default folder came from."""
  named = []
  for key in keys:
    source = data_cfg.get(key)
    if mixture.is_mixture(source):
      named += [(f"data.{key}.mixture.{part.name}", part.spec)
                for part in mixture.components(source)]
    elif source:
      named.append((f"data.{key}", source))
  for key, source in named:
    path = source.get("path")
    if path and is_local_file(str(path)) and not Path(str(path)).is_file():
      raise DataError(missing_file_message(str(path), f"{key}.path"))


def _spec(source, data_cfg, ratings: bool) -> dict[str, Any]:
  spec = dict(source)
  spec.setdefault("skip_invalid", data_cfg.skip_invalid)
  if data_cfg.validation_fraction and spec.get("split") not in (None, "", "all"):
    spec.setdefault("validation_fraction", data_cfg.validation_fraction)
  if ratings:
    spec.setdefault("attributes", tuple(data_cfg.attributes))
  return spec


def _limit(items: list, n: int) -> list:
  return items[:n] if n and n > 0 else items


def _encoded(spec: dict[str, Any], d, task, tokenizer, loss: str) -> tuple[list, Any]:
  if task.batches == "ratings":
    rated, counts = load_ratings(spec)
    return encode_ratings(rated, tokenizer, d.max_length, counts=counts), counts
  pairs, counts = load_preferences(spec, loss=loss)
  return encode_pairs(pairs, tokenizer, d.max_length, counts=counts), counts


def _train_examples(d, task, tokenizer, loss: str) -> tuple[list, list[str]]:
  """The encoded training examples of one source or of a weighted mixture, and report lines."""
  ratings = task.batches == "ratings"
  if not mixture.is_mixture(d.train):
    encoded, counts = _encoded(_spec(d.train, d, ratings), d, task, tokenizer, loss)
    return encoded, [f"train {counts.report()} -> {len(encoded)} examples"]
  parts = mixture.components(d.train)
  sources, lines = {}, []
  for part in parts:
    sources[part.name], counts = _encoded(_spec(part.spec, d, ratings), d, task, tokenizer, loss)
    lines.append(f"train [{part.name}] {counts.report()} -> {len(sources[part.name])} examples")
  mixed, mix_lines = mixture.mix(sources, {p.name: p.weight for p in parts},
                                 seed=d.shuffle_seed, size=d.train.get("size", 0),
                                 weighting=d.train.get("weighting", "proportions"))
  return mixed, lines + mix_lines


def build_data(config, tokenizer, process_index: int = 0, process_count: int = 1) -> Data:
  d = config.data
  check_paths(d)
  if d.batch_size % process_count or d.eval_batch_size % process_count:
    raise ValueError(f"batch sizes {d.batch_size}/{d.eval_batch_size} must divide over "
                     f"{process_count} processes")
  common = dict(process_index=process_index, process_count=process_count,
                pad_id=tokenizer.pad_token_id, pad_to_multiple_of=d.pad_to_multiple_of)
  task = task_for(config.loss.name)
  reports = []
  if d.get("packing", False) and not task.packable:
    raise ValueError(f"data.packing packs reward-model preference pairs; {task.title} batches "
                     f"are not packed")
  encoded, lines = _train_examples(d, task, tokenizer, config.loss.name)
  encoded = _limit(encoded, d.max_train_examples)
  reports += lines
  if task.batches == "ratings":
    train = RatingBatcher(encoded, d.batch_size // process_count, d.shuffle_seed,
                          attributes=tuple(d.attributes), **common)
  else:
    if d.get("packing", False):
      train = PackedPairBatcher(encoded, d.batch_size // process_count, d.shuffle_seed,
                                row_length=d.pack_length, max_pairs_per_row=d.pack_max_pairs,
                                **common)
    else:
      train = PairBatcher(encoded, d.batch_size // process_count, d.shuffle_seed,
                          response_mask=task.response_mask, **common)
  reports.append(f"train: {len(encoded)} examples")
  eval_batcher = None
  if d.eval:
    # Validation is pairwise accuracy, so ties (no correct answer) are dropped.
    pairs, counts = load_preferences(_spec(d.eval, d, ratings=False), loss="bt")
    encoded = _limit(encode_pairs(pairs, tokenizer, d.max_length, counts=counts),
                     d.max_eval_examples)
    eval_batcher = PairBatcher(encoded, d.eval_batch_size // process_count, 0, shuffle=False,
                               response_mask=task.response_mask, **common)
    reports.append(f"eval {counts.report()} -> {len(encoded)} pairs")
  eval_ratings = None
  if task.eval_ratings and d.eval_ratings:
    rated, counts = load_ratings(_spec(d.eval_ratings, d, ratings=True))
    encoded = _limit(encode_ratings(rated, tokenizer, d.max_length, counts=counts),
                     d.max_eval_examples)
    eval_ratings = RatingBatcher(encoded, d.eval_batch_size // process_count, 0, shuffle=False,
                                 attributes=tuple(d.attributes), **common)
    reports.append(f"eval ratings {counts.report()} -> {len(encoded)} examples")
  return Data(train, eval_batcher, "\n".join(reports), eval_ratings)

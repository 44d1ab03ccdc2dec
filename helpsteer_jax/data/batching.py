"""Deterministic, length-grouped, host-sharded batches with an exact resume position.

The order of an epoch is a pure function of (seed, epoch, example lengths): shuffle, cut into
chunks of `group_batches` global batches, sort each chunk by length, cut it into global batches
and shuffle the batches. Neighbours in length share a batch (little padding) while which examples
meet still changes from epoch to epoch. Every host computes the same plan and materialises only
its slice (rows `process_index * B ... + B`) of each global batch of `process_count * B`; the
padded length L comes from the whole global batch, so all hosts build arrays of the same shape
(`jax.make_array_from_process_local_data` needs that).

L is rounded up to a multiple of `pad_to_multiple_of` to bound the number of distinct shapes XLA
compiles (max_length / multiple of them; L may exceed max_length by less than one multiple). The
default, 32, allows at most 32 shapes at 1024 and 64 at 2048, and on the real files costs 2-7
points of padding over no rounding (16: 1-4 points but twice the compiles; 64: 5-14 points;
benchmarks/padding.py). Configs for large models may prefer 64-256: their compiles cost more.

With chosen and rejected sharing L in [B, 2, L], their length difference is padding whatever the
batching (13% of the tokens on the shared files' mix); only sequence packing removes that.

The last global batch of an epoch is filled with filler rows: weight 0, one attended pad token (an
all-zero attention row would make softmax NaN, and NaN * 0 is still NaN).

Pair batches also carry `mean_strength` [B], the same number in every row: the mean strength of
the real pairs of the whole global batch (all hosts, all micro-batches), or of the whole pass for
a fixed evaluation order (shuffle=False). A loss normalised by the summed strength (Scaled BT,
normalize="strength") divides by it, so that each micro-batch, host and evaluation batch can
normalise its share by the same number (training/objectives.py).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np

from helpsteer_jax.data.encoding import EncodedPair, EncodedRating
from helpsteer_jax.data.records import ATTRIBUTES, DataError

DEFAULT_PAD_TO_MULTIPLE_OF = 32
DEFAULT_GROUP_BATCHES = 64


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class _Batcher:
  """Epoch plans, position, sharding; subclasses turn rows into arrays."""

  def __init__(self, examples: Sequence[Any], batch_size: int, seed: int = 0, *,
               process_index: int = 0, process_count: int = 1, shuffle: bool = True,
               pad_id: int = 0, pad_to_multiple_of: int = DEFAULT_PAD_TO_MULTIPLE_OF,
               group_batches: int = DEFAULT_GROUP_BATCHES):
    if not examples:
      raise DataError("no examples to batch")
    if batch_size < 1 or pad_to_multiple_of < 1 or group_batches < 1:
      raise ValueError("batch_size, pad_to_multiple_of and group_batches must be >= 1")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    self.examples = list(examples)
    self.lengths = np.asarray([ex.length for ex in self.examples], np.int64)
    self.batch_size, self.seed, self.shuffle = batch_size, int(seed), shuffle
    self.process_index, self.process_count = process_index, process_count
    self.global_batch = batch_size * process_count
    self.pad_id, self.multiple, self.group_batches = pad_id, pad_to_multiple_of, group_batches
    self.epoch, self.position = 0, 0
    self._plan_cache: tuple[int, np.ndarray] | None = None

  # --- the plan: global batches of example indices (-1 = filler), one row per batch
  def plan(self, epoch: int) -> np.ndarray:
    """int64 [batches, global_batch] example indices of `epoch` in order; -1 marks filler."""
    if self._plan_cache is not None and self._plan_cache[0] == epoch:
      return self._plan_cache[1]
    n, g = len(self.examples), self.global_batch
    if self.shuffle:
      rng = np.random.default_rng([self.seed, epoch])
      order = rng.permutation(n)
      chunk = g * self.group_batches
      # argsort per chunk, stable, so equal lengths keep their shuffled order
      order = np.concatenate([c[np.argsort(self.lengths[c], kind="stable")]
                              for c in np.split(order, range(chunk, n, chunk))])
    else:  # evaluation: one fixed length-sorted pass
      order = np.argsort(self.lengths, kind="stable")
    batches = np.full((len(self), g), -1, np.int64)
    batches.flat[:n] = order
    if self.shuffle:
      batches = batches[np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))]
    self._plan_cache = (epoch, batches)
    return batches

  def __len__(self) -> int:
    """Global batches per epoch (of the current epoch where epochs differ, see epoch_length)."""
    return self.epoch_length(self.epoch)

  def epoch_length(self, epoch: int) -> int:
    """Global batches in `epoch`; the same for every epoch unless a subclass packs its plan."""
    del epoch
    return -(-len(self.examples) // self.global_batch)

  # --- position
  def state(self) -> dict[str, int]:
    """Where the next batch comes from; JSON-serialisable, for checkpoints."""
    return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
            "num_examples": len(self.examples), "global_batch": self.global_batch}

  def restore(self, state: dict[str, Any]) -> None:
    """Continue exactly after the last batch handed out when `state()` was taken."""
    mine = self.state()
    for key in ("seed", "num_examples", "global_batch"):
      if key in state and int(state[key]) != mine[key]:
        raise DataError(f"cannot resume: the data position was saved with {key}={state[key]}, "
                        f"this run has {mine[key]} (different data or batch settings)")
    epoch, position = int(state["epoch"]), int(state["position"])
    # The saved epoch's length, not the current one's: packed epochs differ in length.
    length = self.epoch_length(epoch)
    if epoch < 0 or not 0 <= position <= length:
      raise DataError(f"cannot resume: position {position} outside epoch {epoch} of {length} "
                      "batches")
    self.epoch, self.position = epoch, position

  # --- iteration
  def _next(self) -> dict[str, np.ndarray]:
    if self.position >= len(self):
      self.epoch, self.position = self.epoch + 1, 0
    batch = self.batch(self.plan(self.epoch)[self.position])
    self.position += 1  # counted as soon as it is handed out: state() then resumes after it
    return batch

  def iterate(self, num_batches: int) -> Iterator[dict[str, np.ndarray]]:
    """The next `num_batches` batches, continuing across epochs."""
    for _ in range(num_batches):
      yield self._next()

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    """The rest of the current epoch (a fresh epoch when the last one is finished)."""
    if self.position >= len(self):
      self.epoch, self.position = self.epoch + 1, 0
    while self.position < len(self):
      yield self._next()

  # --- arrays
  def local_rows(self, global_indices: np.ndarray) -> np.ndarray:
    lo = self.process_index * self.batch_size
    return global_indices[lo:lo + self.batch_size]

  def padded_length(self, global_indices: np.ndarray) -> int:
    real = global_indices[global_indices >= 0]
    return round_up(int(self.lengths[real].max()), self.multiple)

  def batch(self, global_indices: np.ndarray) -> dict[str, np.ndarray]:
    raise NotImplementedError


def _fill(ids: np.ndarray, mask: np.ndarray, seq: np.ndarray) -> None:
  ids[:len(seq)] = seq
  mask[:len(seq)] = 1


def _mean_strength(batcher: "PairBatcher | PackedPairBatcher",
                   global_indices: np.ndarray) -> float:
  """Mean strength of the real pairs of the global batch (of the whole pass if not shuffled)."""
  if batcher.shuffle:
    real = global_indices[global_indices >= 0]
  else:
    real = np.arange(len(batcher.strengths))
  return float(batcher.strengths[real].mean()) if real.size else 0.0


class PairBatcher(_Batcher):
  """Batches of preference pairs: input_ids/attention_mask [B, 2, L] (0 chosen, 1 rejected),
  strength [B], weight [B] (0 for filler), mean_strength [B] (see the module docstring), and
  response_mask [B, 2, L] when asked."""

  def __init__(self, examples: Sequence[EncodedPair], batch_size: int, seed: int = 0, *,
               response_mask: bool = False, **kwargs: Any):
    super().__init__(examples, batch_size, seed, **kwargs)
    self.response_mask = response_mask
    self.strengths = np.asarray([ex.strength for ex in self.examples], np.float64)

  def batch(self, global_indices: np.ndarray) -> dict[str, np.ndarray]:
    b, length = self.batch_size, self.padded_length(global_indices)
    ids = np.full((b, 2, length), self.pad_id, np.int32)
    mask = np.zeros((b, 2, length), np.int32)
    resp = np.zeros((b, 2, length), np.int32)
    strength = np.zeros((b,), np.float32)
    weight = np.zeros((b,), np.float32)
    for r, i in enumerate(self.local_rows(global_indices)):
      if i < 0:
        mask[r, :, 0] = 1
        continue
      ex = self.examples[i]
      for side, seq in enumerate((ex.chosen, ex.rejected)):
        _fill(ids[r, side], mask[r, side], seq.input_ids)
        resp[r, side, seq.prompt_len:len(seq.input_ids)] = 1
      strength[r], weight[r] = ex.strength, 1.0
    out = {"input_ids": ids, "attention_mask": mask, "strength": strength, "weight": weight,
           "mean_strength": np.full((b,), _mean_strength(self, global_indices), np.float32)}
    if self.response_mask:
      out["response_mask"] = resp
    return out


class RatingBatcher(_Batcher):
  """Batches of rated responses: input_ids/attention_mask [B, L], labels/label_mask [B, A] in the
  order of `attributes` (a missing rating has label 0 and mask 0), weight [B]."""

  def __init__(self, examples: Sequence[EncodedRating], batch_size: int, seed: int = 0, *,
               attributes: Sequence[str] = ATTRIBUTES, **kwargs: Any):
    super().__init__(examples, batch_size, seed, **kwargs)
    self.attributes = tuple(attributes)
    for ex in self.examples:
      missing = [a for a in self.attributes if a not in ex.attributes]
      if missing:
        raise DataError(f"{ex.source}:{ex.row}: not loaded with attribute(s) {missing}")

  def batch(self, global_indices: np.ndarray) -> dict[str, np.ndarray]:
    b, a, length = self.batch_size, len(self.attributes), self.padded_length(global_indices)
    ids = np.full((b, length), self.pad_id, np.int32)
    mask = np.zeros((b, length), np.int32)
    labels = np.zeros((b, a), np.float32)
    label_mask = np.zeros((b, a), np.float32)
    weight = np.zeros((b,), np.float32)
    for r, i in enumerate(self.local_rows(global_indices)):
      if i < 0:
        mask[r, 0] = 1
        continue
      ex = self.examples[i]
      _fill(ids[r], mask[r], ex.sequence.input_ids)
      for k, name in enumerate(self.attributes):
        value: Optional[float] = ex.attributes[name]
        if value is not None:
          labels[r, k], label_mask[r, k] = value, 1.0
      weight[r] = 1.0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "label_mask": label_mask, "weight": weight}


class PackedPairBatcher(_Batcher):
  """Preference pairs packed several to a row: no padding between sequences, none of the
  chosen/rejected length difference.

  Each row holds up to `max_pairs_per_row` whole pairs, laid out chosen, rejected, chosen, ...
  with segment ids 1, 2, 3, ... (0 = padding), so that the model attends only within each
  sequence (`LlamaRewardModel.packed`). A pair never straddles rows or batches. Arrays, with
  B = batch_size rows and K = 2 * max_pairs_per_row:
    input_ids, segment_ids, attention_mask (segment_ids > 0)   [B, row_length] int32
    read_index: the last token of each slot's sequence            [B, K] int32 (0 if empty)
    strength, weight (1 for a real pair, 0 for an empty slot)     [B, K / 2] float32
    mean_strength (module docstring)                              [B] float32
  Slot 2j of a row is the chosen side of its j-th pair and slot 2j + 1 the rejected side.

  The plan of an epoch: shuffle, cut into chunks of `group_batches` batches' worth of pairs,
  pack each chunk first-fit-decreasing (longest pair first, into the first row with room), then
  shuffle the rows and cut them into global batches; the last batch is filled with empty rows.
  `batch_size` therefore counts rows, and the number of pairs per step varies (the loss
  normalises by the real pairs, `weight`). Deterministic in (seed, epoch, lengths), so resuming
  works exactly as for `PairBatcher`.
  """

  def __init__(self, examples: Sequence[EncodedPair], batch_size: int, seed: int = 0, *,
               row_length: int = 0, max_pairs_per_row: int = 16, **kwargs: Any):
    super().__init__(examples, batch_size, seed, **kwargs)
    self.strengths = np.asarray([ex.strength for ex in self.examples], np.float64)
    self.pair_lengths = np.asarray([len(ex.chosen.input_ids) + len(ex.rejected.input_ids)
                                    for ex in self.examples], np.int64)
    longest = int(self.pair_lengths.max())
    self.row_length = row_length or round_up(longest, self.multiple)
    if longest > self.row_length:
      ex = self.examples[int(self.pair_lengths.argmax())]
      raise DataError(f"{ex.source}:{ex.row}: pair of {longest} tokens (chosen + rejected) does "
                      f"not fit a packed row of {self.row_length}; raise row_length")
    if max_pairs_per_row < 1:
      raise ValueError("max_pairs_per_row must be >= 1")
    self.pairs_per_row = max_pairs_per_row

  def _pack(self, order: np.ndarray) -> list[list[int]]:
    """First-fit-decreasing of the pairs `order` into rows."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(order.tolist(), key=lambda k: -self.pair_lengths[k]):
      n = self.pair_lengths[i]
      for r, room in enumerate(free):
        if room >= n and len(rows[r]) < self.pairs_per_row:
          rows[r].append(i)
          free[r] -= n
          break
      else:
        rows.append([i])
        free.append(self.row_length - n)
    return rows

  def plan(self, epoch: int) -> np.ndarray:
    """int64 [batches, global_batch rows, max_pairs_per_row] pair indices; -1 marks empty."""
    if self._plan_cache is not None and self._plan_cache[0] == epoch:
      return self._plan_cache[1]
    n, g = len(self.examples), self.global_batch
    if self.shuffle:
      order = np.random.default_rng([self.seed, epoch]).permutation(n)
    else:
      order = np.arange(n)
    chunk = max(g * self.group_batches, 1)
    rows = [row for c in np.split(order, range(chunk, n, chunk)) for row in self._pack(c)]
    if self.shuffle:
      perm = np.random.default_rng([self.seed, epoch, 1]).permutation(len(rows))
      rows = [rows[k] for k in perm]
    num_batches = -(-len(rows) // g)
    plan = np.full((num_batches * g, self.pairs_per_row), -1, np.int64)
    for r, row in enumerate(rows):
      plan[r, :len(row)] = row
    plan = plan.reshape(num_batches, g, self.pairs_per_row)
    self._plan_cache = (epoch, plan)
    return plan

  def epoch_length(self, epoch: int) -> int:
    # How many rows an epoch packs into depends on its shuffle, so every epoch has its own length.
    return len(self.plan(epoch))

  def batch(self, global_rows: np.ndarray) -> dict[str, np.ndarray]:
    b, t, p = self.batch_size, self.row_length, self.pairs_per_row
    ids = np.full((b, t), self.pad_id, np.int32)
    seg = np.zeros((b, t), np.int32)
    read = np.zeros((b, 2 * p), np.int32)
    strength = np.zeros((b, p), np.float32)
    weight = np.zeros((b, p), np.float32)
    for r, row in enumerate(self.local_rows(global_rows)):
      at = 0
      for j, i in enumerate(row[row >= 0]):
        ex = self.examples[i]
        for side, s in enumerate((ex.chosen, ex.rejected)):
          n = len(s.input_ids)
          ids[r, at:at + n] = s.input_ids
          seg[r, at:at + n] = 2 * j + side + 1
          read[r, 2 * j + side] = at + n - 1
          at += n
        strength[r, j], weight[r, j] = ex.strength, 1.0
    return {"input_ids": ids, "segment_ids": seg, "attention_mask": (seg > 0).astype(np.int32),
            "read_index": read, "strength": strength, "weight": weight,
            "mean_strength": np.full((b,), _mean_strength(self, global_rows), np.float32)}

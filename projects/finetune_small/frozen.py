"""Part 2's frozen bottom: the residual stream below the trained top layers, computed once, and
the top layers trained and evaluated on it (helpsteer_jax.models.split).

Every variant and seed of part 2 trains the same top `k` layers (and the final norm and the
reward head) of SmolLM2 on the same sequences, so the bottom N - k layers run once per distinct
sequence: `HiddenCache` stores their output [T, D] per sequence (float32, chunked, resumable).
`train_top` then trains the top with the library's objectives (training/objectives.py, which take
the residual stream in place of token ids) and optimiser (training/optimizer.py); `rewards`
scores sequences with a top. `split.join` puts a trained top back on the bottom: an ordinary
reward model that the library's evaluator and transformers read like any other.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from helpsteer_jax.data.batching import round_up
from helpsteer_jax.models import split
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.training.objectives import pairwise_objective, regression_objective
from helpsteer_jax.training.optimizer import make_optimizer
from helpsteer_jax.training.step import COUNT_KEY, loss_and_grads
from projects.reproduce_small.features import FeatureCache

PAD_MULTIPLE = 256  # padded lengths: one compiled shape per multiple (8 up to 2048 tokens)


@dataclasses.dataclass
class Hidden:
  """The residual streams of N sequences, concatenated: sequence i is data[offsets[i]:offsets[i+1]]."""
  data: np.ndarray  # float32 [tokens, D]
  offsets: np.ndarray  # int64 [N + 1]

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def lengths(self, idx: np.ndarray) -> np.ndarray:
    return self.offsets[idx + 1] - self.offsets[idx]

  def batch(self, idx: np.ndarray, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([len(idx), L, D] right-padded with zeros, mask [len(idx), L]); L = the longest rounded up
    to PAD_MULTIPLE unless given."""
    lens = self.lengths(idx)
    length = length or round_up(int(lens.max()), PAD_MULTIPLE)
    h = np.zeros((len(idx), length, self.data.shape[1]), np.float32)
    mask = np.zeros((len(idx), length), np.int32)
    for row, (i, n) in enumerate(zip(idx, lens)):
      h[row, :n] = self.data[self.offsets[i]:self.offsets[i + 1]]
      mask[row, :n] = 1
    return h, mask


@functools.lru_cache(maxsize=None)
def _bottom_apply(bottom_cfg: LlamaConfig):
  """The jitted bottom, one per config (every cache of a study shares its compiled shapes)."""
  model = split.bottom_model(bottom_cfg)
  return jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, mask))


class HiddenCache:
  """Resumable, chunked computation of the bottom's output for a list of sequences: the small
  study's FeatureCache (parts written whole, digest-checked, timed), its features here the
  per-token residual stream of each chunk's sequences, concatenated."""

  def __init__(self, directory: str | os.PathLike, bottom_cfg: LlamaConfig, bottom_params: Any,
               batch_size: int = 8, chunk: int = 64):
    self.batch_size = int(batch_size)
    self._apply, self._params = _bottom_apply(bottom_cfg), bottom_params
    self._cache = FeatureCache(directory, self._compute, chunk=chunk)

  def seconds(self) -> float:
    return self._cache.seconds()

  def _compute(self, seqs: list[np.ndarray]) -> np.ndarray:
    """[sum of the sequences' lengths, D]: each sequence's tokens in order."""
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out: list[np.ndarray | None] = [None] * len(seqs)
    for start in range(0, len(seqs), self.batch_size):
      idx = order[start:start + self.batch_size]
      length = round_up(max(len(seqs[i]) for i in idx), PAD_MULTIPLE)
      ids = np.zeros((self.batch_size, length), np.int32)
      mask = np.zeros((self.batch_size, length), np.int32)
      mask[:, 0] = 1  # filler rows keep one attended token
      for row, i in enumerate(idx):
        ids[row, :len(seqs[i])] = seqs[i]
        mask[row, :len(seqs[i])] = 1
      h = np.asarray(self._apply(self._params, ids, mask), np.float32)
      for row, i in enumerate(idx):
        out[i] = h[row, :len(seqs[i])]
    return np.concatenate(out)

  def __call__(self, sequences: Sequence[np.ndarray],
               log: Callable[[str], None] | None = print) -> Hidden:
    data = self._cache(sequences, log=log)
    lengths = np.asarray([len(s) for s in sequences], np.int64)
    return Hidden(data, np.concatenate([[0], np.cumsum(lengths)]))


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class PairData:
  chosen: np.ndarray  # sequence indices [P]
  rejected: np.ndarray
  strength: np.ndarray  # float [P]


@dataclasses.dataclass
class RatingData:
  index: np.ndarray  # sequence indices [N]
  labels: np.ndarray  # float [N, A]
  label_mask: np.ndarray  # float [N, A]


def _pair_batch(hidden: Hidden, data: PairData, idx: np.ndarray, size: int) -> dict[str, Any]:
  real = len(idx)
  idx = np.pad(idx, (0, size - real))  # fixed batch size; filler rows weigh 0
  seqs = np.stack([data.chosen[idx], data.rejected[idx]], 1).reshape(-1)
  h, mask = hidden.batch(seqs)
  weight = (np.arange(size) < real).astype(np.float32)
  return {"input_ids": h.reshape(size, 2, *h.shape[1:]), "attention_mask":
          mask.reshape(size, 2, -1), "strength": data.strength[idx].astype(np.float32),
          "weight": weight}


def _rating_batch(hidden: Hidden, data: RatingData, idx: np.ndarray, size: int) -> dict[str, Any]:
  real = len(idx)
  idx = np.pad(idx, (0, size - real))
  h, mask = hidden.batch(data.index[idx])
  weight = (np.arange(size) < real).astype(np.float32)
  return {"input_ids": h, "attention_mask": mask, "labels": data.labels[idx].astype(np.float32),
          "label_mask": data.label_mask[idx].astype(np.float32), "weight": weight}


def train_top(top_cfg: LlamaConfig, params: Any, loss: str, hidden: Hidden,
              data: PairData | RatingData, optim: Any, *, epochs: int, batch_size: int,
              seed: int, attributes: tuple[str, ...] = ("helpfulness",), grad_accum: int = 1,
              log: Callable[[str], None] | None = print) -> tuple[Any, list[dict[str, float]]]:
  """Trains a top (parameters `params`) for `epochs` over shuffled batches; returns the trained
  parameters and the per-step losses. `optim` is an experiment config's `optim` block.

  Each batch's gradient is accumulated over `grad_accum` micro-batches, weighted by their
  example counts as the library's `loss_and_grads` does: the update is the whole batch's, with a
  fraction of its activations. The batch is sorted by length before it is split and each
  micro-batch is padded to its own longest sequence, not the batch's, which leaves the update
  unchanged and skips most of the padding of a random batch."""
  pairs = isinstance(data, PairData)
  if batch_size % grad_accum:
    raise ValueError(f"batch of {batch_size} does not split into {grad_accum} micro-batches")
  micro = batch_size // grad_accum
  num_labels = int(np.shape(params["score"]["kernel"])[-1])
  lr = float(optim.lr)
  grad_fn, apply_fn, tx = _step(top_cfg, loss if pairs else "regression", tuple(attributes),
                                num_labels,
                                tuple(sorted((k, v) for k, v in optim.items() if k != "lr")))

  params = jax.tree_util.tree_map(jnp.asarray, params)
  opt_state = tx.init(params)
  n = len(data.chosen) if pairs else len(data.index)
  make = _pair_batch if pairs else _rating_batch
  size = ((lambda i: np.maximum(hidden.lengths(data.chosen[i]), hidden.lengths(data.rejected[i])))
          if pairs else (lambda i: hidden.lengths(data.index[i])))
  curve = []
  t0 = time.perf_counter()
  for epoch in range(epochs):
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
      idx = order[start:start + batch_size]
      idx = idx[np.argsort(size(idx), kind="stable")]
      acc = None  # (count, count * loss, count * gradients) summed on the device
      for m in range(0, len(idx), micro):  # the last batch's filler rows are not run
        part = grad_fn(params, make(hidden, data, idx[m:m + micro], micro))
        acc = part if acc is None else _add(acc, part)
      total, value, grads = acc
      params, opt_state = apply_fn(params, opt_state, grads, total, lr)
      curve.append({"epoch": epoch, "loss": float(value / jnp.maximum(total, 1.0)),
                    "seconds": round(time.perf_counter() - t0, 2)})
    if log is not None:
      log(f"  epoch {epoch + 1}/{epochs}: mean loss "
          f"{np.mean([c['loss'] for c in curve if c['epoch'] == epoch]):.4f}")
  return jax.device_get(params), curve


_add = jax.jit(lambda a, b: jax.tree_util.tree_map(jnp.add, a, b))


@functools.lru_cache(maxsize=None)
def _step(top_cfg: LlamaConfig, loss: str, attributes: tuple[str, ...], num_labels: int,
          optim_items: tuple[tuple[str, Any], ...]):
  """The jitted halves of one (model, loss, optimiser)'s train step: a micro-batch's loss, example
  count and count-weighted gradient; and the update from the summed gradients divided by the
  batch's count. The learning rate is an argument, so every run and learning rate of a loss
  family shares its compiled shapes: the optimiser is built at lr 1 and its updates scaled by lr
  (AdamW's update, weight decay included, is linear in the learning rate, and clipping acts on
  the gradients before it)."""
  model = split.top_model(top_cfg, num_labels)
  objective = (regression_objective(model, attributes) if loss == "regression"
               else pairwise_objective(model, loss))
  tx = make_optimizer(ml_collections.ConfigDict(dict(optim_items, lr=1.0)))

  @jax.jit
  def grad_fn(p, batch):
    value, metrics, grads = loss_and_grads(objective, p, batch)
    count = metrics[COUNT_KEY].astype(jnp.float32)
    # A micro-batch without a label (ratings) has count 0, loss and gradients 0 (safe division).
    return count, count * value, jax.tree_util.tree_map(lambda g: count * g.astype(jnp.float32),
                                                        grads)

  @jax.jit
  def apply_fn(p, opt_state, summed, total, lr):
    grads = jax.tree_util.tree_map(lambda g, x: (g / jnp.maximum(total, 1.0)).astype(x.dtype),
                                   summed, p)
    updates, opt_state = tx.update(grads, opt_state, p)
    updates = jax.tree_util.tree_map(lambda u: lr * u, updates)
    return optax.apply_updates(p, updates), opt_state

  return grad_fn, apply_fn, tx


@functools.lru_cache(maxsize=None)
def _apply(top_cfg: LlamaConfig, num_labels: int):
  model = split.top_model(top_cfg, num_labels)
  return jax.jit(lambda p, h, m: model.apply({"params": p}, h, m))


def rewards(top_cfg: LlamaConfig, params: Any, hidden: Hidden, idx: np.ndarray,
            batch_size: int = 8) -> np.ndarray:
  """Reward-head outputs [len(idx), num_labels] of sequences `idx`, in length-sorted batches."""
  num_labels = int(np.shape(params["score"]["kernel"])[-1])
  apply = _apply(top_cfg, num_labels)
  idx = np.asarray(idx)
  order = np.argsort(hidden.lengths(idx), kind="stable")
  out = np.zeros((len(idx), num_labels), np.float32)
  for start in range(0, len(idx), batch_size):
    rows = order[start:start + batch_size]
    h, mask = hidden.batch(idx[rows])
    pad = batch_size - len(rows)
    if pad:
      h = np.concatenate([h, np.zeros((pad, *h.shape[1:]), h.dtype)])
      mask = np.concatenate([mask, np.eye(1, mask.shape[1], dtype=mask.dtype).repeat(pad, 0)])
    out[rows] = np.asarray(apply(params, h, mask))[:len(rows)]
  return out

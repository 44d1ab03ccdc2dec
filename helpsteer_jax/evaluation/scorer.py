"""Batched scoring of token sequences: the one pad-and-apply loop every scorer uses.

Sequences of different lengths are scored in length-sorted batches of a fixed size, each padded
to a multiple of `pad_to_multiple_of`, so the jitted function compiles once per padded length and
little compute goes to padding. A batch's filler rows (the last batch is rarely full) are
discarded; each keeps one attended token so its softmax stays finite. Results come back in input
order. `evaluate` (RewardBench and pairs), `score` (jsonl rows), the RL trainer's reward model
(rlhf/rewards.py) and the frozen-backbone feature cache of the small study all score through it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax import distributed, sharding
from helpsteer_jax.models.llama import LlamaRewardModel

# fn(params, ids [B, L], mask [B, L], starts [B]) -> [B, ...]
ScoreFn = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]


def reward_fn(model: LlamaRewardModel) -> ScoreFn:
  """A reward model's head outputs [B, num_labels] (`starts` unused)."""

  def fn(params, ids, mask, starts):
    del starts
    return model.apply({"params": params}, ids, mask)

  return fn


class Scorer:
  """Batched, length-sorted scoring with one compiled shape per padded length.

  By default it applies a reward model: `fn(params, ids, mask, starts) -> [B, ...]` replaces that
  (for example response log-probs of a causal LM; `starts` [B] are the per-row response starts
  passed to `__call__`, zeros when not given). With `mesh`, the batch dimension is sharded over
  all of the mesh's devices (batch_size rounded up to a multiple of them) and params replicated.
  Outputs sharded over several hosts are gathered on every host. `progress(n)` is called with the
  number of sequences after each batch.
  """

  def __init__(self, model: LlamaRewardModel | None, params: Any, pad_id: int,
               batch_size: int = 8, pad_to_multiple_of: int = 64, *,
               fn: ScoreFn | None = None, mesh: jax.sharding.Mesh | None = None):
    if fn is None:
      if model is None:
        raise ValueError("Scorer needs a reward model or a score fn")
      fn = reward_fn(model)
    if mesh is not None:
      batch_size = -(-batch_size // mesh.size) * mesh.size
    self.batch_size, self.multiple, self.pad_id = batch_size, pad_to_multiple_of, pad_id
    self._apply = jax.jit(fn)
    self._batch_sharding = None
    if mesh is not None:
      self._batch_sharding = sharding.batch_sharding(mesh)
      params = jax.device_put(params, sharding.replicated(mesh))
    self.params = params

  def _put(self, a: np.ndarray) -> jax.Array:
    if self._batch_sharding is None:
      return jnp.asarray(a)
    return jax.device_put(a, self._batch_sharding)

  def __call__(self, sequences: Sequence[Sequence[int]], starts: Sequence[int] | None = None,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Outputs [N, ...] of `sequences` (token-id lists), in input order."""
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[np.ndarray | None] = [None] * len(sequences)
    for start in range(0, len(order), self.batch_size):
      idx = order[start:start + self.batch_size]
      longest = max(len(sequences[i]) for i in idx)
      length = -(-longest // self.multiple) * self.multiple
      ids = np.full((self.batch_size, length), self.pad_id, np.int32)
      mask = np.zeros((self.batch_size, length), np.int32)
      first = np.zeros((self.batch_size,), np.int32)
      for row, i in enumerate(idx):
        ids[row, :len(sequences[i])] = sequences[i]
        mask[row, :len(sequences[i])] = 1
        if starts is not None:
          first[row] = starts[i]
      mask[len(idx):, 0] = 1  # filler rows (discarded) still need one real token
      result = distributed.to_host(self._apply(self.params, self._put(ids), self._put(mask),
                                               self._put(first)))
      for row, i in enumerate(idx):
        out[i] = result[row]
      if progress is not None:
        progress(len(idx))
    return np.stack(out) if out else np.zeros((0, 1), np.float32)

"""Frozen-backbone features: the final hidden state at each sequence's last real token.

A reward model's output is `score(h_last)`, h_last = LlamaModel(ids)[last real token] (after the
final norm). With the backbone frozen, h_last is the same for every head, so it is computed once
per sequence and cached; a head trained on the cache (probe.py) is then exactly a
`LlamaRewardModel` with the backbone's parameters and that `score` kernel.

`FeatureCache` computes features in fixed chunks of a deterministic sequence list and writes each
chunk as it finishes (`part_00000.npz`, ...), so an interrupted extraction resumes at the first
missing chunk. Every part records a digest of its chunk's token ids; a part computed for other
sequences (another tokenizer, max_length or data file) is an error, not a silent mix-up.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.llama import LlamaModel, last_token_index
from helpsteer_jax.models.loading import Pretrained


def last_token_fn(cfg: LlamaConfig) -> Callable[..., jax.Array]:
  """A `Scorer` fn: (backbone params, ids, mask, starts) -> float32 h_last [B, D]."""
  model = LlamaModel(cfg)

  def fn(params, ids, mask, starts):
    del starts
    h = model.apply({"params": params}, ids, mask)
    idx = last_token_index(mask)
    return jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0].astype(jnp.float32)

  return fn


def digest(sequences: Sequence[Sequence[int]]) -> str:
  """A stable digest of a list of token-id sequences (order and boundaries included)."""
  h = hashlib.sha1()
  for s in sequences:
    a = np.asarray(s, np.int64)
    h.update(np.int64(len(a)).tobytes())
    h.update(a.tobytes())
  return h.hexdigest()


class FeatureCache:
  """Resumable, chunked feature extraction into `directory` (one folder per sequence list)."""

  def __init__(self, directory: str | os.PathLike, score: Callable[[list[np.ndarray]], np.ndarray],
               chunk: int = 256):
    self.directory, self.score, self.chunk = Path(directory), score, int(chunk)

  def _part(self, k: int) -> Path:
    return self.directory / f"part_{k:05d}.npz"

  def done(self, n: int) -> bool:
    return all(self._part(k).exists() for k in range(-(-n // self.chunk)))

  def seconds(self) -> float:
    """Wall-clock seconds spent computing the parts on disk (summed over sessions)."""
    total = 0.0
    for path in sorted(self.directory.glob("part_*.npz")):
      with np.load(path) as f:
        total += float(f["seconds"])
    return total

  def __call__(self, sequences: Sequence[np.ndarray],
               log: Callable[[str], None] | None = print) -> np.ndarray:
    """Features [N, D] of `sequences`, computing only the chunks not on disk yet."""
    self.directory.mkdir(parents=True, exist_ok=True)
    out = []
    n_parts = -(-len(sequences) // self.chunk)
    for k in range(n_parts):
      chunk = [np.asarray(s, np.int32) for s in sequences[k * self.chunk:(k + 1) * self.chunk]]
      want = digest(chunk)
      path = self._part(k)
      if path.exists():
        with np.load(path) as f:
          if str(f["digest"]) != want:
            raise ValueError(f"{path}: cached features were computed for other sequences "
                             f"(digest {f['digest']} != {want}); delete {self.directory} to "
                             "recompute")
          out.append(f["features"])
        continue
      t0 = time.perf_counter()
      feats = np.asarray(self.score(chunk), np.float32)
      dt = time.perf_counter() - t0
      tmp = path.with_suffix(".tmp.npz")
      np.savez(tmp, features=feats, digest=np.asarray(want), seconds=np.asarray(dt),
               tokens=np.asarray(sum(len(s) for s in chunk)))
      os.replace(tmp, path)  # a part is on disk whole or not at all
      out.append(feats)
      if log is not None:
        tokens = sum(len(s) for s in chunk)
        log(f"{self.directory.name}: part {k + 1}/{n_parts}, {len(chunk)} sequences, "
            f"{tokens} tokens in {dt:.0f} s ({tokens / dt:.0f} tokens/s)")
    if not out:
      return np.zeros((0, 0), np.float32)
    return np.concatenate(out)


def scorer_for(pre: Pretrained, batch_size: int = 8, pad_to_multiple_of: int = 64) -> Callable:
  """A callable sequences -> features [N, D] for a loaded `Pretrained` backbone."""
  scorer = Scorer(None, pre.params["model"], pad_id=pre.config.pad_token_id or 0,
                  batch_size=batch_size, pad_to_multiple_of=pad_to_multiple_of,
                  fn=last_token_fn(pre.config))
  return lambda seqs: scorer(seqs)

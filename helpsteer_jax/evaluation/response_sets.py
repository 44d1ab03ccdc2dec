"""Benchmark rows that hold several responses to one prompt, and scoring them with any scorer.

RewardBench 2 (one chosen among three rejected, or several correct among several incorrect) and
RM-Bench (three chosen and three rejected, one per style) both store a prompt string and lists
of response strings. Here they are read through `data.reading` (a local jsonl/json/parquet file,
rows named `file:line`, or a hub dataset id through `datasets`) and scored by a `ScoreFn`: one
call with every (prompt messages, response) of the benchmark, returning one float each. A scalar
reward model (`reward_model_score_fn`, through `Scorer`) and an LLM judge (evaluation/judges.py)
are both ScoreFns, so the benchmark arithmetic never knows which one scored. A NaN score means
"could not be scored" (a judge whose answer had no score, a sequence too long): the benchmark
modules count such a response as losing every comparison it is in, and say how many there were.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from helpsteer_jax.data.chat import prompt_messages
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import DataError, Message, where
from helpsteer_jax.evaluation.scorer import Scorer

# (prompt messages per response, responses) -> one float per response, NaN when unscorable.
ScoreFn = Callable[[Sequence[list[Message]], Sequence[str]], Sequence[float]]


def response_list(value: Any, source: str, line: int, column: str,
                  length: Optional[int] = None) -> list[str]:
  """A column holding a list of response strings (empty strings allowed: they are scored)."""
  if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
    raise DataError(f"{where(source, line)}: {column} must be a list of strings")
  if not value:
    raise DataError(f"{where(source, line)}: {column} is empty")
  if length is not None and len(value) != length:
    raise DataError(f"{where(source, line)}: {column} must hold {length} responses, got "
                    f"{len(value)}")
  return list(value)


def prompt_of(row: dict[str, Any], source: str, line: int) -> list[Message]:
  return prompt_messages(row["prompt"], source, line)


def score_groups(score_fn: ScoreFn, prompts: Sequence[list[Message]],
                 groups: Sequence[Sequence[str]]) -> list[np.ndarray]:
  """Scores of every response of every row, one ScoreFn call: a float64 array per row."""
  flat_prompts = [p for p, g in zip(prompts, groups) for _ in g]
  flat = [r for g in groups for r in g]
  scores = np.asarray(score_fn(flat_prompts, flat), np.float64).reshape(-1)
  if scores.shape[0] != len(flat):
    raise ValueError(f"the score function returned {scores.shape[0]} scores for {len(flat)} "
                     "responses")
  bounds = np.cumsum([0] + [len(g) for g in groups])
  return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def reward_model_score_fn(scorer: Scorer, encoder: ChatEncoder, head_index: int = 0) -> ScoreFn:
  """A scalar reward model as a ScoreFn: head output `head_index` of each rendered conversation.

  Conversations are rendered and cut as for training (`ChatEncoder`, its max_length: older turns
  dropped first); one that does not fit even then scores NaN.
  """

  def fn(prompts: Sequence[list[Message]], responses: Sequence[str]) -> np.ndarray:
    encoded = encoder.encode_many([(p, [r]) for p, r in zip(prompts, responses)])
    keep = [i for i, (seqs, _) in enumerate(encoded) if seqs is not None]
    out = np.full(len(responses), np.nan)
    if keep:
      rewards = scorer([encoded[i][0][0].input_ids for i in keep])
      out[keep] = np.asarray(rewards, np.float64).reshape(len(keep), -1)[:, head_index]
    return out

  return fn

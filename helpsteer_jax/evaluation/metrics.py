"""Pair metrics beyond RewardBench's sections: accuracy, by strength, and length bias.

A pair is correct when reward(chosen) > reward(rejected) (a tie is wrong, as in RewardBench). A
pair that could not be scored (longer than the model's context) stays in every denominator as a
wrong answer (`every_pair`), so leaving hard pairs out never inflates a score.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np

from helpsteer_jax.evaluation import rewardbench


def every_pair(scored_correct: np.ndarray, is_scored: np.ndarray) -> np.ndarray:
  """Correctness of every pair: the scored pairs' in order, False for a pair not scored."""
  out = np.zeros(len(is_scored), bool)
  out[is_scored] = scored_correct
  return out


def strength_buckets(strengths: np.ndarray, ok: np.ndarray) -> dict[str, dict[str, Any]]:
  """Accuracy per strength value (up to 12 distinct values), else per strength quartile."""
  values = np.unique(strengths)
  if len(values) <= 12:
    keys = [f"{v:g}" for v in strengths]
    order = [f"{v:g}" for v in values]
  else:  # quartile bins
    edges = np.quantile(strengths, [0.0, 0.25, 0.5, 0.75, 1.0])
    bins = np.clip(np.searchsorted(edges, strengths, side="right") - 1, 0, 3)
    names = [f"[{edges[i]:.3g}, {edges[i + 1]:.3g}{']' if i == 3 else ')'}" for i in range(4)]
    keys = [names[b] for b in bins]
    order = names
  out = {}
  for k in order:
    sel = np.array([x == k for x in keys])
    if sel.any():
      out[k] = {"accuracy": float(ok[sel].mean()), "count": int(sel.sum())}
  return out


def pair_scores(kind: str, subsets: Sequence[Optional[str]],
                strengths: Sequence[Optional[float]], ok: np.ndarray) -> dict[str, Any]:
  """`accuracy` plus the RewardBench sections (kind "rewardbench") or the pairwise accuracy,
  by strength when every pair has one (kind "pairwise"), of pairs with correctness `ok`."""
  out: dict[str, Any] = {"accuracy": float(ok.mean()) if len(ok) else None}
  if kind == "rewardbench":
    out["rewardbench"] = rewardbench.summarize_correct(list(subsets), ok)
  else:
    pw: dict[str, Any] = {"accuracy": out["accuracy"], "count": len(ok)}
    if len(strengths) and all(s is not None for s in strengths):
      pw["by_strength"] = strength_buckets(np.asarray(strengths, np.float64), ok)
    out["pairwise"] = pw
  return out


def count_by(values: Iterable[Optional[str]]) -> dict[str, int]:
  out: dict[str, int] = {}
  for v in values:
    out[str(v)] = out.get(str(v), 0) + 1
  return out


def length_bias(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """How rewards follow response length (token counts of the responses only).

  `examples`: dicts with chosen_tokens, rejected_tokens, reward_chosen, reward_rejected, correct.
  """
  lc = np.array([e["chosen_tokens"] for e in examples], np.float64)
  lr = np.array([e["rejected_tokens"] for e in examples], np.float64)
  rc = np.array([e["reward_chosen"] for e in examples], np.float64)
  rr = np.array([e["reward_rejected"] for e in examples], np.float64)
  ok = np.array([e["correct"] for e in examples], bool)
  differ = lc != lr
  longer_wins = np.where(lc > lr, rc > rr, rr > rc)[differ]
  lengths, rewards = np.concatenate([lc, lr]), np.concatenate([rc, rr])

  def corr(a, b):
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else None

  def acc(sel):
    return float(ok[sel].mean()) if sel.any() else None

  return {
      "longer_response_preferred_fraction": float(longer_wins.mean()) if differ.any() else None,
      "chosen_longer_fraction": float((lc > lr).mean()) if len(lc) else None,
      "accuracy_when_chosen_longer": acc(lc > lr),
      "accuracy_when_chosen_shorter": acc(lc < lr),
      "pearson_reward_vs_tokens": corr(lengths, rewards),
      "pearson_reward_vs_log_tokens": corr(np.log1p(lengths), rewards),
  }

"""Is model a better than model b? Seed noise and a paired bootstrap over evaluation pairs.

Two sources of uncertainty, both needed when the evaluation set is small:

* *seeds*: each model is trained with several seeds; a difference of seed means counts only when
  it exceeds the combined seed standard deviation sqrt(sd_a^2 + sd_b^2) (`seed_difference`);
* *pairs*: both models decide the same evaluation pairs; resampling the pairs with replacement and
  recomputing the paired difference gives a percentile interval (`paired_bootstrap_interval`,
  Efron & Tibshirani 1993). With strata (RewardBench subsets) pairs are resampled within their
  stratum and the statistic is a weighted sum of per-stratum means (the official section
  weighting, `rewardbench.subset_coefficients`).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def seed_stat(values: Sequence[Optional[float]]) -> tuple[float, float, int] | None:
  """(mean, sample standard deviation, n) over the seeds that have a value; None if none has."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if not len(v):
    return None
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def seed_difference(a: Sequence[Optional[float]],
                    b: Sequence[Optional[float]]) -> tuple[float, float, str]:
  """(mean a - mean b, combined seed sd, verdict): "holds" / "reversed" when the difference
  exceeds the combined seed sd, "within seed noise" otherwise, "not run" when a side is empty."""
  sa, sb = seed_stat(a), seed_stat(b)
  if sa is None or sb is None:
    return float("nan"), float("nan"), "not run"
  diff = sa[0] - sb[0]
  noise = max(np.hypot(sa[1], sb[1]), 1e-12)
  if abs(diff) <= noise:
    verdict = "within seed noise"
  else:
    verdict = "holds" if diff > 0 else "reversed"
  return diff, noise, verdict


def seed_mean_correct(per_seed: Sequence[Optional[Sequence[int]]]) -> np.ndarray | None:
  """Per evaluation pair, the fraction of seeds that rank it correctly (None if a seed lacks it)."""
  if not per_seed or any(v is None for v in per_seed):
    return None
  return np.mean(np.asarray(per_seed, np.float64), axis=0)


def paired_bootstrap_interval(diff: np.ndarray, strata: Optional[Sequence[str]] = None,
                              weights: Optional[Mapping[str, float]] = None, *,
                              resamples: int = 2000, level: float = 0.95,
                              seed: int = 0) -> tuple[float, float]:
  """Percentile interval of a paired difference, resampling evaluation pairs with replacement.

  `diff` is, per pair, a's score minus b's on the same pair. Without `strata` the statistic is
  the mean of `diff`; with them, pairs are resampled within their stratum and the statistic is
  sum_s weights[s] * mean(diff over stratum s) (strata in sorted order).
  """
  rng = np.random.default_rng(seed)
  if strata is None:
    groups, coef = {"all": np.arange(len(diff))}, {"all": 1.0}
  else:
    if weights is None:
      raise ValueError("stratified bootstrap needs the strata's weights")
    names = np.asarray(strata)
    groups = {s: np.flatnonzero(names == s) for s in sorted(set(strata))}
    coef = dict(weights)
  stat = np.zeros(resamples)
  for s, idx in groups.items():
    draw = rng.integers(0, len(idx), size=(resamples, len(idx)))
    stat += coef[s] * diff[idx][draw].mean(axis=1)
  tail = (1 - level) / 2 * 100
  lo, hi = np.percentile(stat, [tail, 100 - tail])
  return float(lo), float(hi)

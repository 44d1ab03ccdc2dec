"""REPORT.md and its figure, generated from the study's result files.

  python -m projects.finetune_small.report   # = python -m projects.finetune_small.run --stage report

Every number in the report is read from results/*.json (written by run.py); the frozen-probe
reference rows are read from projects/reproduce_small/results. The prose is report_template.md
(Jinja2); the statistics (seed noise, paired bootstrap over evaluation pairs) are
helpsteer_jax.evaluation.compare.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import jinja2
import numpy as np

from helpsteer_jax.evaluation import compare, rewardbench
from helpsteer_jax.evaluation.plots import pyplot
from projects.finetune_small.config import (BOOTSTRAP, DATA, HERE, PARITY, REPO, REPORT, RESULTS,
                                            TEMPLATE, TRAINERS)

PROBE_RESULTS = REPO / "projects" / "reproduce_small" / "results"
LABELS = {"ours": "helpsteer_jax (`helpsteer_jax.train`)", "trl": "TRL `RewardTrainer`",
          "probe": "frozen backbone + trained head (reproduce_small, BT)"}


def load(results: Path = RESULTS) -> dict[str, list[dict[str, Any]]]:
  """Result files by trainer, each list in seed order."""
  runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRAINERS}
  for path in sorted(results.glob(f"{PARITY['loss']}_*_seed*.json")):
    r = json.loads(path.read_text())
    runs[r["trainer"]].append(r)
  for t in runs:
    runs[t].sort(key=lambda r: r["seed"])
  return runs


def load_probe(directory: Path = PROBE_RESULTS) -> list[dict[str, Any]]:
  """The frozen-probe BT runs of reproduce_small, in the same per-pair form as ours."""
  out = []
  for path in sorted(directory.glob("bt_seed*.json")):
    m = json.loads(path.read_text())["metrics"]
    out.append({"seed": json.loads(path.read_text())["seed"],
                "hs_validation": {"accuracy": m["hs_heldout_acc"],
                                  "correct": m["hs_heldout_correct"]},
                "rewardbench": {"sections": m["rewardbench"]["sections"],
                                "mean": m["rewardbench"]["mean_of_present_sections"],
                                "correct": m["rb_correct"]}})
  return out


def _ours_form(r: dict[str, Any]) -> dict[str, Any]:
  """A study result in the probe's form: accuracies and per-pair correctness, file order."""
  rb = r["rewardbench"]
  return {"seed": r["seed"],
          "hs_validation": {"accuracy": r["hs_validation"]["accuracy"],
                            "correct": [int(e["correct"]) for e in r["hs_validation"]["examples"]],
                            "ids": [e["id"] for e in r["hs_validation"]["examples"]]},
          "rewardbench": {"sections": rb["rewardbench"]["sections"],
                          "mean": rb["rewardbench"]["mean_of_present_sections"],
                          "correct": [int(e["correct"]) for e in rb["examples"]],
                          "ids": [e["id"] for e in rb["examples"]],
                          "subsets": [e["subset"] for e in rb["examples"]]}}


def _stat(values: Sequence[Optional[float]], scale: float = 100.0, digits: int = 1) -> str:
  st = compare.seed_stat(values)
  if st is None:
    return "-"
  mean, sd, n = st
  return f"{mean * scale:.{digits}f} ± {sd * scale:.{digits}f}" if n > 1 else \
      f"{mean * scale:.{digits}f}"


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str,
            subsets: Optional[list[str]] = None) -> str:
  """a - b in points: seed means, combined seed sd, and the paired bootstrap interval over the
  evaluation pairs both decided (per-pair correctness averaged over each side's seeds)."""
  if not a or not b:
    return "not run"
  if key == "hs_validation":
    vals_a = [r[key]["accuracy"] for r in a]
    vals_b = [r[key]["accuracy"] for r in b]
  else:
    vals_a = [r[key]["mean"] for r in a]
    vals_b = [r[key]["mean"] for r in b]
  diff, noise, _ = compare.seed_difference(vals_a, vals_b)
  ca = compare.seed_mean_correct([r[key]["correct"] for r in a])
  cb = compare.seed_mean_correct([r[key]["correct"] for r in b])
  if ca is None or cb is None or len(ca) != len(cb):
    return f"{diff * 100:+.1f} (seeds {noise * 100:.1f}; pairs: sets differ)"
  strata = weights = None
  if key == "rewardbench":
    strata, weights = subsets, rewardbench.subset_coefficients(subsets)
  lo, hi = compare.paired_bootstrap_interval(ca - cb, strata, weights, **BOOTSTRAP)
  return f"{diff * 100:+.1f} (seeds {noise * 100:.1f}; pairs [{lo * 100:+.1f}, {hi * 100:+.1f}])"


def _rb_cells(runs: list[dict[str, Any]]) -> dict[str, str]:
  return {"chat": _stat([r["rewardbench"]["sections"]["Chat"] for r in runs]),
          "chat_hard": _stat([r["rewardbench"]["sections"]["Chat Hard"] for r in runs]),
          "mean": _stat([r["rewardbench"]["mean"] for r in runs]),
          "hs": _stat([r["hs_validation"]["accuracy"] for r in runs])}


def _restrict(runs: list[dict[str, Any]], keep: Optional[list[bool]]) -> list[dict[str, Any]]:
  """`runs` with RewardBench per-pair correctness kept only where `keep` (None: unchanged)."""
  if keep is None:
    return runs
  out = []
  for r in runs:
    rb = dict(r["rewardbench"])
    rb["correct"] = [c for c, k in zip(rb["correct"], keep) if k]
    rb["subsets"] = [s for s, k in zip(rb["subsets"], keep) if k]
    rb["mean"] = rewardbench.summarize_correct(rb["subsets"], rb["correct"])[
        "mean_of_present_sections"]
    out.append({**r, "rewardbench": rb})
  return out


def probe_rows(results: Path, n_rows: int) -> Optional[list[bool]]:
  """Which RewardBench rows (file order) the probe scored: those within its 2048-token limit."""
  path = results / "rewardbench_lengths.json"
  if not path.exists():
    return None
  lengths = json.loads(path.read_text())["longest_sequence_tokens"]
  return [n <= 2048 for n in lengths] if len(lengths) == n_rows else None


def curves(results: Path = RESULTS) -> dict[str, dict[int, list[tuple[int, float]]]]:
  out: dict[str, dict[int, list[tuple[int, float]]]] = {t: {} for t in TRAINERS}
  for path in sorted(results.glob("curve_*_seed*.json")):
    c = json.loads(path.read_text())
    out[c["trainer"]][c["seed"]] = [(int(s), float(l)) for s, l in c["loss"]]
  return out


def loss_figure(c: dict[str, dict[int, list[tuple[int, float]]]], path: Path) -> bool:
  if not any(c.values()):
    return False
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 3.5))
  styles = {"ours": "-", "trl": "--"}
  for trainer, by_seed in c.items():
    for seed, pts in sorted(by_seed.items()):
      ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[trainer],
              label=f"{trainer} seed {seed}", color=f"C{seed}")
  ax.set_xlabel("step")
  ax.set_ylabel("training loss (batch)")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _loss_agreement(c: dict[str, dict[int, list[tuple[int, float]]]]) -> list[dict[str, Any]]:
  rows = []
  for seed in sorted(set(c["ours"]) & set(c["trl"])):
    a, b = dict(c["ours"][seed]), dict(c["trl"][seed])
    steps = sorted(set(a) & set(b))
    if not steps:
      continue
    d = np.abs(np.asarray([a[s] - b[s] for s in steps]))
    rows.append({"seed": seed, "steps": len(steps), "first": f"{a[steps[0]]:.4f} / "
                 f"{b[steps[0]]:.4f}", "max_abs": f"{d.max():.3f}", "mean_abs": f"{d.mean():.3f}",
                 "last": f"{a[steps[-1]]:.4f} / {b[steps[-1]]:.4f}"})
  return rows


def _timing(runs: list[dict[str, Any]]) -> dict[str, str]:
  if not runs:
    return {"epoch": "-", "step": "-", "rss": "-", "startup": "-"}
  ep = [r["train"]["epoch_seconds"] / 60 for r in runs]
  st = [r["train"]["median_step_seconds"] for r in runs if r["train"]["median_step_seconds"]]
  return {"epoch": " / ".join(f"{x:.1f}" for x in ep),
          "step": " / ".join(f"{x:.1f}" for x in st) or "-",
          "rss": " / ".join(f"{r['train']['peak_rss_gib']:.2f}" for r in runs),
          "startup": " / ".join(f"{r['train']['startup_and_first_step_seconds']:.0f}"
                                for r in runs)}


def context(results: Path = RESULTS, figure: Optional[Path] = None) -> dict[str, Any]:
  runs = load(results)
  forms = {t: [_ours_form(r) for r in rs] for t, rs in runs.items()}
  probe = load_probe()
  subsets = (forms["ours"] or forms["trl"] or [{}])[0].get("rewardbench", {}).get("subsets")
  keep = probe_rows(results, len(subsets)) if subsets else None
  table = []
  for t in (*TRAINERS, "probe"):
    rs = forms.get(t) if t != "probe" else probe
    if not rs:
      table.append({"label": LABELS[t], "seeds": "not run yet", **_rb_cells([]),
                    **_timing([])})
      continue
    table.append({"label": LABELS[t], "seeds": ", ".join(str(r["seed"]) for r in rs),
                  **_rb_cells(rs), **_timing(runs.get(t, []))})
  c = curves(results)
  has_fig = figure is not None and loss_figure(c, figure)
  processors = sorted({p for rs in runs.values() for r in rs for p in
                       r["train"].get("processors", [])} |
                      {r["evaluated_on"] for rs in runs.values() for r in rs
                       if "evaluated_on" in r})
  any_run = next((r for rs in runs.values() for r in rs), None)
  return {
      "settings": PARITY, "data": DATA, "table": table,
      "diff_hs": _paired(forms["ours"], forms["trl"], "hs_validation"),
      "diff_rb": _paired(forms["ours"], forms["trl"], "rewardbench", subsets),
      "probe_hs": _paired(forms["ours"], probe, "hs_validation"),
      "probe_rb": _paired(_restrict(forms["ours"], keep), probe, "rewardbench",
                          [x for x, k in zip(subsets or [], keep or []) if k] if keep else subsets),
      "loss_rows": _loss_agreement(c), "figure": figure.name if has_fig else None,
      "processors": processors, "pairs": any_run["hs_validation"]["pairs"] if any_run else None,
      "rb_pairs": any_run["rewardbench"]["pairs"] if any_run else None,
      "train_report": _train_report(results), "seeds_done": {t: [r["seed"] for r in rs]
                                                      for t, rs in runs.items()},
      "cpu_hours": sum(r["train"]["total_wall_seconds"] + r["hs_validation"]["seconds"]
                       + r["rewardbench"]["seconds"]
                       for rs in runs.values() for r in rs) / 3600,
      "bootstrap": BOOTSTRAP,
  }


def _train_report(results: Path) -> Optional[str]:
  path = results / "train_data.txt"
  return path.read_text().strip() if path.exists() else None


def build(results: Path = RESULTS, out: Path = REPORT, figures: Path = HERE / "figures") -> str:
  env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), trim_blocks=True,
                           lstrip_blocks=True, keep_trailing_newline=True,
                           undefined=jinja2.StrictUndefined)
  text = env.get_template(TEMPLATE.name).render(
      **context(results, figure=figures / "parity_loss.png"))
  out.write_text(text)
  return text


def main() -> None:
  build()
  print(f"wrote {REPORT}")


if __name__ == "__main__":
  main()

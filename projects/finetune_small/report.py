"""REPORT.md and its figure, generated from the study's result files.

  python -m projects.finetune_small.report   # = python -m projects.finetune_small.run --stage report

Every number in the report is read from results/*.json (written by run.py); the frozen-probe
reference rows are read from projects/reproduce_small/results. The prose is report_template.md
(Jinja2); the statistics (seed noise, paired bootstrap over evaluation pairs) are
helpsteer_jax.evaluation.compare.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import jinja2
import numpy as np

from helpsteer_jax.evaluation import compare, rewardbench
from helpsteer_jax.evaluation.plots import pyplot
from projects.finetune_small.config import (BOOTSTRAP, DATA, EXPO, FROZEN, HERE, LORA, PARITY,
                                            REPO, REPORT, RESULTS, TEMPLATE, TRAINERS)

PROBE_RESULTS = REPO / "projects" / "reproduce_small" / "results"
LABELS = {"ours": "helpsteer_jax (`helpsteer_jax.train`)", "trl": "TRL `RewardTrainer`",
          "probe": "frozen backbone + trained head (reproduce_small, BT)"}


def load(results: Path = RESULTS) -> dict[str, list[dict[str, Any]]]:
  """Result files by trainer, each list in seed order."""
  runs: dict[str, list[dict[str, Any]]] = {t: [] for t in TRAINERS}
  for path in sorted(results.glob(f"{PARITY['loss']}_*_seed*.json")):
    r = json.loads(path.read_text())
    if r["trainer"] in runs:  # the LoRA runs have their own section (lora_context)
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


def _compare(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str,
             subsets: Optional[list[str]] = None) -> tuple[str, str]:
  """(a - b in points: seed means, combined seed sd and the paired bootstrap interval over the
  evaluation pairs both decided (per-pair correctness averaged over each side's seeds); the
  verdict). holds / reversed only when the difference exceeds the seed noise and the interval
  excludes zero (the rule of projects/reproduce_small); within noise otherwise."""
  if not a or not b:
    return "not run", "not run"
  field = "mean" if key == "rewardbench" else "accuracy"
  diff, noise, seed_verdict = compare.seed_difference([r[key][field] for r in a],
                                                      [r[key][field] for r in b])
  # With one seed a side there is no seed spread to show: the pairs interval alone decides.
  head = (f"{diff * 100:+.1f} (one seed each" if len(a) == len(b) == 1
          else f"{diff * 100:+.1f} (seeds {noise * 100:.1f}")
  ca = compare.seed_mean_correct([r[key]["correct"] for r in a])
  cb = compare.seed_mean_correct([r[key]["correct"] for r in b])
  if ca is None or cb is None:
    return f"{head}; no per-pair record)", "no pairs interval"
  if len(ca) != len(cb):
    return f"{head}; pairs: sets differ)", "no pairs interval"
  if key == "rewardbench" and not subsets:
    return f"{head}; subsets not recorded)", "no pairs interval"
  strata = weights = None
  if key == "rewardbench":
    strata, weights = subsets, rewardbench.subset_coefficients(subsets)
  lo, hi = compare.paired_bootstrap_interval(ca - cb, strata, weights, **BOOTSTRAP)
  verdict = (seed_verdict if seed_verdict != "within seed noise" and (lo > 0 or hi < 0)
             else "within noise")
  return f"{head}; pairs [{lo * 100:+.1f}, {hi * 100:+.1f}])", verdict


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str,
            subsets: Optional[list[str]] = None) -> str:
  return _compare(a, b, key, subsets)[0]


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
  """Which RewardBench rows (file order) the probe scored (run.probe_rewardbench_rows)."""
  path = results / "rewardbench_probe_rows.json"
  if not path.exists():
    return None
  kept = json.loads(path.read_text())["scored_by_probe"]
  return kept if len(kept) == n_rows else None


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
  return _save(plt, fig, path, dpi=120)


def _save(plt: Any, fig: Any, path: Path, dpi: int) -> bool:
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi)
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
  lora = lora_context(results, runs["ours"])
  # ours - TRL: (the difference with its intervals, the verdict), each bootstrapped once
  diff_hs = _compare(forms["ours"], forms["trl"], "hs_validation")
  diff_rb = _compare(forms["ours"], forms["trl"], "rewardbench", subsets)
  parity = None
  if runs["ours"] and runs["trl"]:
    epoch = {t: float(np.mean([r["train"]["epoch_seconds"] for r in runs[t]])) / 60
             for t in TRAINERS}
    rss = {t: float(np.mean([r["train"]["peak_rss_gib"] for r in runs[t]])) for t in TRAINERS}
    parity = {"hs": diff_hs[1], "rb": diff_rb[1],
              "epoch": epoch, "epoch_ratio": epoch["ours"] / epoch["trl"], "rss": rss}
  return {
      "settings": PARITY, "data": DATA, "table": table,
      "diff_hs": diff_hs[0], "diff_rb": diff_rb[0],
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
                       for rs in runs.values() for r in rs) / 3600 + lora.get("hours", 0.0),
      "bootstrap": BOOTSTRAP, "lora": lora, "parity": parity,
      "part2": part2_context(results, subsets, keep), "frozen": FROZEN,
      "part3": part3_context(results, figure.parent if figure is not None else HERE / "figures"),
  }


def lora_context(results: Path, full: list[dict[str, Any]]) -> dict[str, Any]:
  """LoRA (our trainer, adapters + head) against the full fine-tune of the same seeds: held-out
  accuracy with the paired difference, and the training time and memory side by side."""
  runs = sorted((json.loads(p.read_text()) for p in
                 results.glob(f"{PARITY['loss']}_lora_seed*.json")), key=lambda r: r["seed"])
  if not runs:
    return {"ran": False, "settings": LORA}
  seeds = {r["seed"] for r in runs}
  full = [r for r in full if r["seed"] in seeds]
  form = lambda r: {"seed": r["seed"], "hs_validation": {
      "accuracy": r["hs_validation"]["accuracy"],
      "correct": [int(e["correct"]) for e in r["hs_validation"]["examples"]]}}
  rows = []
  for label, rs in (("LoRA (adapters + head)", runs), ("full fine-tune", full)):
    rows.append({"label": label, "seeds": ", ".join(str(r["seed"]) for r in rs),
                 "hs": _stat([r["hs_validation"]["accuracy"] for r in rs]), **_timing(rs)})
  diff, verdict = _compare([form(r) for r in runs], [form(r) for r in full], "hs_validation")
  return {"ran": True, "settings": LORA, "rows": rows, "diff": diff, "verdict": verdict,
          "hours": sum(r["train"]["total_wall_seconds"] + r["hs_validation"]["seconds"]
                       for r in runs) / 3600}


# ----------------------------------------------------------------------------- part 2

PART2_ROWS = (  # (result name, label, reproduce_small's probe variant on the same data)
    ("bt", "Bradley-Terry", "bt"),
    ("scaled_bt", "Scaled BT", "scaled_bt"),
    ("regression_5attr", "SteerLM Regression, 5 attributes", "regression_5attr"),
    ("regression_helpfulness", "SteerLM Regression, helpfulness only", "regression_helpfulness"),
    ("scaled_bt_from_regression", "Scaled BT, init. from helpfulness regression",
     "scaled_bt_from_regression"),
    ("expo_scaled_bt_from_regression", "+ ExPO", "expo_scaled_bt_from_regression"),
)
CLAIMS = (  # (a, b, the paper's claim)
    ("scaled_bt", "bt", "Scaled BT > Bradley-Terry"),
    ("regression_helpfulness", "regression_5attr",
     "helpfulness-only regression > 5-attribute regression"),
    ("scaled_bt_from_regression", "scaled_bt", "Scaled BT from regression > Scaled BT from scratch"),
    ("scaled_bt_from_regression", "regression_helpfulness",
     "Scaled BT from regression > helpfulness regression"),
    ("expo_scaled_bt_from_regression", "scaled_bt_from_regression",
     "ExPO > Scaled BT from regression"),
    ("regression_helpfulness", "bt", "helpfulness regression vs Bradley-Terry (paper: comparable)"),
)


def load_part2(results: Path) -> dict[str, list[dict[str, Any]]]:
  out: dict[str, list[dict[str, Any]]] = {}
  for path in sorted((results / "part2").glob("*_seed*.json")):
    r = json.loads(path.read_text())
    out.setdefault(r["variant"], []).append({"seed": r["seed"], **r["metrics"], "_file": r})
  for v in out.values():
    v.sort(key=lambda r: r["seed"])
  return out


def load_probe_variant(name: str, directory: Path = PROBE_RESULTS) -> list[dict[str, Any]]:
  """A reproduce_small variant in part 2's per-pair form (RewardBench: the rows it scored)."""
  out = []
  for path in sorted(directory.glob(f"{name}_seed*.json")):
    r = json.loads(path.read_text())
    m = r["metrics"]
    out.append({"seed": r["seed"],
                "hs_validation": {"accuracy": m["hs_heldout_acc"],
                                  "correct": m["hs_heldout_correct"]},
                "mix_validation": {"accuracy": m["mix_heldout_acc"],
                                   "correct": m.get("mix_heldout_correct")},
                "rewardbench": {"sections": m["rewardbench"]["sections"],
                                "mean": m["rewardbench"]["mean_of_present_sections"],
                                "correct": m["rb_correct"]}})
  return out


def _subtract_pauses(path: Path, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
  """Takes the recorded pauses of the part 2 process (SIGSTOP while a benchmark ran: one JSON
  line each, `during` = "<variant> seed <n> training|evaluation") out of those results' times.
  A pause during anything else ("<group> bottom cache": a later session recomputing the lost
  cache, whose time sets.json does not hold) is counted, not subtracted."""
  if not path.exists():
    return {"count": 0, "minutes": 0.0, "elsewhere": 0}
  entries = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
  elsewhere = 0
  for e in entries:
    m = re.fullmatch(r"(\S+) seed (\d+) (training|evaluation)", e["during"])
    if m is None:
      elsewhere += 1
      continue
    name, seed, what = m.groups()
    field = {"training": "train_seconds", "evaluation": "eval_seconds"}[what]
    for r in runs.get(name, []):
      if r["seed"] == int(seed):
        r["_file"] = dict(r["_file"], **{field: r["_file"][field] - e["seconds"]})
  return {"count": len(entries), "minutes": sum(e["seconds"] for e in entries) / 60,
          "elsewhere": elsewhere}


def part2_context(results: Path, rb_subsets: Optional[list[str]],
                  keep: Optional[list[bool]]) -> dict[str, Any]:
  runs = load_part2(results)
  if not runs:
    return {"ran": False}
  sets_file = results / "part2" / "sets.json"
  sets = json.loads(sets_file.read_text()) if sets_file.exists() else {}
  rb_subsets = sets.get("rb_subsets", rb_subsets)
  if rb_subsets and keep is None:
    keep = probe_rows(results, len(rb_subsets))
  if rb_subsets:  # each row's subset (sets.json) beside its correctness, for _restrict
    for rs in runs.values():
      for r in rs:
        r["rewardbench"] = dict(r["rewardbench"], subsets=rb_subsets)
  sweep = json.loads((results / "part2" / "sweep.json").read_text()) \
      if (results / "part2" / "sweep.json").exists() else None
  pauses = _subtract_pauses(results / "part2" / "pauses.jsonl", runs)
  any_run = next(iter(runs.values()))[0]["_file"]
  subsets = rb_subsets
  table, vs_probe, claims = [], [], []
  for name, label, probe_name in PART2_ROWS:
    rs = runs.get(name, [])
    f = [r["_file"] for r in rs]
    table.append({"label": label, "seeds": ", ".join(str(r["seed"]) for r in rs) or "not run",
                  "hs": _stat([r["hs_validation"]["accuracy"] for r in rs]),
                  "mix": _stat([r["mix_validation"]["accuracy"] for r in rs]),
                  "chat": _stat([r["rewardbench"]["sections"]["Chat"] for r in rs]),
                  "chat_hard": _stat([r["rewardbench"]["sections"]["Chat Hard"] for r in rs]),
                  "mean": _stat([r["rewardbench"]["mean"] for r in rs]),
                  "dev": _stat([r["hs_dev"]["accuracy"] for r in rs]),
                  "lr": ", ".join(sorted({str(x.get("lr", "-")) for x in f})),
                  "minutes": " / ".join(f"{x['train_seconds'] / 60:.1f}" for x in f
                                        if "train_seconds" in x) or "-",
                  "alpha": ", ".join(str(x["alpha"]) for x in f if "alpha" in x)})
    probe = load_probe_variant(probe_name)
    kept_subsets = ([x for x, k in zip(subsets or [], keep or []) if k] if keep else subsets)
    vs_probe.append({"label": label,
                     "hs": _paired(rs, probe, "hs_validation"),
                     "mix": _paired(rs, probe, "mix_validation"),
                     "rb": _paired(_restrict(rs, keep) if keep else rs, probe, "rewardbench",
                                   kept_subsets)})
  for a, b, label in CLAIMS:
    ra, rb_ = runs.get(a, []), runs.get(b, [])
    row = {"label": label}
    for cell, key in (("rb", "rewardbench"), ("hs", "hs_validation"), ("mix", "mix_validation")):
      row[cell], row[f"{cell}_verdict"] = _compare(ra, rb_, key, subsets)
    claims.append(row)
  check = json.loads((results / "part2" / "export_check.json").read_text()) \
      if (results / "part2" / "export_check.json").exists() else None
  superseded = []  # results of settings the study no longer uses (kept: the report cites them)
  for path in sorted((results / "part2" / "superseded").glob("*.json")):
    r = json.loads(path.read_text())
    m = r["metrics"]
    superseded.append({"variant": r["variant"], "seed": r["seed"], "lr": r["lr"],
                       "epoch_mean_loss": f"{np.mean([c['loss'] for c in r['curve']]):.3f}",
                       "dev": f"{m['hs_dev']['accuracy'] * 100:.1f}",
                       "hs": f"{m['hs_validation']['accuracy'] * 100:.1f}",
                       "mix": f"{m['mix_validation']['accuracy'] * 100:.1f}",
                       "chat": f"{m['rewardbench']['sections']['Chat'] * 100:.1f}",
                       "chat_hard": f"{m['rewardbench']['sections']['Chat Hard'] * 100:.1f}"})
  files = [r["_file"] for rs in runs.values() for r in rs]
  minutes = {"bottom": sum(sets.get("bottom_seconds", {}).values()) / 60,
             "sweep": sum(r.get("seconds", 0) for r in (sweep or {}).get("runs", [])) / 60,
             "training": sum(f.get("train_seconds", 0) for f in files
                             if not f.get("from_sweep")) / 60,  # a sweep run is counted once
             "evaluation": sum(f.get("eval_seconds", 0) for f in files) / 60}
  rebuild = None
  if check:  # the exported variant, seed 0, from scratch (--only ... --workdir W)
    seed0 = {n: rs[0]["_file"] for n, rs in runs.items() if rs[0]["seed"] == 0}

    def chain(name: str) -> list[dict[str, Any]]:  # the tops its training needs
      if name == EXPO["name"]:  # the aligned model, which starts from ExPO's init
        return chain(EXPO["aligned"])
      f = seed0.get(name, {})
      return [f] + (chain(f["init"]) if f.get("init") else [])

    rebuild = {"variant": check["variant"], "bottom": minutes["bottom"],
               "training": sum(f.get("train_seconds", 0) for f in chain(check["variant"])) / 60,
               "evaluation": seed0.get(check["variant"], {}).get("eval_seconds", 0) / 60}
  reproduced_file = results / "part2" / "reproduced.json"
  reproduced = json.loads(reproduced_file.read_text()) if reproduced_file.exists() else []
  return {"ran": True, "table": table, "vs_probe": vs_probe, "claims": claims, "sweep": sweep,
          "reproduced": reproduced,
          "check": check, "top_layers": any_run.get("top_layers"),
          "superseded": superseded, "minutes": minutes, "pauses": pauses,
          "hours": sum(minutes.values()) / 60, "rebuild": rebuild,
          "unrecorded_eval": sum("eval_seconds" not in f for f in files),
          "processors": sorted({f[k] for f in files for k in ("trained_on", "evaluated_on")
                                if k in f}),
          "unrecorded_processor": sum("evaluated_on" not in f for f in files),
          "results": len(files),
          "sets": sets,
          "sizes": {k: len(v["correct"]) for k, v in runs[next(iter(runs))][0].items()
                    if isinstance(v, dict) and "correct" in v}}


# ----------------------------------------------------------------------------- part 3


def part3_context(results: Path, figures: Path) -> dict[str, Any]:
  path = results / "part3.json"
  if not path.exists():
    return {"ran": False}
  r = json.loads(path.read_text())
  ev, tr = r["eval"], r["train"]
  first, last = ev[0], ev[-1]
  by_step: dict[int, list[dict[str, Any]]] = {}
  for g in r["generations"]:
    by_step.setdefault(g["step"], []).append(g)
  steps = sorted(by_step)
  examples = []
  for before, after in list(zip(by_step[steps[0]], by_step[steps[-1]]))[:3]:
    examples.append({"prompt": _clip(before["prompt"][-1]["content"], 300),
                     "before": _clip(before["response"], 500), "after": _clip(after["response"], 500),
                     "r_before": f"{before['reward']:.3f}", "r_after": f"{after['reward']:.3f}",
                     "m_before": f"{before.get('monitor_monitor', float('nan')):.3f}",
                     "m_after": f"{after.get('monitor_monitor', float('nan')):.3f}"})
  window = max(1, len(tr) // 10)
  mean = lambda rows, k: float(np.mean([x[k] for x in rows]))
  change = {k: _prompt_change(by_step[steps[0]], by_step[steps[-1]], field)
            for k, field in (("reward", "reward"), ("monitor", "monitor_monitor"))}
  has_fig = _rl_figure(tr, ev, figures / "rlhf.png")
  return {"ran": True, "settings": r["settings"], "eval": ev, "steps": len(tr),
          "reward_model": r["reward_model"], "monitor": r["monitor"],
          "train_first": mean(tr[:window], "reward_mean"), "train_last": mean(tr[-window:],
                                                                             "reward_mean"),
          "window": window, "d_reward": last["reward_mean"] - first["reward_mean"],
          "d_monitor": last.get("monitor_monitor_mean", float("nan"))
                       - first.get("monitor_monitor_mean", float("nan")),
          "examples": examples, "figure": "rlhf.png" if has_fig else None, "change": change,
          "hours": r["wall_seconds"] / 3600, "processors": r["processors"],
          "eval_prompts": len(by_step[steps[0]])}


def _prompt_change(before: list[dict[str, Any]], after: list[dict[str, Any]],
                   field: str) -> Optional[dict[str, Any]]:
  """Last evaluation minus first on the same prompts: the mean of the per-prompt differences of
  `field`, its 95% bootstrap interval over prompts (compare.paired_bootstrap_interval) and a
  verdict: higher / lower when the interval excludes 0, no measurable change otherwise."""
  key = lambda g: json.dumps(g["prompt"], sort_keys=True)
  first = {key(g): g for g in before}
  pairs = [(first[key(g)][field], g[field]) for g in after
           if key(g) in first and field in g and field in first[key(g)]]
  if not pairs:
    return None
  diff = np.asarray([b - a for a, b in pairs], np.float64)
  lo, hi = compare.paired_bootstrap_interval(diff, **BOOTSTRAP)
  verdict = "higher" if lo > 0 else "lower" if hi < 0 else "no measurable change"
  return {"mean": float(diff.mean()), "lo": lo, "hi": hi, "n": len(pairs), "verdict": verdict,
          "text": f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"}


def _clip(text: Optional[str], n: int) -> str:
  text = (text or "").replace("\n", " ").replace("|", "\\|")
  return text if len(text) <= n else text[:n] + " …"


def _rl_figure(tr: list[dict[str, Any]], ev: list[dict[str, Any]], path: Path) -> bool:
  if not tr:
    return False
  plt = pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
  steps = [x["step"] for x in tr]
  axes[0].plot(steps, [x["reward_mean"] for x in tr], alpha=0.4, label="training batch")
  axes[0].plot([x["step"] for x in ev], [x["reward_mean"] for x in ev], "o-",
               label="eval prompts, optimised RM")
  ax2 = axes[0].twinx()
  ax2.plot([x["step"] for x in ev], [x.get("monitor_monitor_mean") for x in ev], "s--", color="C3",
           label="eval prompts, monitor RM")
  axes[0].set_title("reward")
  axes[0].legend(fontsize=7, loc="upper left")
  ax2.legend(fontsize=7, loc="lower right")
  axes[1].plot(steps, [x["kl"] for x in tr])
  axes[1].set_title("KL to the reference (per sequence)")
  axes[2].plot(steps, [x["response_length"] for x in tr])
  axes[2].set_title("response length (tokens)")
  for a in axes:
    a.set_xlabel("step")
    a.grid(alpha=0.3)
  return _save(plt, fig, path, dpi=110)


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

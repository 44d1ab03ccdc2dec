"""REPORT.md of projects/judges_small from its result files; every number comes from results/.

  python -m projects.judges_small.report
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from helpsteer_jax.evaluation import compare

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FINETUNE_EXPORT_CHECK = HERE.parent / "finetune_small" / "results" / "part2" / "export_check.json"
REPORT = HERE / "REPORT.md"

_SECTIONS = ("Chat", "Chat Hard")


def _load(name: str, results: Path) -> Optional[dict[str, Any]]:
  path = results / f"{name}.json"
  return json.loads(path.read_text()) if path.exists() else None


def _pct(x: Optional[float]) -> str:
  return "-" if x is None else f"{100 * x:.1f}"


def _num(x: Optional[float], digits: int = 2) -> str:
  return "-" if x is None else f"{x:.{digits}f}"


def _clip(text: str, n: int = 300) -> str:
  text = " ".join(text.split())
  return text if len(text) <= n else text[:n] + " ..."


def judge_rows(results: Path) -> list[str]:
  rows = []
  for name, label in (("judge_expected", "expected score, every head500 row"),
                      ("judge_expected_subset", "expected score, the sampled scorer's rows"),
                      ("judge_sampled", "mean of sampled judgments, same rows")):
    r = _load(name, results)
    if r is None:
      rows.append(f"| {label} | not run | | | | | | | |")
      continue
    sec = (r.get("rewardbench") or {}).get("sections", {})
    p = r["pairs"]
    unscorable = sum(r.get("unscorable_judgments", {}).values()) if name == "judge_sampled" else 0
    rows.append(
        f"| {label} | {p['rows']} | {p['scored']} | {r['ties']} | {unscorable} | "
        f"{_pct(sec.get('Chat'))} | {_pct(sec.get('Chat Hard'))} | {_pct(r.get('accuracy'))} | "
        f"{r['wall_seconds'] / 60:.1f} |")
  return rows


def sampled_detail(results: Path) -> list[str]:
  """Why sampled judgments went unscored, and a few of them as the judge wrote them."""
  r = _load("judge_sampled", results)
  if r is None:
    return []
  kinds = r.get("unscorable_judgments", {})
  total = r["pairs"]["rows"] * 2 * r.get("judgments_per_response", 1)
  out = ["", f"Sampled judgments: {total} ({r.get('judgments_per_response')} per response); "
         "unscorable: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) +
         " (missing: no `Score:` anywhere in the text; malformed: the last `Score:` without a "
         "readable number, or out of another total; out of range: a number outside the rubric's "
         "0-5). The first judgments of the first rows, clipped:",
         ""]
  for e in r.get("example_judgments", [])[:2]:
    for j in e["judgments_chosen"][:2]:
      out.append(f"- `{e['id']}` ({e['subset']}): {_clip(j, 240)!r}")
  return out


def _jsonl(path: Path) -> list:
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def monitor_label(directory: str, check_file: Optional[Path] = None) -> str:
  """The outside model by name where it is finetune_small part 2's export (its directory is a
  path on the machine that ran it), else by its path."""
  check_file = check_file or FINETUNE_EXPORT_CHECK
  if check_file.exists():
    check = json.loads(check_file.read_text())
    if check.get("directory") == directory:
      return (f"finetune_small part 2's export (`{check['variant']}`, seed {check['seed']}: the "
              f"best variant on its dev split; `{directory}`)")
  return f"`{directory}`"


def monitor_changes(mon: dict, gens: list[dict]) -> list[str]:
  """Each later policy against the starting one on the outside reward: per prompt, the mean over
  its samples, differenced with the same prompt's under round_0; the mean over prompts with a
  95% bootstrap interval over prompts (compare.paired_bootstrap_interval, 2000 resamples)."""
  per_stage: dict[str, dict[int, list[float]]] = {}
  for stage, v in mon["by_stage"].items():
    rows = [g for g in gens if g["stage"] == stage]
    if len(rows) != len(v["scores"]):  # the scores are in the generations file's order
      return []
    for g, score in zip(rows, v["scores"]):
      per_stage.setdefault(stage, {}).setdefault(g["prompt_index"], []).append(score)
  base = per_stage.get("round_0")
  if not base:
    return []
  lines = []
  for stage, prompts in per_stage.items():
    if stage == "round_0":
      continue
    common = sorted(set(prompts) & set(base))
    diff = np.asarray([np.nanmean(prompts[i]) - np.nanmean(base[i]) for i in common])
    diff = diff[np.isfinite(diff)]
    if not len(diff):
      continue
    lo, hi = compare.paired_bootstrap_interval(diff)
    lines.append(f"{stage} − round_0: {diff.mean():+.3f} over {len(diff)} prompts "
                 f"(95% bootstrap interval over prompts [{lo:+.3f}, {hi:+.3f}])")
  return ["", "Change of the outside reward against the starting policy: " + "; ".join(lines)
          + "."] if lines else []


def loop_section(kind: str, results: Path) -> list[str]:
  s = _load(kind, results)
  if s is None:
    return ["Not run yet."]
  mon = _load(f"{kind}_monitor", results)
  state = ("" if s.get("complete", True) else
           f" **Stopped after {len(s['rounds'])} finished round(s)**: the rows below are the "
           "finished rounds; rerunning the launcher resumes the loop.")
  out = [f"{s['prompts']} prompts; wall time {s['wall_seconds'] / 60:.1f} min.{state}", "",
         "| round | pairs | skipped | judge score mean | judge score histogram | "
         "DPO pair accuracy before → after |",
         "|---|---|---|---|---|---|"]
  for r in s["rounds"]:
    js = r.get("judge_scores") or {}
    out.append(f"| {r['round']} | {r['pairs']} | {json.dumps(r['skipped'])} | "
               f"{_num(js.get('mean'))} | {json.dumps(js.get('histogram', '-'))} | "
               f"{_pct(r.get('dpo_accuracy_before'))} → {_pct(r.get('dpo_accuracy_after'))} |")
  out.append("")
  if mon is None:
    out.append("Outside reward model: not applied yet (the best fine-tuned reward model of "
               "projects/finetune_small part 2 does not exist yet; `python -m "
               "projects.judges_small.run --stage monitor` scores the committed generations "
               "once it does).")
  else:
    out += [f"Outside reward model {monitor_label(mon['monitor'])} (not optimised by the loop) "
            "on every generation of each policy (round_0 = the starting policy, round_r = after r "
            "rounds, final = after the last):", "",
            "| policy | generations | unscored | mean outside reward |", "|---|---|---|---|"]
    for stage, v in mon["by_stage"].items():
      out.append(f"| {stage} | {v['n']} | {v['unscored']} | {v['mean']:.3f} |")
    out += monitor_changes(mon, _jsonl(results / f"{kind}_generations.jsonl"))
  gens = [g for g in _jsonl(results / f"{kind}_generations.jsonl")
          if g["stage"] in ("round_0", "final") and g["prompt_index"] < 2 and g["sample"] == 0]
  if gens:
    out += ["", "Generations (the first sample for the first two prompts, starting and final "
            "policy):", ""]
    for g in gens:
      prompt = g["prompt"][-1]["content"] if isinstance(g["prompt"], list) else g["prompt"]
      out.append(f"- *{g['stage']}*, prompt {_clip(prompt, 120)!r} → {_clip(g['response'])!r}")
  return out


def build(results: Path = RESULTS, out: Path = REPORT) -> str:
  procs = set()
  for name in ("judge_expected", "judge_expected_subset", "judge_sampled", "self_rewarding",
               "spin"):
    r = _load(name, results)
    procs |= set((r or {}).get("processors", []))
  lines = [
      "# SmolLM2-135M-Instruct as its own judge: rubric rewards, Self-Rewarding, SPIN", "",
      "_Generated by `python -m projects.judges_small.report` from `projects/judges_small/"
      "results`; do not edit by hand. Rerun everything with `python -m projects.judges_small.run`"
      " (resumable)._", "",
      "Runs on: " + ("; ".join(f"`{p}`" for p in sorted(procs)) or "(no run yet)") + ".", "",
      "## The judge on RewardBench head500", "",
      "The model grades each response alone with the Self-Rewarding paper's additive 5-point rubric "
      "(`helpsteer_jax/evaluation/judges.py`); a pair is right when the chosen response scores "
      "higher. Ties and unscorable responses count as wrong (RewardBench's rule). Accuracies in %; "
      "the sections use the official weighting over the subsets present (head500 holds all of Chat "
      "and part of Chat Hard).", "",
      "| scorer | rows | scored | ties | unscorable judgments | Chat | Chat Hard | pairs right "
      "| wall (min) |",
      "|---|---|---|---|---|---|---|---|---|",
      *judge_rows(results), *sampled_detail(results), "",
      "Commands: `python -m helpsteer_jax.evaluate --model smollm2 --judge expected --data "
      "../shared/data/rewardbench_filtered_head500.jsonl --output DIR` (and `--judge sampled "
      "--judge-samples 3 --limit-per-subset 8`).", "",
      "## Self-Rewarding iterative DPO (two rounds)", "",
      "`python -m helpsteer_jax.iterative --config experiments/self_rewarding.py:smollm2 "
      "--workdir W`: 4 samples per prompt from the current policy, judged by the same model "
      "(expected score), best vs worst as a DPO pair, DPO from the current iterate.", "",
      *loop_section("self_rewarding", results), "",
      "## SPIN (two iterations)", "",
      "`python -m helpsteer_jax.iterative --config experiments/spin.py:smollm2 --workdir W`: the "
      "HelpSteer sample's most helpful response per prompt is chosen, the policy's own "
      "generation rejected, SPIN loss from the current iterate.", "",
      *loop_section("spin", results), ""]
  text = "\n".join(lines)
  out.write_text(text)
  return text


def main() -> None:
  build()
  print(f"wrote {REPORT}")


if __name__ == "__main__":
  main()

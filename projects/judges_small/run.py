"""SmolLM2-135M-Instruct as its own judge (issue 19), resumable: what is done is skipped.

  python -m projects.judges_small.run                    # every stage not yet done, then REPORT.md
  python -m projects.judges_small.run --stage report     # only regenerate REPORT.md
  python -m projects.judges_small.run --monitor DIR      # the outside reward model (default below)

(from the repository root, with ../shared/data beside it). Stages, each a library command run as
a child process (so SIGTERM reaches it and a rerun resumes):

- `judge_expected`: `helpsteer-evaluate --judge expected` on every RewardBench head500 row (the
  rubric's expected score from one forward pass);
- `judge_sampled`: `--judge sampled` (the mean of 3 sampled judgments) on the first
  `SAMPLED_PER_SUBSET` rows of each subset, and `judge_expected_subset`: the expected scorer on
  the same rows, so the two scorers are compared on identical pairs;
- `self_rewarding`, `spin`: `helpsteer-iterative` with experiments/self_rewarding.py:smollm2 and
  experiments/spin.py:smollm2 (two rounds each, 32 HelpSteer training prompts);
- `monitor`: every generation of both loops (each round's policy and the final one, committed as
  results/KIND_generations.jsonl) scored by `helpsteer-score` with the best fine-tuned scalar
  reward model of projects/finetune_small (its part 2 export, results/part2/export_check.json, or
  --monitor): the outside check of improvement. Skipped, and said so in the report, until that
  model exists; since the generations are committed it can run in any later session.

Everything goes to --workdir; the result files the report reads are copied to results/ beside this
file, and the report is REPORT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks import machine
from helpsteer_jax.training.configs import SHARED_DATA

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"
WORKDIR = REPO / "runs" / "judges_small"
RB_FILE = "rewardbench_filtered_head500.jsonl"
SAMPLED_PER_SUBSET = 8  # rows per RewardBench subset for the sampled scorer (61 of head500)
JUDGE_SAMPLES = 3  # the Self-Rewarding paper averages 3 sampled judgments
LOOPS = ("self_rewarding", "spin")
EXPORT_CHECK = REPO / "projects" / "finetune_small" / "results" / "part2" / "export_check.json"


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _child(cmd: list[str], out: Path) -> None:
  """Runs one stage; its wall time, exit status and processor go to out/segments.jsonl."""
  out.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  t0 = time.time()
  with open(out / "stderr.log", "a", encoding="utf-8") as err:
    child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=err, stderr=err)
    old = {s: signal.signal(s, lambda sig, _f: child.send_signal(sig))
           for s in (signal.SIGTERM, signal.SIGINT)}
    try:
      code = child.wait()
    finally:
      for s, h in old.items():
        signal.signal(s, h)
  with open(out / "segments.jsonl", "a", encoding="utf-8") as f:
    f.write(json.dumps({"wall_s": round(time.time() - t0, 1), "exit": code,
                        "processor": machine.header()}) + "\n")
  if code:
    sys.exit(f"{' '.join(cmd[:4])} ... exited with {code}; see {out / 'stderr.log'}; "
             "rerun to resume")


def judge_stages(workdir: Path, data_dir: Path, names: tuple[str, ...]) -> None:
  rb = str(data_dir / RB_FILE)
  runs = {"judge_expected": ["--judge", "expected"],
          "judge_sampled": ["--judge", "sampled", "--judge-samples", str(JUDGE_SAMPLES),
                            "--limit-per-subset", str(SAMPLED_PER_SUBSET)],
          "judge_expected_subset": ["--judge", "expected",
                                    "--limit-per-subset", str(SAMPLED_PER_SUBSET)]}
  for name in names:
    extra, out = runs[name], workdir / name
    if (out / "results.json").exists():
      continue
    log(f"{name} -> {out}")
    _child([sys.executable, "-m", "helpsteer_jax.evaluate", "--model", "smollm2", "--data", rb,
            "--output", str(out), "--no-progress", *extra], out)


def loop_stages(workdir: Path) -> None:
  for kind in LOOPS:
    out = workdir / kind
    if (out / "summary.json").exists():
      continue
    log(f"{kind} -> {out}")
    _child([sys.executable, "-m", "helpsteer_jax.iterative",
            f"--config={REPO / 'experiments' / f'{kind}.py'}:smollm2", f"--workdir={out}"], out)


def monitor_stage(workdir: Path, results: Path, monitor: Optional[str]) -> None:
  """Scores every committed generation of both loops (results/KIND_generations.jsonl: each
  round's policy and the final one) with the outside reward model, through `helpsteer-score`.
  The generations are committed, so this runs whenever the model exists, in any later session."""
  if monitor is None:
    log("monitor: no outside reward model yet (finetune_small part 2's export); skipped")
    return
  for kind in LOOPS:
    gens, out = results / f"{kind}_generations.jsonl", results / f"{kind}_monitor.json"
    if not gens.exists() or (out.exists() and json.loads(out.read_text())["monitor"] == monitor):
      continue
    scored = workdir / f"{kind}_monitor" / "scored.jsonl"
    log(f"monitor {kind}: {monitor}")
    _child([sys.executable, "-m", "helpsteer_jax.score", "--model", monitor, "--input", str(gens),
            "--output", str(scored)], scored.parent)
    by_stage: dict[str, list[float]] = {}
    for row in _jsonl(scored):
      by_stage.setdefault(row["stage"], []).append(
          float("nan") if row["reward"] is None else float(row["reward"]))
    out.write_text(json.dumps({"monitor": monitor, "by_stage": {
        k: {"mean": float(np.nanmean(np.asarray(v, np.float64))), "n": len(v),
            "unscored": int(np.isnan(np.asarray(v, np.float64)).sum()), "scores": v}
        for k, v in by_stage.items()}}, indent=1) + "\n")


def default_monitor() -> Optional[str]:
  """The best fine-tuned scalar reward model (finetune_small part 2's export), if it exists."""
  if not EXPORT_CHECK.exists():
    return None
  directory = json.loads(EXPORT_CHECK.read_text())["directory"]
  return directory if Path(directory, "config.json").exists() else None


def _jsonl(path: Path) -> list:
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def collect(workdir: Path, results: Path) -> None:
  """Copies what the report needs: the judges' results.json, each loop's summary and every
  generation (per round and final), wall times and processors."""
  results.mkdir(parents=True, exist_ok=True)
  for name in ("judge_expected", "judge_sampled", "judge_expected_subset"):
    d = workdir / name
    if (d / "results.json").exists():
      r = json.loads((d / "results.json").read_text())
      r["wall_seconds"] = sum(s["wall_s"] for s in _jsonl(d / "segments.jsonl"))
      r["processors"] = sorted({s["processor"] for s in _jsonl(d / "segments.jsonl")})
      r.pop("leaderboard", None)
      if name == "judge_sampled":  # a few judgments as the judge wrote them
        r["example_judgments"] = [
            {k: e[k] for k in ("id", "subset", "reward_chosen", "reward_rejected",
                               "judgments_chosen")} for e in _jsonl(d / "examples.jsonl")[:3]]
      (results / f"{name}.json").write_text(json.dumps(r, indent=1) + "\n")
  for kind in LOOPS:
    d = workdir / kind
    stages = sorted((p.name for p in d.glob("round_*")), key=lambda n: int(n.split("_")[1]))
    if (d / "summary.json").exists():
      s = dict(json.loads((d / "summary.json").read_text()), complete=True)
    else:  # stopped mid-loop: the finished rounds (a later run resumes and completes them)
      done = [st for st in stages if (d / st / "summary.json").exists()]
      if not done:
        continue
      s = {"kind": kind, "complete": False,
           "rounds": [json.loads((d / st / "summary.json").read_text()) for st in done],
           "prompts": len(_jsonl(d / done[0] / "generations.jsonl"))}
      stages = done
    flat = []
    for stage in stages + ["final"]:
      for i, g in enumerate(_jsonl(d / stage / "generations.jsonl")):
        flat += [{"stage": stage, "prompt_index": i, "sample": j, "prompt": g["prompt"],
                  "response": r} for j, r in enumerate(g["responses"])]
    with open(results / f"{kind}_generations.jsonl", "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in flat)
    s["wall_seconds"] = sum(x["wall_s"] for x in _jsonl(d / "segments.jsonl"))
    s["processors"] = sorted({x["processor"] for x in _jsonl(d / "segments.jsonl")})
    (results / f"{kind}.json").write_text(json.dumps(s, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--stage", choices=("all", "judges", "loops", "monitor", "report"), default="all")
  ap.add_argument("--workdir", type=Path, default=WORKDIR)
  ap.add_argument("--data-dir", type=Path, default=SHARED_DATA)
  ap.add_argument("--monitor", default=None,
                  help="outside scalar reward model (default: finetune_small's part 2 export)")
  args = ap.parse_args(argv)
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  if args.stage in ("all", "judges"):
    if not (args.data_dir / RB_FILE).exists():
      sys.exit(f"{args.data_dir / RB_FILE} is missing (--data-dir)")
    # the subset comparison first (minutes), the loops, then every head500 row (the longest)
    judge_stages(args.workdir, args.data_dir, ("judge_expected_subset", "judge_sampled"))
  if args.stage in ("all", "loops"):
    loop_stages(args.workdir)
  if args.workdir.is_dir():
    collect(args.workdir, RESULTS)
  if args.stage in ("all", "monitor"):
    monitor_stage(args.workdir, RESULTS, args.monitor or default_monitor())
  if args.stage in ("all", "judges"):
    judge_stages(args.workdir, args.data_dir, ("judge_expected",))
    collect(args.workdir, RESULTS)
  from projects.judges_small import report  # pylint: disable=g-import-not-at-top
  report.build()
  log(f"wrote {report.REPORT}")


if __name__ == "__main__":
  main()

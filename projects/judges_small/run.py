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
- `monitor`: the loops rerun with `loop.monitor` = the best fine-tuned scalar reward model of
  projects/finetune_small (its part 2 export, results/part2/export_check.json), which scores each
  round's generations and the final policy's: the outside check of improvement. Skipped, and said
  so in the report, until that model exists.

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


def loop_stages(workdir: Path, monitor: str | None) -> None:
  for kind in LOOPS:
    out = workdir / kind
    summary = out / "summary.json"
    if summary.exists():
      s = json.loads(summary.read_text())
      if not monitor or s.get("final_monitor_mean") is not None:
        continue
    log(f"{kind} -> {out}" + (f" (monitor {monitor})" if monitor else ""))
    cmd = [sys.executable, "-m", "helpsteer_jax.iterative",
           f"--config={REPO / 'experiments' / f'{kind}.py'}:smollm2", f"--workdir={out}"]
    if monitor:
      cmd.append(f"--config.loop.monitor={monitor}")
    _child(cmd, out)


def default_monitor() -> str | None:
  """The best fine-tuned scalar reward model (finetune_small part 2's export), if it exists."""
  if not EXPORT_CHECK.exists():
    return None
  directory = json.loads(EXPORT_CHECK.read_text())["directory"]
  return directory if Path(directory, "config.json").exists() else None


def _jsonl(path: Path) -> list:
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def collect(workdir: Path, results: Path) -> None:
  """Copies what the report needs: the judges' results.json, each loop's summaries, a few
  generations of the first and last policy with their judge and monitor scores, wall times."""
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
    if not (d / "summary.json").exists():
      continue
    s = json.loads((d / "summary.json").read_text())
    show = []
    for stage in ("round_0", "final"):
      gens = _jsonl(d / stage / "generations.jsonl")[:2]
      mon = json.loads((d / stage / "monitor.json").read_text()) if (
          d / stage / "monitor.json").exists() else None
      n = len(gens[0]["responses"]) if gens else 0
      for i, g in enumerate(gens):
        show.append({"stage": stage, "prompt": g["prompt"][-1]["content"],
                     "response": g["responses"][0],
                     "monitor": mon["scores"][i * n] if mon else None})
    s["generations_shown"] = show
    s["wall_seconds"] = sum(x["wall_s"] for x in _jsonl(d / "segments.jsonl"))
    s["processors"] = sorted({x["processor"] for x in _jsonl(d / "segments.jsonl")})
    (results / f"{kind}.json").write_text(json.dumps(s, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--stage", choices=("all", "judges", "loops", "report"), default="all")
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
    loop_stages(args.workdir, args.monitor or default_monitor())
  if args.stage in ("all", "judges"):
    judge_stages(args.workdir, args.data_dir, ("judge_expected",))
  if args.workdir.is_dir():
    collect(args.workdir, RESULTS)
  from projects.judges_small import report  # pylint: disable=g-import-not-at-top
  report.build()
  log(f"wrote {report.REPORT}")


if __name__ == "__main__":
  main()

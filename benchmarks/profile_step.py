"""Where the time of our train step (or scoring) goes on this CPU: per-op totals from an XLA profile.

  python benchmarks/profile_step.py                           # jax_fp32 train step, 4 x 2 x 256
  python benchmarks/profile_step.py --impl jax_bf16_remat --steps 2
  python benchmarks/profile_step.py --mode score --batch 8 --length 512

The step is the one benchmarks/train_step.py times (`build_jax`). After a warm-up step,
`--steps` steps run under `jax.profiler.trace` (a Perfetto trace); every complete event on an XLA
thread is an executed op (a thunk: a fusion, a dot, a copy, ...), named as in the compiled HLO.
Each op is put in a category by its HLO opcode and, for fusions, by what they contain (dot,
transpose, dynamic-update-slice, reduce), read from the compiled module's text. Printed: the
categories' total op time, the largest ops, how busy the XLA threads were (op time summed over
threads divided by wall time x cores: 100% means every core ran a traced op all the time), and
one unprofiled step's wall and process CPU time (CPU time counts every thread, including work a
library such as YNNPACK spreads over its own pool inside one traced op).
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
import train_step  # pylint: disable=g-import-not-at-top,wrong-import-position

# HLO instruction: "  %name = f32[...] opcode(...)" or "  name = ... opcode(...)" (ROOT optional).
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\(", re.M)
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", re.M)
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def hlo_categories(hlo: str) -> dict[str, str]:
  """Instruction name -> category, for the instructions of the compiled module."""
  bodies: dict[str, str] = {}
  for block in re.split(r"\n(?=(?:ENTRY\s+)?%?[\w.\-]+\s[^\n]*\{\s*\n)", hlo):
    m = _COMPUTATION.match(block.strip("\n"))
    if m:
      bodies[m.group(1)] = block
  out = {}
  for line in hlo.splitlines():
    m = _INSTR.match(line)
    if not m:
      continue
    name, opcode = m.group(1), m.group(2)
    if opcode == "fusion":
      called = _CALLS.search(line)
      inner = {op for _, op in _INSTR.findall(bodies.get(called.group(1), ""))} if called else set()
      if inner & {"dot", "convolution"}:
        cat = "fusion: dot"
      elif "dynamic-update-slice" in inner or "dynamic-slice" in inner:
        cat = "fusion: dynamic (update) slice"
      elif "transpose" in inner or "copy" in inner:
        cat = "fusion: transpose/copy"
      elif "reduce" in inner:
        cat = "fusion: reduce"
      else:
        cat = "fusion: elementwise"
    elif opcode in ("dot", "convolution"):
      cat = "dot"
    elif opcode in ("copy", "transpose"):
      cat = "copy/transpose"
    elif opcode in ("dynamic-slice", "dynamic-update-slice"):
      cat = "dynamic (update) slice"
    elif opcode in ("while", "call", "conditional", "tuple", "get-tuple-element", "parameter",
                    "constant", "bitcast"):
      continue  # control flow and views: their time is their body's
    else:
      cat = opcode
    out[name] = cat
  return out


def read_trace(log_dir: str) -> list[dict]:
  paths = glob.glob(os.path.join(log_dir, "**", "*.trace.json.gz"), recursive=True) + \
      glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not paths:
    raise FileNotFoundError(f"no trace under {log_dir}")
  with gzip.open(max(paths, key=os.path.getmtime), "rt") as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--impl", default="jax_fp32", choices=train_step.JAX_IMPLS)
  ap.add_argument("--mode", choices=("train", "score"), default="train")
  ap.add_argument("--batch", type=int, default=0)
  ap.add_argument("--length", type=int, default=0)
  ap.add_argument("--steps", type=int, default=2, help="profiled steps (after one warm-up)")
  ap.add_argument("--top", type=int, default=15, help="largest ops to list")
  args = ap.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  train = args.mode == "train"
  batch = args.batch or (4 if train else 8)
  length = args.length or (256 if train else 512)
  print(machine.header(machine.describe()), flush=True)
  run, jitted, call_args = train_step.build_jax(args.impl, args.mode, batch, length)
  hlo = jitted.lower(*call_args).compile().as_text()
  cats = hlo_categories(hlo)
  t0 = time.perf_counter()
  run()  # compile (cached) + warm-up
  first = time.perf_counter() - t0
  t0, c0 = time.perf_counter(), time.process_time()
  run()  # unprofiled: wall and process CPU time (all threads, including libraries' own pools)
  plain_wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  with tempfile.TemporaryDirectory() as log_dir:
    t0 = time.perf_counter()
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
      for _ in range(args.steps):
        run()
    wall = (time.perf_counter() - t0) / args.steps
    events = read_trace(log_dir)
  per_op: collections.Counter = collections.Counter()
  threads: set = set()
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    name = e.get("name", "")
    if name in cats:
      per_op[name] += e["dur"] / 1e6 / args.steps
      threads.add((e.get("pid"), e.get("tid")))
  total = sum(per_op.values())
  by_cat: collections.Counter = collections.Counter()
  for name, sec in per_op.items():
    by_cat[cats[name]] += sec
  cores = os.cpu_count() or 1
  print(f"\n{args.impl} {args.mode}, {batch} x {'2 x ' if train else ''}{length} tokens: "
        f"{wall:.2f} s per step (wall, under the profiler); op time {total:.2f} s per step on "
        f"{len(threads)} thread(s); busy {total / (wall * cores):.0%} of {cores} cores x wall")
  print(f"unprofiled step: {plain_wall:.2f} s wall, {cpu:.2f} s process CPU time "
        f"({cpu / (plain_wall * cores):.0%} of {cores} cores x wall); compile + first step "
        f"{first:.1f} s")
  print(f"\n{'category':34s} {'s/step':>8s} {'share':>6s}")
  for cat, sec in by_cat.most_common():
    print(f"{cat:34s} {sec:8.3f} {sec / total:6.1%}")
  print(f"\n{'largest ops':34s} {'s/step':>8s}  category")
  for name, sec in per_op.most_common(args.top):
    print(f"{name[:34]:34s} {sec:8.3f}  {cats[name]}")
  print(json.dumps({"impl": args.impl, "mode": args.mode, "batch": batch, "length": length,
                    "wall_s": wall, "op_s": total, "threads": len(threads),
                    "plain_wall_s": plain_wall, "cpu_s": cpu, "first_s": first,
                    "by_category": dict(by_cat), "top": per_op.most_common(args.top),
                    "machine": machine.describe()}))


if __name__ == "__main__":
  main()

"""The hardware ceiling: matmul GFLOP/s through XLA, for the shapes a train step runs.

  python benchmarks/matmul_peak.py
  python benchmarks/matmul_peak.py --flags="|--xla_cpu_use_onednn=true"

A SmolLM2-135M train step at 4 pairs x 2 x 256 tokens multiplies [2048, 576] activations by
[576, 1536] weights (forward, x @ w), and in the backward pass computes the weight gradient
(x.T @ g) and the input gradient (g @ w.T). This prints all three (does XLA:CPU lose speed on
the transposed operands?) beside the square 2048^3 matmul the other benchmarks use as the MFU
peak, and the square matmul in bfloat16 with a float32 result (what
`low_precision_dots="f32_accumulate"` asks for) and with a bfloat16 result (a plain bf16 dot).
Each XLA_FLAGS setting runs in its own process (flags are read once at start-up), with a time
limit, since some experimental CPU flags hang or crash on some builds; a setting that fails is
reported, not fatal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import machine

F32, BF16 = "float32", "bfloat16"
# name: (lhs shape, rhs shape, transpose lhs, transpose rhs, operand dtype, result dtype)
SHAPES = {
    "square 2048^3": ((2048, 2048), (2048, 2048), False, False, F32, F32),
    "bf16->f32 2048^3": ((2048, 2048), (2048, 2048), False, False, BF16, F32),
    "bf16->bf16 2048^3": ((2048, 2048), (2048, 2048), False, False, BF16, BF16),
    "forward x@w": ((2048, 576), (576, 1536), False, False, F32, F32),
    "weight grad x.T@g": ((2048, 576), (2048, 1536), True, False, F32, F32),
    "input grad g@w.T": ((2048, 1536), (576, 1536), False, True, F32, F32),
}


def child() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  out = {}
  for name, (sa, sb, ta, tb, dtype, res_dtype) in SHAPES.items():
    a = jax.random.normal(jax.random.PRNGKey(0), sa, dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), sb, dtype)
    f = jax.jit(lambda x, y, ta=ta, tb=tb, r=res_dtype: jnp.matmul(
        x.T if ta else x, y.T if tb else y, preferred_element_type=r))
    f(a, b).block_until_ready()
    m, k = (sa[1], sa[0]) if ta else sa
    n = sb[0] if tb else sb[1]
    best = float("inf")
    for _ in range(10):
      t0 = time.perf_counter()
      f(a, b).block_until_ready()
      best = min(best, time.perf_counter() - t0)
    out[name] = 2 * m * k * n / best / 1e9
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--flags", default="|--xla_cpu_experimental_ynn_fusion_type="
                  "|--xla_cpu_use_onednn=true|--xla_cpu_enable_fast_math=true",
                  help="XLA_FLAGS settings to compare, separated by '|' (empty = the default)")
  ap.add_argument("--timeout", type=int, default=180)
  ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.child:
    print(json.dumps(child()))
    return
  print(machine.header())
  print("matmul GFLOP/s (best of 10; float32 unless named)")
  print(f"{'XLA_FLAGS':40s} " + " ".join(f"{n:>18s}" for n in SHAPES))
  for flags in args.flags.split("|"):
    env = dict(os.environ, XLA_FLAGS=flags)
    try:
      out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env,
                           capture_output=True, text=True, timeout=args.timeout, check=False)
      if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else
                           f"exit {out.returncode}")
      res = json.loads(out.stdout.strip().splitlines()[-1])
      print(f"{flags or '(default)':40s} " + " ".join(f"{res[n]:18.1f}" for n in SHAPES),
            flush=True)
    except (subprocess.TimeoutExpired, RuntimeError) as e:
      print(f"{flags or '(default)':40s} failed: {str(e)[:120]}", flush=True)


if __name__ == "__main__":
  main()

"""GPU suite: a 1B-class reward model's train step and scoring on one GPU, and our tests there.

Run it through run.sh (wheels, time limits, one process per part); a part by hand:

  python benchmarks/gpu/suite.py --out benchmarks/gpu/out --part train --train-batch 8
  python benchmarks/gpu/suite.py --out /tmp/o --part train --dry-run     # CPU, tiny model

Parts, in run.sh's order, each writing its entry of the one results file as soon as it can
(benchmarks/gpu/results.py):
  peak       the device, versions, the spec bf16 dense peak of this device kind (H100 SXM and
             H200: 989 TFLOP/s) and a measured one: an 8192^3 bf16 matmul, random operands, best
             of several timed batches of back-to-back products.
  attention  cuDNN flash attention with our arguments (is_causal plus the lengths of right-padded
             rows, models/llama.causal_padded_attention) against XLA's masked attention, outputs
             and gradients in bf16; and both timed forward + backward at the train length. With
             --attention auto the model parts use cudnn only if this check passed.
  train      our train step (training.step.train_step, objectives.pairwise_objective with the
             Bradley-Terry loss, training.optimizer.make_optimizer: AdamW b=(0.9, 0.98), weight
             decay 0.1, clipping at 1.0) on Llama-3.2-1B's shape (PRESETS["llama3_2_1b"], random
             weights): bf16 compute, float32 parameters and AdamW state, layers scanned, remat,
             B pairs x 2 x L tokens, no padding.
  score      the reward model's forward pass (what `helpsteer-score` runs), bf16.
  tests      a subset of our pytest tests with JAX_PLATFORMS=cuda: pass / fail / skip counts.

Step time is the median of the timed steps (each waited for), after warm-up steps. FLOPs are
written down, not measured: training.metrics_log.train_flops_per_token (6 N + 12 L H d T per
token, PaLM appendix B, attention counted in full, not causal-halved; remat's recomputation is
not useful work), a third of that for scoring. MFU is model FLOP/s over the spec peak and over
the measured matmul peak.
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import re
import statistics
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import results as results_file  # benchmarks/gpu/results.py, beside this file
from helpsteer_jax.models import PRESETS, LlamaConfig, LlamaRewardModel
from helpsteer_jax.models.llama import (attention_mask_4d, causal_padded_attention,
                                        grouped_attention)
from helpsteer_jax.training.metrics_log import train_flops_per_token
from helpsteer_jax.training.objectives import pairwise_objective
from helpsteer_jax.training.optimizer import make_optimizer
from helpsteer_jax.training.state import TrainState
from helpsteer_jax.training.step import train_step

REPO = Path(__file__).resolve().parents[2]

# bf16 dense tensor-core peaks from NVIDIA's data sheets (the sparse figure halved); the first
# entry whose name is in the device kind wins, so the NVL and PCIe cards come before the SXM ones.
SPEC_BF16_DENSE = (
    ("H200 NVL", 835e12, "H200 NVL bf16 dense (spec)"),
    ("H200", 989e12, "H200 SXM bf16 dense (spec; the H100 SXM's tensor cores)"),
    ("H100 NVL", 835e12, "H100 NVL bf16 dense (spec)"),
    ("H100 PCIe", 756e12, "H100 PCIe bf16 dense (spec)"),
    ("H100", 989e12, "H100 SXM bf16 dense (spec)"),
)

# The tests run on the GPU: the model, loss, step and parity ones that are quick.
GPU_TESTS = ("tests/test_losses.py", "tests/test_model_parity.py",
             "tests/test_low_precision_dots.py", "tests/test_attention_cudnn_args.py",
             "tests/test_packing.py", "tests/test_generate.py", "tests/test_precision.py",
             "tests/test_strength_normalisation.py", "tests/test_read_rows.py")
DRY_RUN_TESTS = ("tests/test_attention_cudnn_args.py",)

# What the model parts use when cuDNN is not usable: the package's default attention.
FALLBACK_ATTENTION = LlamaConfig().attention_impl

# The optimizer block the trainer reads: the paper's recipe (training/optimizer.py), constant LR.
OPTIM = types.SimpleNamespace(lr=1e-5, warmup_steps=10, schedule="constant", decay_steps=0,
                              final_lr=0.0, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.1,
                              grad_clip=1.0)


def spec_peak(device_kind: str) -> tuple[float | None, str | None]:
  for name, flops, label in SPEC_BF16_DENSE:
    if name.lower() in device_kind.lower():
      return flops, label
  return None, None


def _versions() -> dict[str, str]:
  """Installed versions (distribution metadata: nothing imported), "missing" where absent."""
  out = {}
  for dist in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "nvidia-cudnn-cu13",
               "nvidia-cudnn-cu12", "flax", "optax", "orbax-checkpoint", "transformers", "torch",
               "numpy", "ml-collections", "gguf", "tensorboardX", "pytest", "pytest-xdist",
               "pytest-timeout", "datasets"):
    try:
      out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      out[dist] = "missing"
  return out


def _environment() -> dict[str, Any]:
  dev = jax.devices()[0]
  flops, label = spec_peak(dev.device_kind) if dev.platform == "gpu" else (None, None)
  env = {"platform": dev.platform, "device_kind": dev.device_kind,
         "device_count": jax.device_count(), "python": sys.version.split()[0],
         "spec_peak_flops": flops, "spec_peak_name": label, "modules": _versions(),
         "xla_flags": os.environ.get("XLA_FLAGS", "")}
  for k in ("jax", "jaxlib", "flax", "optax"):
    env[k] = env["modules"][k]
  try:
    env["environment_info"] = jax.print_environment_info(return_string=True)
  except Exception as e:  # pylint: disable=broad-except
    env["environment_info"] = f"unavailable: {e!r}"
  return env


def _timed_matmul(n: int, dtype: str, iters: int, repeats: int) -> list[float]:
  """Seconds per product of two random [n, n] matrices, one entry per batch of `iters`."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  for _ in range(3):
    f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(iters):
      c = f(a, b)
    c.block_until_ready()
    times.append((time.perf_counter() - t0) / iters)
  return times


def part_peak(args: argparse.Namespace) -> dict[str, Any]:
  env = _environment()
  results_file.save_part(args.out, "peak", {"status": "running", "env": env})
  n = args.matmul_size
  times = _timed_matmul(n, "bfloat16", args.matmul_iters, args.matmul_repeats)
  return {"status": "ok", "env": env, "matmul": f"{n}^3 bf16 -> bf16", "repeats": len(times),
          "matmul_tflops": 2 * n**3 / min(times) / 1e12,
          "matmul_tflops_median": 2 * n**3 / statistics.median(times) / 1e12}


def _outputs_and_grads(attend: Callable, q, k, v, ct, real_bt):
  """Attention outputs at real tokens and d(sum(out * ct) over real tokens)/d(q, k, v)."""
  keep = jnp.asarray(real_bt, q.dtype)[:, :, None, None]
  out, vjp = jax.vjp(attend, q, k, v)
  return (out * keep, *vjp(ct * keep))


def _masked_attention(q, k, v, mask):
  return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=q.shape[-1] ** -0.5,
                                      implementation="xla")


def _qkv(b: int, t: int, h: int, kv: int, hd: int, dtype=jnp.bfloat16):
  ks = jax.random.split(jax.random.PRNGKey(0), 4)
  return (jax.random.normal(ks[0], (b, t, h, hd), dtype),
          jax.random.normal(ks[1], (b, t, kv, hd), dtype),
          jax.random.normal(ks[2], (b, t, kv, hd), dtype),
          jax.random.normal(ks[3], (b, t, h, hd), dtype))


def part_attention(args: argparse.Namespace) -> dict[str, Any]:
  """Checks our cuDNN arguments against XLA's masked attention, then times both."""
  on_gpu = jax.default_backend() == "gpu"
  cfg = _preset(args)
  h, kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
  b, t = 4, min(256, args.train_length)
  lengths = np.array([t, (3 * t) // 4, 1, t // 2])
  real = np.arange(t)[None, :] < lengths[:, None]
  mask = attention_mask_4d(jnp.asarray(real))
  q, k, v, ct = _qkv(b, t, h, kv, hd)
  run = lambda attend: jax.jit(functools.partial(_outputs_and_grads, attend, real_bt=real))(
      q, k, v, ct)
  want = [np.asarray(x, np.float32) for x in run(lambda *a: _masked_attention(*a, mask))]
  scale = max(float(np.abs(w).max()) for w in want)
  checks = {}
  # "xla" runs the same arguments through XLA (everywhere); "cudnn" the real kernel (GPU only).
  for impl in (["cudnn"] if on_gpu else []) + ["xla"]:
    try:
      got = run(lambda *a, impl=impl: causal_padded_attention(*a, mask, hd ** -0.5, impl))
      err = max(float(np.abs(np.asarray(g, np.float32) - w).max()) for g, w in zip(got, want))
      checks[impl + "_lengths"] = {"max_rel_err": err / scale,
                                   "ok": bool(np.isfinite(err) and err / scale <= 2e-2)}
    except Exception as e:  # pylint: disable=broad-except  (an unsupported cuDNN is a result)
      checks[impl + "_lengths"] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:4000]}
  if not on_gpu:
    use, reason = FALLBACK_ATTENTION, f"no GPU ({jax.default_backend()})"
  elif checks["cudnn_lengths"]["ok"]:
    use, reason = "cudnn", "cuDNN matched XLA within 2% of the largest value"
  else:
    use, reason = FALLBACK_ATTENTION, "the cuDNN check failed"
  entry = {"status": "ok", "checks": checks, "use_impl": use, "reason": reason,
           "check_shape": f"{b} x {t}, {h}/{kv} heads x {hd}, bf16"}
  results_file.save_part(args.out, "attention", entry)
  # Forward + backward timings at the train length, a few rows (XLA's [B, H, T, T] logits).
  tb, tt = args.attention_timing_batch, args.train_length
  q, k, v, ct = _qkv(tb, tt, h, kv, hd)
  real = np.ones((tb, tt), bool)
  mask = attention_mask_4d(jnp.asarray(real))
  variants = {"xla_masked": lambda *a: _masked_attention(*a, mask),
              "grouped_masked": lambda *a: grouped_attention(*a, mask, hd ** -0.5)}
  if use == "cudnn":
    variants["cudnn_lengths"] = lambda *a: causal_padded_attention(*a, mask, hd ** -0.5, "cudnn")
  timings = {}
  for name, attend in variants.items():
    f = jax.jit(functools.partial(_outputs_and_grads, attend, real_bt=real))
    jax.block_until_ready(f(q, k, v, ct))
    times = []
    for _ in range(args.attention_timing_iters):
      t0 = time.perf_counter()
      jax.block_until_ready(f(q, k, v, ct))
      times.append(time.perf_counter() - t0)
    timings[name] = 1e3 * statistics.median(times)
  entry.update(timings_ms=timings, timing_shape=f"{tb} x {tt}, {h}/{kv} heads x {hd}, bf16")
  return entry


def _preset(args: argparse.Namespace) -> LlamaConfig:
  return PRESETS[args.preset]


def _model_config(args: argparse.Namespace) -> LlamaConfig:
  """bf16 compute with float32 parameters, scanned layers, remat; attention as asked or found."""
  impl = args.attention
  if impl == "auto":
    att = results_file.load(args.out).get("parts", {}).get("attention", {})
    impl = att.get("use_impl", FALLBACK_ATTENTION)
  return _preset(args).replace(dtype="bfloat16", param_dtype="float32", scan_layers=True,
                               remat_policy=args.remat_policy, attention_impl=impl,
                               low_precision_dots=args.low_precision_dots)


def _peaks(args: argparse.Namespace) -> tuple[float | None, float | None]:
  peak = results_file.load(args.out).get("parts", {}).get("peak", {})
  measured = peak.get("matmul_tflops")
  return peak.get("env", {}).get("spec_peak_flops"), measured * 1e12 if measured else None


def _memory_gib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return peak / 2**30 if peak else None


def _timed_steps(run: Callable[[], Any], args: argparse.Namespace, started: float) -> list[float]:
  """Timed calls (each waited for) after the warm-up; stops early near the part's time limit."""
  for _ in range(args.warmup - 1):  # the first call was made while building
    run()
  times = []
  for _ in range(args.steps):
    if len(times) >= 3 and time.perf_counter() - started > args.time_limit - 20:
      break
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return times


def _throughput(cfg: LlamaConfig, args: argparse.Namespace, tokens: int, length: int,
                step_s: float, fraction: float) -> dict[str, Any]:
  """tokens/s, model TFLOP/s and MFU against the spec and the measured peak."""
  spec, measured = _peaks(args)
  flops = tokens / step_s * train_flops_per_token(cfg, length) * fraction
  return {"tokens_per_s": tokens / step_s, "model_tflops": flops / 1e12,
          "flops_per_token": train_flops_per_token(cfg, length) * fraction,
          "mfu_spec": flops / spec if spec else None,
          "mfu_measured": flops / measured if measured else None}


def _with_cudnn_fallback(build: Callable[[LlamaConfig], Callable[[], Any]], cfg: LlamaConfig,
                         args: argparse.Namespace, part: str, entry: dict[str, Any]
                         ) -> tuple[LlamaConfig, Callable[[], Any]]:
  """build(cfg) -> run (compiled, first call made); on a cuDNN error, the default attention.

  Only with --attention auto: a cuDNN that passed the small check can still refuse the model's
  shapes; the part then measures the package's default attention and records why.
  """
  try:
    return cfg, build(cfg)
  except Exception as e:  # pylint: disable=broad-except
    if cfg.attention_impl != "cudnn" or args.attention != "auto":
      raise
    entry.update(cudnn_error=f"{type(e).__name__}: {e}"[:4000],
                 attention_impl=f"{FALLBACK_ATTENTION} (cuDNN failed)")
    results_file.save_part(args.out, part, entry)
    cfg = cfg.replace(attention_impl=FALLBACK_ATTENTION)
    return cfg, build(cfg)


def _phase(args: argparse.Namespace, part: str, entry: dict[str, Any], phase: str) -> None:
  """Records what the part is doing, so a part killed by its time limit says where."""
  entry["phase"] = phase
  results_file.save_part(args.out, part, entry)


def _compile(args: argparse.Namespace, part: str, entry: dict[str, Any], cfg: LlamaConfig,
             jitted: Any, *example: Any) -> Any:
  """AOT-compiles `jitted` for `example`, recording the phase and `compile_s`."""
  _phase(args, part, entry, f"compile ({cfg.attention_impl})")
  t0 = time.perf_counter()
  compiled = jitted.lower(*example).compile()
  entry["compile_s"] = time.perf_counter() - t0
  return compiled


def _first_run(args: argparse.Namespace, part: str, entry: dict[str, Any], cfg: LlamaConfig,
               run: Callable[[], Any]) -> Callable[[], Any]:
  """Runs once (untimed warm-up, recorded as `first_step_s`) and returns `run`."""
  _phase(args, part, entry, f"first step ({cfg.attention_impl})")
  t0 = time.perf_counter()
  run()
  entry["first_step_s"] = time.perf_counter() - t0
  return run


def part_train(args: argparse.Namespace) -> dict[str, Any]:
  started = time.perf_counter()
  cfg = _model_config(args)
  b, length = args.train_batch, args.train_length
  lm_head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
  entry = {"status": "running", "attention_impl": cfg.attention_impl, "preset": args.preset,
           "params": cfg.num_params - lm_head + cfg.hidden_size,  # the reward head replaces it
           "shape": f"{b} pairs x 2 x {length}", "remat": cfg.remat_policy,
           "low_precision_dots": cfg.low_precision_dots}
  rng = np.random.default_rng(0)
  data = jax.device_put({
      "input_ids": rng.integers(3, cfg.vocab_size, (b, 2, length), dtype=np.int32),
      "attention_mask": np.ones((b, 2, length), np.int32),
      "weight": np.ones((b,), np.float32), "strength": np.ones((b,), np.float32)})
  holder, losses = [], []

  def build(cfg: LlamaConfig) -> Callable[[], Any]:
    model = LlamaRewardModel(cfg, num_labels=1)
    tx = make_optimizer(OPTIM)

    def make_state(rng):
      params = nn.unbox(model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"])
      return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                        rng=rng, bad_step=jnp.full((), -1, jnp.int32))
    _phase(args, "train", entry, f"init ({cfg.attention_impl})")
    holder[:] = []
    t0 = time.perf_counter()
    holder.append(jax.block_until_ready(jax.jit(make_state)(jax.random.PRNGKey(0))))
    entry["init_s"] = time.perf_counter() - t0
    step = jax.jit(functools.partial(train_step, objective=pairwise_objective(model, "bt"),
                                     tx=tx), donate_argnums=0)
    compiled = _compile(args, "train", entry, cfg, step, holder[0], data)

    def run():
      holder[0], metrics = compiled(holder[0], data)
      losses.append(metrics["loss"].block_until_ready())
    return _first_run(args, "train", entry, cfg, run)

  cfg, run = _with_cudnn_fallback(build, cfg, args, "train", entry)
  _phase(args, "train", entry, "timed steps")
  times = _timed_steps(run, args, started)
  step_s = statistics.median(times)
  bad_step = int(holder[0].bad_step)
  finite = bool(np.isfinite(np.asarray(losses, np.float32)).all())
  entry.update(_throughput(cfg, args, 2 * b * length, length, step_s, 1.0))
  entry.update(status="ok" if finite and bad_step < 0 else "non-finite loss or update",
               phase="done", step_s=step_s, step_s_all=times, losses=[float(x) for x in losses],
               bad_step=bad_step, peak_memory_gib=_memory_gib())
  return entry


def part_score(args: argparse.Namespace) -> dict[str, Any]:
  started = time.perf_counter()
  cfg = _model_config(args)
  b, length = args.score_batch, args.score_length
  entry = {"status": "running", "attention_impl": cfg.attention_impl, "preset": args.preset,
           "shape": f"{b} x {length}"}
  rng = np.random.default_rng(0)
  ids = jax.device_put(rng.integers(3, cfg.vocab_size, (b, length), dtype=np.int32))
  mask = jax.device_put(np.ones((b, length), np.int32))
  rewards = []

  def build(cfg: LlamaConfig) -> Callable[[], Any]:
    model = LlamaRewardModel(cfg, num_labels=1)
    _phase(args, "score", entry, f"init ({cfg.attention_impl})")
    params = jax.block_until_ready(jax.jit(lambda r: nn.unbox(
        model.init(r, jnp.zeros((1, 8), jnp.int32))["params"]))(jax.random.PRNGKey(0)))
    fn = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
    compiled = _compile(args, "score", entry, cfg, fn, params, ids, mask)
    return _first_run(args, "score", entry, cfg,
                      lambda: rewards.append(compiled(params, ids, mask).block_until_ready()))

  cfg, run = _with_cudnn_fallback(build, cfg, args, "score", entry)
  _phase(args, "score", entry, "timed steps")
  times = _timed_steps(run, args, started)
  step_s = statistics.median(times)
  entry.update(_throughput(cfg, args, b * length, length, step_s, 1.0 / 3.0))
  finite = bool(np.isfinite(np.asarray(rewards[-1])).all())
  entry.update(status="ok" if finite else "non-finite rewards", phase="done", step_s=step_s,
               step_s_all=times, peak_memory_gib=_memory_gib())
  return entry


_RESULT_LINE = re.compile(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(tests/\S+)|"
                          r"(tests/\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)")


def _counts_from_log(text: str) -> tuple[dict[str, int], list[str]]:
  """Per-test outcomes from pytest -v output (what is left when pytest was stopped)."""
  counts: dict[str, int] = {}
  failures = []
  for m in _RESULT_LINE.finditer(text):
    outcome, test = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
    counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    if outcome in ("FAILED", "ERROR"):
      failures.append(f"{test} {outcome}")
  return counts, failures


def _counts_from_junit(path: str) -> tuple[dict[str, int], list[str], dict[str, float]]:
  root = ET.parse(path).getroot()
  counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
  failures, per_file = [], {}
  for tc in root.iter("testcase"):
    name = f"{tc.get('classname')}::{tc.get('name')}"
    per_file[tc.get("classname", "?")] = per_file.get(tc.get("classname", "?"), 0.0) + float(
        tc.get("time", 0))
    kinds = [c.tag for c in tc]
    if "failure" in kinds or "error" in kinds:
      kind = "failed" if "failure" in kinds else "error"
      counts[kind] += 1
      node = tc.find("failure") if kind == "failed" else tc.find("error")
      failures.append(f"{name}: {(node.get('message') or '').splitlines()[0][:200]}"
                      if node is not None and node.get("message") else name)
    elif "skipped" in kinds:
      counts["skipped"] += 1
    else:
      counts["passed"] += 1
  return counts, failures, per_file


def part_tests(args: argparse.Namespace) -> dict[str, Any]:
  """Our test subset on this machine's accelerator, in a pytest subprocess."""
  started = time.perf_counter()
  platform = "cpu" if args.dry_run else "cuda"
  tests = [t for t in (args.tests.split(",") if args.tests else
                       (DRY_RUN_TESTS if args.dry_run else GPU_TESTS)) if t]
  junit = f"/tmp/gpu_suite_junit_{os.getpid()}.xml"
  workers = args.test_workers if args.test_workers >= 0 else (
      min(8, len(tests), (os.cpu_count() or 1) // 2) if (os.cpu_count() or 1) >= 4 else 0)
  cmd = [sys.executable, "-m", "pytest", *tests, "-v", "-p", "no:cacheprovider", "-o",
         "addopts=", "-m", "not slow", "-rfE", f"--junitxml={junit}", "-n", str(workers)]
  if workers:
    cmd += ["--dist", "loadfile"]
  env = dict(os.environ, JAX_PLATFORMS=platform, XLA_PYTHON_CLIENT_PREALLOCATE="false",
             PYTHONUNBUFFERED="1",  # the -v lines are what is left if it must be stopped
             HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
  if args.test_matmul_precision != "default":
    env["JAX_DEFAULT_MATMUL_PRECISION"] = args.test_matmul_precision
  if not args.dry_run:  # compile time, not kernel speed, is what the tests spend
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_autotune_level=0").strip()
  entry = {"status": "running", "platform": platform, "tests": tests, "workers": workers,
           "matmul_precision": args.test_matmul_precision, "command": " ".join(cmd[1:])}
  results_file.save_part(args.out, "tests", entry)
  budget = max(10.0, args.time_limit - (time.perf_counter() - started) - 10)
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=budget, check=False)
    log, rc, timed_out = proc.stdout + proc.stderr, proc.returncode, False
  except subprocess.TimeoutExpired as e:
    log = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (
        e.stdout or "")
    rc, timed_out = None, True
  print(log[-20000:])
  if not timed_out and os.path.exists(junit):
    counts, failures, per_file = _counts_from_junit(junit)
    slowest = sorted(per_file.items(), key=lambda kv: -kv[1])[:5]
    entry["slowest_files_s"] = {k: round(v, 1) for k, v in slowest}
  else:
    counts, failures = _counts_from_log(log)
  entry.update(status="timeout" if timed_out else ("ok" if rc in (0, 1) else f"pytest rc {rc}"),
               rc=rc, counts=counts, failures=failures, wall_s=time.perf_counter() - started,
               log_tail=log[-3000:])
  return entry


PART_FUNCS = {"peak": part_peak, "attention": part_attention, "train": part_train,
              "score": part_score, "tests": part_tests}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", required=True, help="folder of gpu_results.json / .md")
  ap.add_argument("--part", required=True, choices=sorted(PART_FUNCS))
  ap.add_argument("--dry-run", action="store_true",
                  help="CPU, tiny preset, XLA attention, small shapes: every code path but cuDNN")
  ap.add_argument("--time-limit", type=float, default=600.0,
                  help="seconds this part may take (run.sh's limit); timed loops stop early")
  ap.add_argument("--preset", default=None, help="model shape (default llama3_2_1b; dry: tiny)")
  ap.add_argument("--attention", choices=("auto", "cudnn", "xla", "grouped"), default=None,
                  help="auto: cudnn if the attention part's check passed, else the package's "
                       "default (dry run: xla)")
  ap.add_argument("--remat-policy", default="full", choices=("none", "full", "dots",
                                                             "dots_no_batch"))
  ap.add_argument("--low-precision-dots", default="xla", choices=("xla", "f32_accumulate"))
  ap.add_argument("--train-batch", type=int, default=None, help="pairs (default 16; dry: 2)")
  ap.add_argument("--train-length", type=int, default=None, help="tokens (default 2048; dry: 64)")
  ap.add_argument("--score-batch", type=int, default=None, help="sequences (default 64; dry: 4)")
  ap.add_argument("--score-length", type=int, default=None, help="tokens (default 2048; dry 64)")
  ap.add_argument("--warmup", type=int, default=2, help="untimed steps, compile excluded")
  ap.add_argument("--steps", type=int, default=None, help="timed steps (default 8; dry: 2)")
  ap.add_argument("--matmul-size", type=int, default=None, help="default 8192; dry: 256")
  ap.add_argument("--matmul-iters", type=int, default=20)
  ap.add_argument("--matmul-repeats", type=int, default=5)
  ap.add_argument("--attention-timing-batch", type=int, default=None,
                  help="rows for the attention timings (default 4; dry: 1)")
  ap.add_argument("--attention-timing-iters", type=int, default=10)
  ap.add_argument("--tests", default="", help="comma-separated test files (default: a subset)")
  ap.add_argument("--test-workers", type=int, default=-1,
                  help="pytest-xdist workers (default: half the CPU cores, at most 8)")
  ap.add_argument("--test-matmul-precision", default="highest",
                  help="JAX_DEFAULT_MATMUL_PRECISION for the tests: float32 tolerances need "
                       "'highest' where GPUs run float32 dots as TF32 ('default' leaves it)")
  args = ap.parse_args(argv)
  dry = args.dry_run
  defaults = dict(preset=("tiny", "llama3_2_1b"), attention=("xla", "auto"),
                  train_batch=(2, 16), train_length=(64, 2048), score_batch=(4, 64),
                  score_length=(64, 2048), steps=(2, 8), matmul_size=(256, 8192),
                  attention_timing_batch=(1, 4))
  for name, (dry_value, value) in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, dry_value if dry else value)
  return args


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  started = time.perf_counter()
  own = {"--out", "--part", "--time-limit"}  # run.sh's; the rest are the suite's flags
  flags = [a for i, a in enumerate(sys.argv[1:]) if a not in own and sys.argv[i] not in own]
  suite = {"dry_run": args.dry_run, "argv": " ".join(flags)} if args.part == "peak" else None
  try:
    entry = PART_FUNCS[args.part](args)
  except Exception as e:  # pylint: disable=broad-except  (record it, then fail the process)
    prev = results_file.load(args.out).get("parts", {}).get(args.part, {})
    results_file.save_part(args.out, args.part, dict(
        prev, status="failed", error=f"{type(e).__name__}: {e}"[-4000:],
        wall_s=time.perf_counter() - started), suite)
    raise
  entry.setdefault("wall_s", time.perf_counter() - started)
  results_file.save_part(args.out, args.part, entry, suite)
  print(f"{args.part}: {entry.get('status')} in {entry['wall_s']:.1f} s")


if __name__ == "__main__":
  main()

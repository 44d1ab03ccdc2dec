"""Our train step and scoring against PyTorch + transformers on the same model, batch and lengths.

  python benchmarks/train_step.py                      # train step, 4 pairs x 256 tokens
  python benchmarks/train_step.py --mode score         # scoring, 64 x 512 tokens
  python benchmarks/train_step.py --impls jax_fp32,torch_fp32 --rounds 3

Every measurement runs in its own child process (so peak memory is that implementation's alone),
and the implementations alternate round by round, so drifting machine load hits them alike; the
table keeps each implementation's best round (the median step time within a round). The model is
SmolLM2-135M-shaped (random weights: speed does not depend on them); a pair is chosen + rejected
through one forward of 2B sequences with the Bradley-Terry loss and AdamW (β 0.9/0.98, wd 0.1).

FLOPs (written down, PaLM appendix B): a trained token costs 6·N + 12·layers·heads·head_dim·T
(N = matmul parameters a token passes through: attention and MLP projections, reward head);
scoring costs a third of that (forward only). MFU divides the model FLOP/s by the peak measured
in the same run: a 2048³ float32 matmul through XLA (best of 10). Remat recomputation is not
counted as useful work. Peak memory is the child's peak RSS (process total: weights, optimizer,
activations, framework runtime), the largest of the rounds; the step time is the fastest round's
median.

Implementations:
  jax_fp32          our train_step (helpsteer_jax.training.step), float32, scan over layers
  jax_fp32_autodiff float32 with the projections' backward left to autodiff
                    (model.projection_vjp="autodiff"; not run by default)
  jax_fp32_attn_autodiff  float32 with grouped attention's backward left to autodiff
                    (model.attention_vjp="autodiff": two score-sized tensors kept per layer);
                    jax_bf16_remat_attn_autodiff the same for bf16 + remat; not run by default
  jax_fp32_act_autodiff  float32 with the MLP activation's backward left to autodiff
                    (model.activation_vjp="autodiff": three more intermediate-sized tensors kept
                    per layer); not run by default
  jax_fp32_before   float32 as it was before issue 16: autodiff projections and
                    jax.nn.dot_product_attention's XLA path (attention_impl="xla"); not run by
                    default
  jax_fp32_remat    + full remat (what :smollm2 uses at 1024 tokens)
  jax_fp32_remat_proj  remat that keeps the projections' outputs (model.remat_policy=
                    "projections"; jax_bf16_remat_proj the same for bf16; not run by default)
  jax_fp32_remat_proj_attn  remat that also keeps grouped attention's output and softmax
                    statistics (remat_policy="projections_attention"; not run by default)
  jax_fp32_unrolled float32, layers unrolled (not run by default: minutes of XLA compile)
  jax_bf16          bfloat16 compute, float32 master weights and optimizer, projections as bf16
                    dots with float32 accumulation (model.low_precision_dots="f32_accumulate")
  jax_bf16_remat    + full remat
  jax_bf16_remat_f32res  + a float32 residual stream (model.residual_dtype="float32", torch
                    autocast's layout; jax_bf16_remat_proj_f32res the same with the projections
                    policy; not run by default)
  jax_bf16_xladot   bfloat16 with XLA's own bf16 dots (low_precision_dots="xla"; not run by
                    default: the "before" of f32_accumulate)
  torch_fp32        transformers LlamaForSequenceClassification + torch.optim.AdamW, float32
  torch_fp32_gc     float32 with gradient checkpointing (the equal of jax_fp32_remat; not run by
                    default)
  torch_bf16_gc     + bf16 autocast and gradient checkpointing (TRL RewardTrainer's defaults)
  trl_fp32          TRL's RewardTrainer on the same model and pre-tokenized pairs, float32, no
                    gradient checkpointing (run where `trl` is installed: pip install --no-deps
                    trl accelerate; skipped with a note otherwise)
  trl_defaults      TRL's RewardTrainer with its own defaults: bf16 and gradient checkpointing
A JAX train row ending in `_xK` (jax_fp32_x4) runs K steps per jitted call, as the trainer's
`train.steps_per_call=K` does (train_steps: a scan over K stacked batches); its step time is the
call's time divided by K.
The TRL step time is the interval between consecutive `on_step_end` callbacks, so it includes the
Trainer's data loading and bookkeeping, as a TRL user pays them.

Settings per row: `impl@SETTINGS` runs that implementation with XLA flags (`--xla_...` tokens,
added to XLA_FLAGS) and environment variables (NAME=VALUE) in its child only, e.g.
`jax_fp32@--xla_force_host_platform_device_count=2` (the batch is then split over the host
devices) or `torch_fp32@GLIBC_TUNABLES=glibc.malloc.hugetlb=1`. Each round line also gives the
minor page faults of the timed steps (at 4 KiB a fault: how much fresh memory a step touches).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import machine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAX_IMPLS = ("jax_fp32", "jax_fp32_autodiff", "jax_fp32_attn_autodiff", "jax_fp32_act_autodiff",
             "jax_bf16_remat_attn_autodiff", "jax_fp32_before", "jax_fp32_remat",
             "jax_fp32_remat_proj", "jax_fp32_remat_proj_attn", "jax_bf16", "jax_bf16_remat",
             "jax_bf16_remat_proj", "jax_bf16_xladot", "jax_fp32_unrolled", "jax_bf16_remat_f32res",
             "jax_bf16_remat_proj_f32res")
DEFAULT_IMPLS = ("jax_fp32", "jax_fp32_remat", "jax_bf16", "jax_bf16_remat", "torch_fp32",
                 "torch_bf16_gc", "trl_fp32", "trl_defaults")
TORCH_IMPLS = ("torch_fp32", "torch_fp32_gc", "torch_bf16_gc")
TRL_IMPLS = ("trl_fp32", "trl_defaults")


def _minor_faults() -> int:
  """Minor page faults of this process so far (first touches of fresh memory, mostly)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _config(impl: str):
  from helpsteer_jax.models import PRESETS  # pylint: disable=g-import-not-at-top
  cfg = PRESETS["smollm2_135m"]
  if impl == "jax_fp32_unrolled":
    return cfg  # 30 layers inlined: XLA:CPU compiles it for minutes
  cfg = cfg.replace(scan_layers=True)
  if impl == "jax_fp32_autodiff":
    cfg = cfg.replace(projection_vjp="autodiff")
  elif impl == "jax_fp32_before":
    cfg = cfg.replace(projection_vjp="autodiff", attention_impl="xla",
                      activation_vjp="autodiff")
  elif impl == "jax_fp32_attn_autodiff":
    cfg = cfg.replace(attention_vjp="autodiff")
  elif impl == "jax_bf16_remat_attn_autodiff":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate", remat_policy="full",
                      attention_vjp="autodiff")
  elif impl == "jax_fp32_act_autodiff":
    cfg = cfg.replace(activation_vjp="autodiff")
  elif impl == "jax_fp32_remat":
    cfg = cfg.replace(remat_policy="full")
  elif impl == "jax_fp32_remat_proj":
    cfg = cfg.replace(remat_policy="projections")
  elif impl == "jax_fp32_remat_proj_attn":
    cfg = cfg.replace(remat_policy="projections_attention")
  elif impl == "jax_bf16_remat_proj":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate",
                      remat_policy="projections")
  elif impl == "jax_bf16_xladot":
    cfg = cfg.replace(dtype="bfloat16")
  elif impl == "jax_bf16":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate")
  elif impl == "jax_bf16_remat":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate", remat_policy="full")
  elif impl == "jax_bf16_remat_f32res":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate", remat_policy="full",
                      residual_dtype="float32")
  elif impl == "jax_bf16_remat_proj_f32res":
    cfg = cfg.replace(dtype="bfloat16", low_precision_dots="f32_accumulate",
                      remat_policy="projections", residual_dtype="float32")
  return _model_overrides(cfg, os.environ.get("BENCH_MODEL", ""))


def _model_overrides(cfg, spec: str):
  """cfg with the "field=value;..." of `spec` (e.g. $BENCH_MODEL through a row's "@" settings:
  `jax_fp32@BENCH_MODEL=attention_causal_block=128`), each value parsed as its field's type."""
  for item in filter(None, spec.split(";")):
    name, _, value = item.partition("=")
    current = getattr(cfg, name)  # AttributeError: no such field
    if isinstance(current, bool):
      parsed = value.lower() in ("1", "true")
    elif current is None:
      parsed = None if value == "None" else value
    else:
      parsed = type(current)(value)
    cfg = cfg.replace(**{name: parsed})
  return cfg


def row_flops_per_token(impl: str, length: int, train: bool) -> float:
  """Model FLOPs a token of this row: the SmolLM2-135M shape, with the $BENCH_MODEL fields its
  child sees for our rows (e.g. `num_hidden_layers=4`); torch and TRL rows run the shape
  unchanged. Scoring is a third."""
  from helpsteer_jax.training.metrics_log import train_flops_per_token  # pylint: disable=g-import-not-at-top
  base, _, settings = impl.partition("@")
  cfg = _config("jax_fp32_unrolled")
  if base.startswith("jax_"):
    cfg = _model_overrides(cfg, child_env(settings).get("BENCH_MODEL", ""))
  return train_flops_per_token(cfg, length) / (1 if train else 3)


def _tokens(rng, n: int, length: int, vocab: int):
  return rng.integers(3, vocab, size=(n, length), dtype="int32")


def split_impl(impl: str) -> tuple[str, int]:
  """"jax_fp32_x4" -> ("jax_fp32", 4): the implementation and its steps per jitted call."""
  m = re.fullmatch(r"(jax_\w+?)_x(\d+)", impl)
  return (m.group(1), int(m.group(2))) if m else (impl, 1)


def build_jax(impl: str, mode: str, batch: int, length: int):
  """(run, jitted, args): `run()` does one call (one step, or K for an `_xK` row) and waits for
  it; `jitted.lower(*args)` is its program (benchmarks/profile_step.py reads its compiled HLO)."""
  import functools  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import linen as nn
  from helpsteer_jax.models import LlamaRewardModel
  from helpsteer_jax.training.objectives import pairwise_objective
  from helpsteer_jax.training.state import TrainState
  from helpsteer_jax.training.step import train_step, train_steps

  impl, per_call = split_impl(impl)
  cfg = _config(impl)
  model = LlamaRewardModel(cfg, num_labels=1)
  rng = np.random.default_rng(0)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"])
  # With several host devices (XLA_FLAGS=--xla_force_host_platform_device_count=N, e.g. through
  # an impl's "@" flags), the batch is split over them and the parameters replicated: data
  # parallelism across the cores, each device's program on its own thread.
  put_batch = put_state = lambda x: x
  if jax.device_count() > 1:
    from jax.sharding import Mesh, NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    put_batch = lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    put_state = lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
  params = put_state(params)
  if mode == "score":
    ids = put_batch(jnp.asarray(_tokens(rng, batch, length, cfg.vocab_size)))
    mask = put_batch(jnp.ones_like(ids))
    fn = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
    run = lambda: fn(params, ids, mask).block_until_ready()
    return run, fn, (params, ids, mask)
  else:
    tx = optax.adamw(1e-5, b1=0.9, b2=0.98, weight_decay=0.1)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32))
    data = {"input_ids": jnp.asarray(_tokens(rng, 2 * batch, length, cfg.vocab_size)
                                     .reshape(batch, 2, length)),
            "attention_mask": jnp.ones((batch, 2, length), jnp.int32),
            "weight": jnp.ones((batch,), jnp.float32), "strength": jnp.ones((batch,), jnp.float32)}
    state, data = put_state(state), put_batch(data)
    fn = train_step if per_call == 1 else train_steps
    if per_call > 1:  # the same batch K times (speed does not depend on the data)
      data = jax.tree_util.tree_map(lambda x: jnp.stack([x] * per_call), data)
    step = jax.jit(functools.partial(fn, objective=pairwise_objective(model, "bt"), tx=tx),
                   donate_argnums=0)
    holder = [state]

    def run():
      holder[0], metrics = step(holder[0], data)
      metrics["loss"].block_until_ready()
    return run, step, (state, data)


def child_jax(impl: str, mode: str, batch: int, length: int, steps: int) -> dict:
  run, _, _ = build_jax(impl, mode, batch, length)
  per_call = split_impl(impl)[1]
  t0 = time.perf_counter()
  run()  # compile + first call
  compile_s = time.perf_counter() - t0
  times, faults = [], _minor_faults()
  for _ in range(steps):
    t0 = time.perf_counter()
    run()
    times.append((time.perf_counter() - t0) / per_call)
  return {"compile_s": compile_s, "step_s": times,
          "faults_per_step": (_minor_faults() - faults) / (steps * per_call)}


def _torch_reward_model():
  """The same model shape in transformers (random weights), for the torch and TRL rows."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count() or 1)
  cfg = _config("jax_fp32_unrolled")
  hf = transformers.LlamaConfig(**cfg.to_hf(), num_labels=1)
  return cfg, transformers.LlamaForSequenceClassification(hf)


def child_torch(impl: str, mode: str, batch: int, length: int, steps: int) -> dict:
  import contextlib  # pylint: disable=g-import-not-at-top
  import numpy as np
  import torch

  cfg, model = _torch_reward_model()
  rng = np.random.default_rng(0)
  n = batch if mode == "score" else 2 * batch
  ids = torch.from_numpy(_tokens(rng, n, length, cfg.vocab_size)).long()
  mask = torch.ones_like(ids)
  bf16, checkpointing = impl.startswith("torch_bf16"), impl.endswith("_gc")
  autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
  if mode == "score":
    model.eval()

    def run():
      with torch.no_grad(), autocast():
        model(input_ids=ids, attention_mask=mask).logits.float()
  else:
    model.train()
    if checkpointing:
      model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.1)

    def run():
      with autocast():
        r = model(input_ids=ids, attention_mask=mask).logits.float()[:, 0]
      loss = -torch.nn.functional.logsigmoid(r[:batch] - r[batch:]).mean()
      loss.backward()
      opt.step()
      opt.zero_grad(set_to_none=True)
  t0 = time.perf_counter()
  run()
  first_s = time.perf_counter() - t0
  times, faults = [], _minor_faults()
  for _ in range(steps):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return {"compile_s": first_s, "step_s": times,
          "faults_per_step": (_minor_faults() - faults) / steps}


def child_trl(impl: str, mode: str, batch: int, length: int, steps: int) -> dict:
  import tempfile  # pylint: disable=g-import-not-at-top
  import datasets
  import numpy as np
  import transformers
  import trl
  from helpsteer_jax.models.sources import load_tokenizer

  if mode != "train":
    raise ValueError("TRL's RewardTrainer only trains")
  cfg, model = _torch_reward_model()
  rng = np.random.default_rng(0)
  n = (1 + steps) * batch
  ids = _tokens(rng, 2 * n, length, cfg.vocab_size)
  data = datasets.Dataset.from_dict({"chosen_ids": ids[:n].tolist(), "rejected_ids": ids[n:].tolist()})
  defaults = impl == "trl_defaults"
  times: list[float] = []

  class Clock(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):  # pylint: disable=unused-argument
      times.append(time.perf_counter())

  with tempfile.TemporaryDirectory() as out:
    conf = dict(output_dir=out, per_device_train_batch_size=batch, max_steps=1 + steps,
                learning_rate=1e-5, adam_beta1=0.9, adam_beta2=0.98, weight_decay=0.1,
                lr_scheduler_type="constant", use_cpu=True, report_to=[], save_strategy="no",
                logging_strategy="no", disable_tqdm=True, max_length=None, dataloader_num_workers=0)
    if not defaults:
      conf.update(bf16=False, gradient_checkpointing=False)
    trainer = trl.RewardTrainer(model=model, args=trl.RewardConfig(**conf), train_dataset=data,
                                processing_class=load_tokenizer("smollm2"), callbacks=[Clock()])
    t0 = time.perf_counter()
    trainer.train()
  if defaults and not (trainer.args.bf16 and trainer.args.gradient_checkpointing):
    raise RuntimeError("this TRL's RewardConfig no longer defaults to bf16 + gradient "
                       "checkpointing; the trl_defaults row would not be what it says")
  return {"compile_s": times[0] - t0, "step_s": [b - a for a, b in zip(times, times[1:])]}


def child_peak() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  n = 2048
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = min(_timed(lambda: f(a, a).block_until_ready()) for _ in range(10))
  return {"peak_flops": 2 * n**3 / best}


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def keep_best(best: dict | None, res: dict) -> dict:
  """An implementation's figures over rounds: the fastest round's (its median step time and
  what goes with it) and the largest peak RSS of any round."""
  peak = max(res["peak_rss_gib"], best["peak_rss_gib"] if best else 0.0)
  fastest = res if best is None or res["median_s"] < best["median_s"] else best
  return {**fastest, "peak_rss_gib": peak}


def child_env(settings: str | None) -> dict[str, str]:
  """The environment a row's child runs in; `settings` (an impl's text after '@'): '--xla...'
  tokens are added to XLA_FLAGS, NAME=VALUE tokens set that environment variable (e.g.
  GLIBC_TUNABLES=..., BENCH_MODEL=...)."""
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  for token in (settings or "").split():
    if token.startswith("--"):
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + token).strip()
    else:
      name, eq, value = token.partition("=")
      if not eq or not name.isupper():
        raise SystemExit(f"@ setting {token!r}: --xla_flag[=value] or NAME=VALUE")
      env[name] = value
  return env


def _spawn(args: list[str], settings: str | None = None) -> dict:
  """Runs a child in `child_env(settings)`."""
  env = child_env(settings)
  out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True,
                       text=True, env=env, check=False)
  if out.returncode:
    raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--mode", choices=("train", "score"), default="train")
  ap.add_argument("--batch", type=int, default=0, help="pairs (train, default 4) or sequences "
                  "(score, default 64)")
  ap.add_argument("--length", type=int, default=0, help="tokens (default 256 train, 512 score)")
  ap.add_argument("--steps", type=int, default=5, help="timed steps per round (after 1 warm-up)")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--impls", default=",".join(DEFAULT_IMPLS),
                  help="comma-separated; an implementation may carry settings after '@', "
                  "separated by spaces, for its child only, so settings compare side by side: "
                  "XLA flags (jax_fp32@--xla_cpu_prefer_vector_width=512) and environment "
                  "variables (jax_fp32@GLIBC_TUNABLES=glibc.malloc.hugetlb=1)")
  ap.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = ap.parse_args()
  train = args.mode == "train"
  batch = args.batch or (4 if train else 64)
  length = args.length or (256 if train else 512)

  if args.child:
    if args.child == "peak":
      result = child_peak()
    else:
      fn = {"jax": child_jax, "torch": child_torch, "trl": child_trl}[args.child.split("_")[0]]
      result = fn(args.child, args.mode, batch, length, args.steps)
    result["peak_rss_gib"] = _peak_rss_gib()
    print(json.dumps(result))
    return

  impls = [i for i in args.impls.split(",") if i]
  for i in impls:
    base = split_impl(i.partition("@")[0])[0]
    if base not in JAX_IMPLS + TORCH_IMPLS + TRL_IMPLS:
      sys.exit(f"unknown implementation {base!r}; choose from {JAX_IMPLS + TORCH_IMPLS + TRL_IMPLS}")
  skip_trl = not train or importlib.util.find_spec("trl") is None
  if skip_trl and any(i.partition("@")[0] in TRL_IMPLS for i in impls):
    print("note: TRL rows skipped (" + ("scoring mode" if not train else "trl is not installed:"
          " pip install --no-deps trl accelerate") + ")")
    impls = [i for i in impls if i.partition("@")[0] not in TRL_IMPLS]
  common = ["--mode", args.mode, "--batch", str(batch), "--length", str(length),
            "--steps", str(args.steps)]
  info = machine.describe()
  print(machine.header(info), flush=True)
  peak = _spawn(["--child", "peak"])["peak_flops"]
  tokens = (2 * batch if train else batch) * length
  best: dict[str, dict] = {}
  for r in range(args.rounds):
    for impl in impls:
      base, _, settings = impl.partition("@")
      res = _spawn(["--child", base, *common], settings)
      med = statistics.median(res["step_s"])
      faults = (f", {res['faults_per_step'] * 4 / 2**20:.2f} GiB of page faults a step"
                if "faults_per_step" in res else "")
      print(f"round {r}: {impl:15s} median step {med:.3f} s (compile/first {res['compile_s']:.1f}"
            f" s, peak {res['peak_rss_gib']:.2f} GiB{faults})", flush=True)
      res["median_s"] = med
      best[impl] = keep_best(best.get(impl), res)
  what = f"{batch} pairs x 2 x {length}" if train else f"{batch} x {length}"
  print(f"\n{args.mode}: SmolLM2-135M shape, {what} tokens = {tokens} tokens/step; "
        f"measured fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; {os.cpu_count()} CPU cores")
  print(f"{'impl':15s} {'step s':>8s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'MFU':>6s} "
        f"{'peak GiB':>9s} {'x torch_fp32':>12s} {'mem/torch':>9s} {'x trl_defaults':>14s}")
  ref = best.get("torch_fp32")
  trl_ref = best.get("trl_defaults")
  rows = []
  for n, impl in enumerate(impls):
    b = best[impl]
    tps = tokens / b["median_s"]
    gflops = tps * row_flops_per_token(impl, length, train) / 1e9
    ratio = (ref["median_s"] / b["median_s"]) if ref else float("nan")
    mem = (b["peak_rss_gib"] / ref["peak_rss_gib"]) if ref else float("nan")
    vs_trl = (trl_ref["median_s"] / b["median_s"]) if trl_ref else float("nan")
    rows.append(dict(impl=impl, step_s=b["median_s"], tokens_per_s=tps, gflops=gflops,
                     mfu=gflops * 1e9 / peak, peak_rss_gib=b["peak_rss_gib"],
                     speedup_vs_torch_fp32=ratio, memory_vs_torch_fp32=mem,
                     speedup_vs_trl_defaults=vs_trl,
                     compile_s=b["compile_s"]))
    label = impl if "@" not in impl else f"{impl.partition('@')[0]}@{n}"
    print(f"{label:15s} {b['median_s']:8.3f} {tps:9.1f} {gflops:8.1f} {gflops * 1e9 / peak:6.1%} "
          f"{b['peak_rss_gib']:9.2f} {ratio:12.2f} {mem:9.2f} {vs_trl:14.2f}")
  for n, impl in enumerate(impls):
    if "@" in impl:
      print(f"  @{n}: {impl.partition('@')[2]}")
  print(json.dumps({"mode": args.mode, "batch": batch, "length": length, "peak_flops": peak,
                    "machine": info, "rows": rows}))


if __name__ == "__main__":
  main()

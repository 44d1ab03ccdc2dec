"""Train a reward model: the main job.

  python -m helpsteer_jax.train --config experiments/scaled_bt.py:smollm2 --workdir DIR \
      [--config.key=value ...]

Reads top to bottom: set-up (distributed, mesh, model, data), state (resume > init_from >
pretrained > fresh), the jitted step, the loop (log, evaluate, checkpoint), and the end.
Restarting the same command in the same workdir resumes exactly; SIGTERM saves and exits.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
from typing import Any

import jax
import numpy as np
from etils import epath
from flax import linen as nn

from helpsteer_jax import hardware, runs
from helpsteer_jax.training import checkpoint, launch, metrics_log, trainer
from helpsteer_jax.training.data_setup import build_data
from helpsteer_jax.training.model_setup import select_head_columns
from helpsteer_jax.training.optimizer import (learning_rate_schedule, make_optimizer, restrict,
                                              trainable_mask)
from helpsteer_jax.training.step import COUNT_KEY, eval_step, train_step, train_steps
from helpsteer_jax.training.tasks import task_for
from helpsteer_jax.training.trainer import NonFiniteError  # noqa: F401  (re-exported)


def init_head_columns(config) -> list[int]:
  """The `init_from` run's head columns to keep, as indices.

  Integers are taken as given; an attribute name ("helpfulness") is looked up in that run's own
  `data.attributes` (its config.json), the order its regression head was trained in, which need
  not start with helpfulness.
  """
  columns = list(config.init_head_columns)
  names = [c for c in columns if isinstance(c, str)]
  if not names:
    return [int(c) for c in columns]
  path = epath.Path(config.init_from) / "config.json"
  try:
    run = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read the init_from run's config to find head columns "
                     f"{names} ({e})") from e
  loss = run.get("loss", {}).get("name")
  attributes = list(run.get("data", {}).get("attributes") or ())
  if loss != "regression":
    raise ValueError(f"init_head_columns {names} names attribute outputs, but init_from "
                     f"{config.init_from} is a {loss!r} run, not a regression run: its reward "
                     f"head has no {names[0]} output")
  missing = [n for n in names if n not in attributes]
  if missing:
    raise ValueError(f"init_from {config.init_from} is a regression run on {attributes}: it has "
                     f"no {' / '.join(missing)} output")
  return [attributes.index(c) if isinstance(c, str) else int(c) for c in columns]


def evaluate(eval_fn, params, batches, put) -> dict[str, float]:
  totals: dict[str, float] = {}
  count = 0.0
  for batch in batches:
    m = jax.device_get(eval_fn(params, put(batch)))
    n = float(m[COUNT_KEY])
    count += n
    for k, v in m.items():
      if k not in (COUNT_KEY, "num_pairs", "num_labels") and np.ndim(v) == 0:
        totals[k] = totals.get(k, 0.0) + n * float(v)
  return {k: v / max(count, 1.0) for k, v in totals.items()} | {COUNT_KEY: count}


def train(config, workdir: str) -> dict[str, Any]:
  # --- set-up: the paradigm (training/tasks.py), the run, its model and data
  task = task_for(config.loss.name)
  job = trainer.start(config, workdir)
  if config.require_init_from and not config.init_from:
    raise ValueError("this config continues another run: set --config.init_from=<its workdir>")
  batch_ways = job.mesh.shape["data"] * job.mesh.shape["fsdp"]
  for key in ("batch_size", "eval_batch_size"):
    if config.data[key] % (batch_ways * config.train.grad_accum if key == "batch_size"
                           else batch_ways):
      raise ValueError(f"data.{key}={config.data[key]} must divide over data x fsdp = "
                       f"{batch_ways} devices (x grad_accum={config.train.grad_accum} for "
                       f"training)")
  built = task.build_model(config.model, *runs.start_model(config.model), seed=config.seed)
  data = build_data(config, built.tokenizer, jax.process_index(), jax.process_count())
  log = job.log
  log.text(data.report)
  if (note := hardware.bf16_on_cpu_note(config.model.dtype)) is not None:
    log.text(note)

  # --- state: own checkpoint > init_from > pretrained > fresh
  tx = make_optimizer(config.optim)
  rng = jax.random.PRNGKey(config.seed)
  # What trains: all but the task's frozen subtree (DPO's reference); with LoRA, the adapters
  # and the reward head only. The step differentiates those alone.
  trainable = None
  if task.frozen or built.config.lora_rank:
    mask = functools.partial(trainable_mask, frozen=task.frozen,
                             adapters_only=bool(built.config.lora_rank))
    tx = restrict(tx, mask)
    trainable = mask(nn.unbox(jax.eval_shape(built.init_params, rng)))

  def init_from(shardings) -> Any:
    columns = init_head_columns(config)  # before the restore: a wrong run fails fast
    # Only the other run's parameters, the backbone read straight into this run's shardings;
    # its head (maybe of another width) comes to the host for the column choice below.
    backbone = {k: v for k, v in shardings.params.items() if k != "score"}
    params = checkpoint.restore_params(config.init_from, backbone)
    if columns:
      params = select_head_columns(params, columns)
    log.text(f"initialised from {config.init_from} (head columns "
             f"{list(config.init_head_columns)} -> {columns})")
    return params

  state, shardings = job.init_state(built.init_params, tx, rng, data=data.train,
                                    pretrained=built.pretrained,
                                    init_from=init_from if config.init_from else None)

  # --- the jitted step
  batch_sh = job.batch_sharding()
  put = lambda b: jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(batch_sh, x), b)
  step_kwargs = dict(objective=task.objective(config, built.model), tx=tx,
                     grad_accum=config.train.grad_accum, trainable=trainable)
  step_fn = jax.jit(functools.partial(train_step, **step_kwargs),
                    in_shardings=(shardings, batch_sh), out_shardings=(shardings, None),
                    donate_argnums=0)
  # `train.steps_per_call` = k > 1: k steps in one call (train_steps' scan) where nothing has to
  # happen between them: from a step count divisible by k, with no evaluation or checkpoint
  # before the k-th, on k batches of one shape; single steps otherwise.
  k = max(int(config.train.steps_per_call), 1)
  stacked_sh = jax.sharding.NamedSharding(batch_sh.mesh, jax.sharding.PartitionSpec(
      None, *batch_sh.spec))
  steps_fn = jax.jit(functools.partial(train_steps, **step_kwargs),
                     in_shardings=(shardings, stacked_sh), out_shardings=(shardings, None),
                     donate_argnums=0)
  put_stacked = lambda bs: jax.tree_util.tree_map(
      lambda *x: jax.make_array_from_process_local_data(stacked_sh, np.stack(x)), *bs)
  eval_fn = jax.jit(functools.partial(eval_step,
                                      objective=task.eval_objective(config, built.model)),
                    in_shardings=(shardings.params, batch_sh))
  ratings_eval_fn = jax.jit(functools.partial(eval_step,
                                              objective=task.objective(config, built.model)),
                            in_shardings=(shardings.params, batch_sh))
  lr_at = learning_rate_schedule(config.optim)
  total_steps = data.total_steps(config.train)

  def run_eval(step: int) -> dict[str, float] | None:
    if data.eval is None:
      return None
    m = evaluate(eval_fn, state.params, data.eval_batches(), put)
    if data.eval_ratings is not None:  # regression: per-attribute MSE on held-out ratings
      r = evaluate(ratings_eval_fn, state.params, iter(data.eval_ratings), put)
      m.update({f"ratings_{k}": v for k, v in r.items()})
    log.scalars(step, m, prefix="eval/")
    log.text(f"eval @ step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())))
    return m

  # --- the loop
  batch_log = ((job.workdir / "batches.jsonl").open("a", encoding="utf-8")
               if config.train.record_batches and job.is_main else None)
  meter = metrics_log.Throughput(
      built.config, peak_flops=config.train.peak_flops_per_device, num_devices=jax.device_count(),
      num_labels=int(config.model.num_labels) if task.reward_head else built.config.vocab_size,
      extra_forwards=task.reference_forwards)  # LoRA's reference (adapters off) is a pass too
  step = int(state.step)
  every = lambda n, s: bool(n) and s % n == 0
  stops = lambda s: (every(config.train.eval_every, s) or every(config.train.checkpoint_every, s)
                     or s == total_steps)
  multi_calls = 0
  try:
    with job.loop():
      first_eval = run_eval(step) if step == 0 else None
      log.start_progress(total_steps, step, ("loss", "accuracy", "tokens_per_s", "mfu"))
      batches_left = data.train.iterate(total_steps - step)
      while step < total_steps:
        n = k if (k > 1 and step % k == 0 and step + k <= total_steps
                  and not any(stops(s) for s in range(step + 1, step + k))) else 1
        batches = list(itertools.islice(batches_left, n))
        if n > 1 and len({tuple((key, v.shape) for key, v in sorted(b.items()))
                          for b in batches}) == 1:
          state, stacked = steps_fn(state, put_stacked(batches))
          per_step = [(stacked, i) for i in range(n)]  # metrics stacked over the n steps
          multi_calls += 1
        else:  # one at a time (k == 1, a stop inside the k, or batches of different shapes)
          per_step = []
          for b in batches:
            state, metrics = step_fn(state, put(b))
            per_step.append((metrics, None))
        for batch in batches:
          meter.add(batch)
        rate = None  # throughput over this call's steps, read once
        for batch, (metrics, i) in zip(batches, per_step):
          step += 1
          if batch_log is not None:  # which examples each step saw (resume tests)
            sha = hashlib.sha256(np.ascontiguousarray(batch["input_ids"]).tobytes()).hexdigest()
            batch_log.write(json.dumps({"step": step, "sha": sha[:16]}) + "\n")
            batch_log.flush()
          m = None  # host metrics, read on logging steps only (a device sync)
          if step % config.train.log_every == 0 or step == total_steps:
            trainer.check_finite(state)
            m = jax.device_get(metrics)
            m = {key: float(v if i is None else v[i]) for key, v in m.items()
                 if np.ndim(v) == (0 if i is None else 1)}
            rate = rate or meter.read()
            m.update(lr=float(lr_at(step - 1)), **rate)
            log.scalars(step, m, prefix="train/")
          log.progress(step, m)
        # Evaluations and checkpoints fall only at the end of a call (the state is this step's).
        if every(config.train.eval_every, step) and step < total_steps:
          run_eval(step)
        if job.checkpoint(step, state, data.train.state(), agree_every=k if k > 1 else None):
          return {"step": step, "preempted": True}
      # --- the end
      log.end_progress()
      job.save_final(step, state, data.train.state())
      final_eval = run_eval(step)
  finally:
    if batch_log is not None:
      batch_log.close()
  return job.write_summary({"step": step, "eval_before": first_eval, "eval_after": final_eval,
                            "throughput": meter.total(), "multi_step_calls": multi_calls})


def run() -> None:
  """The `helpsteer-train` console script: `python -m helpsteer_jax.train` by another name."""
  launch.run(train)


if __name__ == "__main__":
  run()

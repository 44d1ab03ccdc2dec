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
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from etils import epath
from flax import linen as nn
from ml_collections import config_flags

from helpsteer_jax import distributed, losses, sharding
from helpsteer_jax.data.records import BAD_INPUT, error_line
from helpsteer_jax.training import checkpoint, metrics_log, objectives
from helpsteer_jax.training.data_setup import build_data
from helpsteer_jax.training.model_setup import build_dpo_model, build_model, select_head_columns
from helpsteer_jax.training.optimizer import freeze, learning_rate_schedule, make_optimizer
from helpsteer_jax.training.state import (abstract_state, create_state, state_from_params,
                                          state_shardings)
from helpsteer_jax.training.step import COUNT_KEY, eval_step, train_step


class NonFiniteError(RuntimeError):
  pass


def is_dpo(config) -> bool:
  return config.loss.name in losses.DPO_LOSSES


def make_objective(config, built):
  loss = config.loss
  if is_dpo(config):
    return objectives.dpo_objective(built.model, loss.name, beta=loss.beta)
  if loss.name == "regression":
    return objectives.regression_objective(built.model, tuple(config.data.attributes))
  return objectives.pairwise_objective(built.model, loss.name, head_index=loss.head_index,
                                       normalize=loss.normalize,
                                       centering_coef=loss.centering_coef)


def eval_objective(config, built):
  """Validation is pairwise accuracy for every paradigm (regression: its helpfulness output)."""
  if config.loss.name == "regression":
    head = list(config.data.attributes).index("helpfulness")
    return objectives.pairwise_objective(built.model, "bt", head_index=head)
  return make_objective(config, built)


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
  # --- set-up
  distributed.maybe_initialize()
  # epath, not pathlib: a local folder or a URL (gs://bucket/run on TPU VMs), which pathlib would
  # turn into a local folder gs:/bucket/run.
  workdir_p = epath.Path(workdir)
  workdir_p.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    (workdir_p / "config.json").write_text(config.to_json_best_effort(indent=2))
  if config.require_init_from and not config.init_from:
    raise ValueError("this config continues another run: set --config.init_from=<its workdir>")
  mesh_shape = dict(config.mesh)
  devices = jax.devices()
  if -1 not in mesh_shape.values() and np.prod(list(mesh_shape.values())) < len(devices):
    devices = devices[:int(np.prod(list(mesh_shape.values())))]  # e.g. a 1-device debug run
  mesh = sharding.make_mesh(mesh_shape, devices)
  batch_ways = mesh.shape["data"] * mesh.shape["fsdp"]
  for key in ("batch_size", "eval_batch_size"):
    if config.data[key] % (batch_ways * config.train.grad_accum if key == "batch_size"
                           else batch_ways):
      raise ValueError(f"data.{key}={config.data[key]} must divide over data x fsdp = "
                       f"{batch_ways} devices (x grad_accum={config.train.grad_accum} for training)")
  rules = tuple(tuple(r) for r in config.rules)
  built = (build_dpo_model if is_dpo(config) else build_model)(config.model, seed=config.seed)
  data = build_data(config, built.tokenizer, jax.process_index(), jax.process_count())
  log = metrics_log.Logger(workdir_p, enabled=is_main)
  log.text(data.report)

  # --- state: own checkpoint > init_from > pretrained > fresh
  tx = make_optimizer(config.optim)
  if is_dpo(config):
    tx = freeze(tx, "ref")
  shardings = state_shardings(built.init_params, tx, mesh, rules)
  abstract = abstract_state(built.init_params, tx)
  ckpt = checkpoint.Checkpointer(workdir_p, every=config.train.checkpoint_every,
                                 keep=config.train.keep_checkpoints)
  rng = jax.random.PRNGKey(config.seed)
  if ckpt.latest_step() is not None:
    state, data_state = ckpt.restore(abstract, shardings)
    data.train.restore(data_state)
    log.text(f"resumed from {workdir_p / 'checkpoints'} at step {int(state.step)}")
  elif config.init_from:
    columns = init_head_columns(config)  # before the restore: a wrong run fails fast
    # Only the other run's parameters, the backbone read straight into this run's shardings;
    # its head (maybe of another width) comes to the host for the column choice below.
    backbone = {k: v for k, v in shardings.params.items() if k != "score"}
    params = checkpoint.restore_params(config.init_from, backbone)
    if columns:
      params = select_head_columns(params, columns)
    state = state_from_params(params, tx, rng, shardings)
    log.text(f"initialised from {config.init_from} (head columns "
             f"{list(config.init_head_columns)} -> {columns})")
  elif built.pretrained is not None:
    state = state_from_params(built.pretrained, tx, rng, shardings)
  else:
    state = create_state(built.init_params, tx, rng, shardings)

  # --- the jitted step
  batch_sh = sharding.batch_sharding(mesh, rules)
  put = lambda b: jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(batch_sh, x), b)
  step_fn = jax.jit(functools.partial(train_step, objective=make_objective(config, built), tx=tx,
                                      grad_accum=config.train.grad_accum),
                    in_shardings=(shardings, batch_sh), out_shardings=(shardings, None),
                    donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, objective=eval_objective(config, built)),
                    in_shardings=(shardings.params, batch_sh))
  lr_at = learning_rate_schedule(config.optim)
  total_steps = data.total_steps(config.train)

  ratings_eval_fn = jax.jit(functools.partial(eval_step, objective=make_objective(config, built)),
                            in_shardings=(shardings.params, batch_sh))

  def run_eval(step: int) -> dict[str, float] | None:
    if data.eval is None:
      return None
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      m = evaluate(eval_fn, state.params, data.eval_batches(), put)
      if data.eval_ratings is not None:  # regression: per-attribute MSE on held-out ratings
        r = evaluate(ratings_eval_fn, state.params, iter(data.eval_ratings), put)
        m.update({f"ratings_{k}": v for k, v in r.items()})
    log.scalars(step, m, prefix="eval/")
    log.text(f"eval @ step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(m.items())))
    return m

  def check_finite() -> None:
    bad = int(jax.device_get(state.bad_step))
    if bad >= 0:
      raise NonFiniteError(f"non-finite loss or gradients at step {bad}; the update was not "
                           f"applied and no checkpoint of that state was written")

  # --- the loop
  preempted = checkpoint.PreemptionFlag().install()
  batch_log = ((workdir_p / "batches.jsonl").open("a", encoding="utf-8")
               if config.train.record_batches and is_main else None)
  first_eval = run_eval(int(state.step)) if int(state.step) == 0 else None
  meter = metrics_log.Throughput(built.config, peak_flops=config.train.peak_flops_per_device,
                                 num_devices=jax.device_count())
  step = int(state.step)
  try:
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      for batch in data.train.iterate(total_steps - step):
        state, metrics = step_fn(state, put(batch))
        step += 1
        meter.add(batch)
        if batch_log is not None:  # which examples each step saw (resume tests)
          sha = hashlib.sha256(np.ascontiguousarray(batch["input_ids"]).tobytes()).hexdigest()
          batch_log.write(json.dumps({"step": step, "sha": sha[:16]}) + "\n")
          batch_log.flush()
        if step % config.train.log_every == 0 or step == total_steps:
          check_finite()
          m = jax.device_get(metrics)
          m = {k: float(v) for k, v in m.items() if np.ndim(v) == 0}
          m.update(lr=float(lr_at(step - 1)), **meter.read())
          log.scalars(step, m, prefix="train/")
          log.progress(step, total_steps, m)
        if config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps:
          run_eval(step)
        if ckpt.every and step % ckpt.every == 0:
          check_finite()
          ckpt.save(step, state, data.train.state())
        if checkpoint.agree(preempted.is_set(), step, config.train.log_every):
          check_finite()
          ckpt.save(step, state, data.train.state(), force=True)
          log.text(f"SIGTERM: saved step {step} to {workdir_p / 'checkpoints'}; exiting")
          return {"step": step, "preempted": True}
    # --- the end
    check_finite()
    ckpt.save(step, state, data.train.state(), force=True)
    final_eval = run_eval(step)
  finally:
    if batch_log is not None:
      batch_log.close()
    preempted.uninstall()
    ckpt.close()
    log.close()
  summary = {"step": step, "eval_before": first_eval, "eval_after": final_eval,
             "throughput": meter.read()}
  if is_main:
    (workdir_p / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
  return summary


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file[:variant]",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, logs and results go")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  try:
    train(FLAGS.config, FLAGS.workdir)
  except BAD_INPUT as e:  # a bad or missing data file: one line naming it, not a traceback
    sys.exit(error_line(e))


def run() -> None:
  """The `helpsteer-train` console script: `python -m helpsteer_jax.train` by another name."""
  flags.mark_flags_as_required(["config", "workdir"])
  # Config files import their shared base (experiments.base) from the current folder, which
  # `python -m` puts on sys.path and a console script does not.
  sys.path.insert(0, os.getcwd())
  app.run(main)


if __name__ == "__main__":
  run()

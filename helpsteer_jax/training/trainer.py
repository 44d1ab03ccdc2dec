"""What every trainer does around its step: start-up, state, checkpoints, preemption, the end.

Both trainers (helpsteer_jax/train.py: reward models and DPO; rlhf/train.py: RL) read the same:

  run = trainer.start(config, workdir)    # jax.distributed, workdir + config.json, mesh, logs
  state, shardings = run.init_state(init_params, tx, rng, data=..., pretrained=..., init_from=...)
  with run.loop():                         # mesh + logical rules, SIGTERM watch; closes at the end
    for ...:
      state, metrics = step(state, ...)
      if run.checkpoint(step, state, data.state()):   # periodic saves; SIGTERM: save, stop
        return ...
    run.save_final(step, state, data.state())
  run.write_summary(summary)

The resume order is explicit: the run's own checkpoint (restarting the same command in the same
workdir resumes exactly, data position included) > `init_from` (another run's parameters) >
pretrained parameters > a fresh init. `data` is anything with `state()` / `restore(state)`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any, Callable, Iterator, Mapping, Protocol

import jax
import numpy as np
import optax
from etils import epath
from flax import linen as nn
from jax.sharding import Mesh

from helpsteer_jax import distributed, sharding
from helpsteer_jax.training import checkpoint, metric_writers, metrics_log
from helpsteer_jax.training.state import (TrainState, abstract_state, create_state,
                                          state_from_params, state_shardings)


class NonFiniteError(RuntimeError):
  pass


class DataPosition(Protocol):
  def state(self) -> dict[str, Any]: ...

  def restore(self, state: Mapping[str, Any]) -> None: ...


def make_mesh(mesh_cfg: Mapping[str, int]) -> Mesh:
  """The config's mesh; a fixed shape smaller than the machine uses its first devices."""
  shape = dict(mesh_cfg)
  devices = jax.devices()
  if -1 not in shape.values() and np.prod(list(shape.values())) < len(devices):
    devices = devices[:int(np.prod(list(shape.values())))]  # e.g. a 1-device debug run
  return sharding.make_mesh(shape, devices)


def check_finite(state: TrainState) -> None:
  """Raises if a step saw a non-finite loss or gradient (that update was skipped)."""
  bad = int(jax.device_get(state.bad_step))
  if bad >= 0:
    raise NonFiniteError(f"non-finite loss or gradients at step {bad}; the update was not "
                         f"applied and no checkpoint of that state was written")


@dataclasses.dataclass
class Run:
  """A started run: where it writes, its mesh, its logs and (after init_state) checkpoints."""
  config: Any
  workdir: epath.Path
  is_main: bool  # process 0 writes the config, metrics and summary
  mesh: Mesh
  rules: tuple[tuple[str, Any], ...]
  ckpt: checkpoint.Checkpointer | None = None
  _log: metrics_log.Logger | None = None
  _preempted: checkpoint.PreemptionFlag | None = None

  @property
  def log(self) -> metrics_log.Logger:
    """metrics.jsonl, `train.trackers` (TensorBoard, W&B) and stderr; opened at first use (a
    run that fails while reading its data leaves no empty logs behind)."""
    if self._log is None:
      train = self.config.train
      self._log = metrics_log.Logger(
          self.workdir, enabled=self.is_main, trackers=train.trackers, progress=train.progress,
          run_config=json.loads(self.config.to_json_best_effort()))
    return self._log

  def batch_sharding(self) -> Any:
    return sharding.batch_sharding(self.mesh, self.rules)

  def state_shardings(self, init_params: Callable[[jax.Array], Any],
                      tx: optax.GradientTransformation) -> TrainState:
    return state_shardings(init_params, tx, self.mesh, self.rules)

  def init_state(self, init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                 rng: jax.Array, *, data: DataPosition, pretrained: Any = None,
                 init_from: Callable[[TrainState], Any] | None = None
                 ) -> tuple[TrainState, TrainState]:
    """(state, its shardings): own checkpoint > init_from(shardings) > pretrained > fresh."""
    shardings = self.state_shardings(init_params, tx)
    train = self.config.train
    self.ckpt = checkpoint.Checkpointer(self.workdir, every=train.checkpoint_every,
                                        keep=train.keep_checkpoints)
    if self.ckpt.latest_step() is not None:
      state, data_state = self.ckpt.restore(abstract_state(init_params, tx), shardings)
      data.restore(data_state)
      self.log.text(f"resumed from {self.workdir / 'checkpoints'} at step {int(state.step)}")
    elif init_from is not None:
      state = state_from_params(init_from(shardings), tx, rng, shardings)
    elif pretrained is not None:
      state = state_from_params(pretrained, tx, rng, shardings)
    else:
      state = create_state(init_params, tx, rng, shardings)
    return state, shardings

  @contextlib.contextmanager
  def loop(self) -> Iterator[None]:
    """The loop's context: mesh and logical rules set, SIGTERM watched; closes everything."""
    self._preempted = checkpoint.PreemptionFlag().install()
    exit_code = 1  # unless the loop's body returns: an exception, KeyboardInterrupt, SystemExit
    try:
      with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
        yield
      exit_code = 0
    finally:
      self._preempted.uninstall()
      if self.ckpt is not None:
        self.ckpt.close()
      if self._log is not None:
        self._log.close(exit_code)  # a crashed run shows as failed in W&B, not finished

  def checkpoint(self, step: int, state: TrainState, data_state: dict[str, Any],
                 agree_every: int | None = None) -> bool:
    """After a step: the periodic save, and on SIGTERM (agreed by every host) a last save.
    The hosts compare SIGTERM flags every `agree_every` steps (default `train.log_every`): a
    step count every host stops at.

    Returns True when the run must stop now (preempted).
    """
    if self.ckpt.every and step % self.ckpt.every == 0:
      check_finite(state)
      self.ckpt.save(step, state, data_state)
    every = agree_every or self.config.train.log_every
    if checkpoint.agree(self._preempted.is_set(), step, every):
      self.save_final(step, state, data_state)
      self.log.text(f"SIGTERM: saved step {step} to {self.workdir / 'checkpoints'}; exiting")
      return True
    return False

  def save_final(self, step: int, state: TrainState, data_state: dict[str, Any]) -> None:
    check_finite(state)
    self.ckpt.save(step, state, data_state, force=True)

  def write_summary(self, summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json (process 0); returns `summary`, the trainer's result."""
    if self.is_main:
      (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def start(config: Any, workdir: str) -> Run:
  """jax.distributed (multi-host), the workdir with the run's config.json, mesh, rules, logs."""
  distributed.maybe_initialize()
  is_main = jax.process_index() == 0
  # A bad tracker name or a missing wandb fails now, not after the model has loaded.
  if "wandb" in metric_writers.parse_trackers(config.train.trackers) and is_main:
    metric_writers.import_wandb()
    metric_writers.wandb_mode(config.train.wandb.mode)
  # epath, not pathlib: a local folder or a URL (gs://bucket/run on TPU VMs), which pathlib would
  # turn into a local folder gs:/bucket/run.
  workdir_p = epath.Path(workdir)
  workdir_p.mkdir(parents=True, exist_ok=True)
  if is_main:
    (workdir_p / "config.json").write_text(config.to_json_best_effort(indent=2))
  mesh = make_mesh(config.mesh)
  rules = tuple(tuple(r) for r in config.rules)
  return Run(config, workdir_p, is_main, mesh, rules)

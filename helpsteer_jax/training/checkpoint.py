"""Orbax checkpoints of the train state plus the data position, and preemption handling.

Resume order (explicit, in the loop): own checkpoint in the workdir, else `init_from`, else a
fresh init. A checkpoint holds params, optimizer state, step, RNG and the batcher's position, so
restarting the same command resumes exactly. Workdirs may be local paths or URLs orbax and
`etils.epath` understand (`gs://bucket/run` on TPU VMs).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


def checkpoint_dir(workdir: str | Path | epath.Path) -> epath.Path:
  """`workdir/checkpoints`, absolute (orbax wants it so) and with any URL scheme kept.

  pathlib would turn gs://b/x into a local folder gs:/b/x, and so would epath's `absolute()`,
  hence only relative local paths are made absolute.
  """
  p = epath.Path(workdir)
  return (p if p.is_absolute() else p.absolute()) / "checkpoints"


class Checkpointer:
  """Saves every `every` steps and at the end, keeping the last `keep`."""

  def __init__(self, workdir: str | Path, *, every: int, keep: int):
    self.every = every
    self.manager = ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False),
        item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any], *, force: bool = False) -> bool:
    if not force and (self.every <= 0 or step % self.every):
      return False
    if self.manager.latest_step() == step:
      return False
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data_state)),
                      force=True)
    self.manager.wait_until_finished()
    return True

  def restore(self, abstract_state: Any, shardings: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Restores into the given shardings (each host reads only its shards)."""
    step = self.manager.latest_step() if step is None else step
    target = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, shardings)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return out.state, out.data

  def close(self) -> None:
    self.manager.close()


def _params_manager(workdir: str | Path) -> tuple[ocp.CheckpointManager, int]:
  """A read-only manager of another run's checkpoints (its `state` item only) and its last step."""
  directory = checkpoint_dir(workdir)
  if not directory.is_dir():
    raise FileNotFoundError(f"no checkpoint under {directory}")
  manager = ocp.CheckpointManager(
      directory,
      # read_only with the options it implies spelt out (else orbax warns it overrode them)
      options=ocp.CheckpointManagerOptions(read_only=True, create=False, max_to_keep=None,
                                           save_interval_steps=0),
      # PyTree (not Standard) for `state`: only its handler can restore part of a tree. `data`
      # is named only so that reading metadata does not warn about an unknown item.
      item_handlers={"state": ocp.PyTreeCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise FileNotFoundError(f"no checkpoint under {directory}")
  return manager, step


def _saved_params(manager: ocp.CheckpointManager, step: int) -> Any:
  state = manager.item_metadata(step)["state"]
  return (state.tree if hasattr(state, "tree") else state)["params"]


def params_metadata(workdir: str | Path) -> Any:
  """Shapes and dtypes of the parameters in another run's latest checkpoint; reads no weights."""
  manager, step = _params_manager(workdir)
  try:
    return _saved_params(manager, step)
  finally:
    manager.close()


def _restore_args(meta: Any, shardings: Any) -> Any:
  """Per saved leaf: into its sharding where `shardings` names one, else a host numpy array.

  `shardings` mirrors the saved tree or a prefix of it: a sharding at an inner node covers the
  whole subtree, a missing key or None leaves that subtree to the host.
  """
  if isinstance(meta, Mapping):
    sub = lambda k: shardings.get(k) if isinstance(shardings, Mapping) else shardings
    return {k: _restore_args(v, sub(k)) for k, v in meta.items()}
  if shardings is None:
    return ocp.RestoreArgs(restore_type=np.ndarray)
  return ocp.ArrayRestoreArgs(sharding=shardings, global_shape=tuple(meta.shape),
                              dtype=meta.dtype)


def restore_params(workdir: str | Path, shardings: Any = None, *,
                   subtree: tuple[str, ...] = ()) -> Any:
  """The parameters of another run's latest checkpoint (`init_from`, export, evaluate, ExPO).

  Only `params` (or `params/<subtree...>`, e.g. a DPO run's ("policy",)) is read, by orbax's
  partial restore: the optimizer moments, twice the parameters' size, never leave the disk.
  Leaves that `shardings` covers (see `_restore_args`) are read straight into those shardings,
  each host reading only its own shards, so a pod can start stage 2 of a 70B recipe; the rest
  come back as host numpy arrays. Shapes and dtypes are the saved ones: the other run may differ
  in its head (a 5-attribute regression model initialising a 1-output Bradley-Terry model), so a
  caller shards the backbone and leaves the head to the host to pick its columns.
  """
  manager, step = _params_manager(workdir)
  try:
    meta = _saved_params(manager, step)
    for key in subtree:
      meta = meta[key]
    item = args = None
    for key in reversed(("params", *subtree)):  # nest the target back under its saved path
      item = {key: meta if item is None else item}
      args = {key: _restore_args(meta, shardings) if args is None else args}
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=item, restore_args=args, partial_restore=True)))
  finally:
    manager.close()
  out = restored.state["params"]
  for key in subtree:
    out = out[key]
  return out


class PreemptionFlag:
  """Set by SIGTERM; the loop checks it between steps, saves and exits cleanly."""

  def __init__(self):
    self._event = threading.Event()
    self._previous = None

  def install(self) -> "PreemptionFlag":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
    return self

  def uninstall(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def is_set(self) -> bool:
    return self._event.is_set()


def agree(flag: bool, step: int, every: int) -> bool:
  """Whether to stop now, the same answer on every host.

  One process: the local flag. Several: the hosts compare flags every `every` steps (a small
  all-gather), so all of them stop, save and exit at the same step; a host that alone saw SIGTERM
  would otherwise wait in the checkpoint's collectives while the others run the next step.
  """
  if jax.process_count() == 1:
    return flag
  if step % max(every, 1):
    return False
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))

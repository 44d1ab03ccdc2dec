"""Orbax checkpoints of the train state plus the data position, and preemption handling.

Resume order (explicit, in the loop): own checkpoint in the workdir, else `init_from`, else a
fresh init. A checkpoint holds params, optimizer state, step, RNG and the batcher's position, so
restarting the same command resumes exactly.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every `every` steps and at the end, keeping the last `keep`."""

  def __init__(self, workdir: str | Path, *, every: int, keep: int):
    self.every = every
    self.manager = ocp.CheckpointManager(
        Path(workdir).absolute() / "checkpoints",
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


def restore_params(workdir: str | Path) -> Any:
  """Host (numpy) parameters of the latest checkpoint of another run (`init_from`).

  The other run may differ in its head (a 5-attribute regression model initialising a 1-output
  Bradley-Terry model), so its state is read without a target and only `params` is kept.
  """
  ckpt = Checkpointer(workdir, every=0, keep=1)
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {Path(workdir) / 'checkpoints'}")
  # The other run may have used another topology (a pod): read onto this host's first device.
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restored = ckpt.manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(fallback_sharding=local)))
  ckpt.close()
  state = restored.state
  params = state["params"] if isinstance(state, dict) else state.params
  return jax.tree_util.tree_map(np.asarray, params)


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

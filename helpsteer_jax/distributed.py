"""Multi-host start-up through `jax.distributed`.

TPU VMs: `jax.distributed.initialize()` finds its peers by itself (run the same command on every
worker). GPU clusters: set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES
and JAX_PROCESS_ID (optionally JAX_LOCAL_DEVICE_IDS), e.g. from SLURM (tpu_scripts/).
A single process with none of these set needs no initialisation.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

_initialized = False


def maybe_initialize() -> None:
  global _initialized
  if _initialized:
    return
  env = os.environ
  if "JAX_COORDINATOR_ADDRESS" in env:
    local = env.get("JAX_LOCAL_DEVICE_IDS")
    jax.distributed.initialize(
        coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(env["JAX_NUM_PROCESSES"]),
        process_id=int(env["JAX_PROCESS_ID"]),
        local_device_ids=[int(i) for i in local.split(",")] if local else None)
    _initialized = True
  elif env.get("TPU_WORKER_HOSTNAMES") or env.get("HELPSTEER_AUTO_DISTRIBUTED") == "1":
    jax.distributed.initialize()  # cluster auto-detection (TPU VM pods, SLURM)
    _initialized = True


def to_host(x: Any) -> np.ndarray:
  """The whole of an array on this host, gathering it when it is sharded over several hosts.

  For host code (rewards, advantages, metrics) that every host runs on the same full batch; a
  sharded output of a computation over a multi-host mesh cannot be read with np.asarray alone.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)

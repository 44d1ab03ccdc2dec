"""Device mesh and the one rule table that maps logical axis names to mesh axes.

Parameters carry logical names (see models/llama.py); activations are constrained at block
boundaries to (batch, length, embed). `rules` is a tuple of (logical name, mesh axes) pairs, held
in the experiment config. A parameter axis whose name has no rule is an error: silently
replicating a 70B weight is the failure this guards against.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Batch over data and fsdp; parameters fully sharded over fsdp (ZeRO-3 style) and split
# Megatron-style over tensor (heads and MLP columns).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("labels", None),
    ("layers", None),
)


def make_mesh(shape: Mapping[str, int] | Sequence[int],
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh; one entry may be -1 to take the remaining devices."""
  if isinstance(shape, Mapping):
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
      raise ValueError(f"unknown mesh axes {sorted(unknown)}; use {MESH_AXES}")
    dims = [int(shape.get(a, 1)) for a in MESH_AXES]
  else:
    dims = [int(d) for d in shape]
  devices = list(jax.devices() if devices is None else devices)
  if dims.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {dims}")
  if -1 in dims:
    rest = math.prod(d for d in dims if d != -1)
    if len(devices) % rest:
      raise ValueError(f"{len(devices)} devices do not divide into mesh {dims}")
    dims[dims.index(-1)] = len(devices) // rest
  if math.prod(dims) != len(devices):
    raise ValueError(f"mesh {dict(zip(MESH_AXES, dims))} needs {math.prod(dims)} devices, "
                     f"have {len(devices)}")
  # mesh_utils orders devices so the innermost axis (tensor) stays on fast links.
  from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
  try:
    grid = mesh_utils.create_device_mesh(dims, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices).reshape(dims)
  return Mesh(grid, MESH_AXES)


def _check_rules(specs: Any, rules: Sequence[tuple[str, Any]]) -> None:
  known = {name for name, _ in rules}
  for path, spec in jax.tree_util.tree_flatten_with_path(
      specs, is_leaf=lambda x: isinstance(x, P))[0]:
    if not isinstance(spec, P):
      continue
    for name in spec:
      names = name if isinstance(name, tuple) else (name,)
      for n in names:
        if n is not None and n not in known:
          raise ValueError(f"parameter {jax.tree_util.keystr(path)} has logical axis {n!r} "
                           f"that no sharding rule maps; rules cover {sorted(known)}")


def logical_shardings(boxed: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Any:
  """NamedShardings for a tree of (abstract) values boxed with logical names.

  `boxed` is what `jax.eval_shape(model.init, ...)` returns (nn.LogicallyPartitioned leaves);
  unboxed leaves (no logical names) are replicated.
  """
  specs = nn.get_partition_spec(boxed)
  _check_rules(specs, rules)
  return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def batch_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]] = DEFAULT_RULES) -> NamedSharding:
  """Sharding of batch-leading arrays: the leading axis over the `batch` rule's mesh axes."""
  axes = dict(rules).get("batch")
  return NamedSharding(mesh, P(axes))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())

"""Train state and its sharded creation.

The state is built abstractly first (`jax.eval_shape`), its logical axis names turned into
NamedShardings by the rule table, and only then materialised by a jit whose outputs are sharded,
so a large model never exists whole on one host.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh

from helpsteer_jax import sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of updates applied
  params: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key (jax.random.PRNGKey), which checkpoints store as is
  # First step whose loss or gradients were not finite (-1: none). From then on updates are
  # skipped, so a checkpoint can never hold a NaN state; the host stops training and names it.
  bad_step: jax.Array


def _new_state(params: Any, rng: jax.Array, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=rng, bad_step=jnp.full((), -1, jnp.int32))


def state_shardings(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                    mesh: Mesh, rules) -> TrainState:
  """NamedShardings of the whole state, from the (boxed) output of `init_params(rng)`."""
  abstract = jax.eval_shape(lambda r: _new_state(init_params(r), r, tx), jax.random.PRNGKey(0))
  return sharding.logical_shardings(abstract, mesh, rules)


def abstract_state(init_params: Callable[[jax.Array], Any],
                   tx: optax.GradientTransformation) -> TrainState:
  """Shapes and dtypes of the (unboxed) state, allocating nothing."""
  return jax.eval_shape(lambda r: nn.unbox(_new_state(init_params(r), r, tx)),
                        jax.random.PRNGKey(0))


def create_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                 rng: jax.Array, shardings: TrainState) -> TrainState:
  """A fresh state, initialised directly into its shardings."""
  make = lambda r: nn.unbox(_new_state(init_params(r), r, tx))
  return jax.jit(make, out_shardings=shardings)(rng)


def state_from_params(params: Any, tx: optax.GradientTransformation, rng: jax.Array,
                      shardings: TrainState) -> TrainState:
  """A state around given parameters (a pretrained checkpoint), placed into its shardings."""
  params = jax.device_put(params, shardings.params)
  make = lambda p, r: _new_state(p, r, tx)
  return jax.jit(make, out_shardings=shardings, donate_argnums=0)(params, rng)

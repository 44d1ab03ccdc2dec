"""The train step's non-finite guard: what it skips, and that it costs no memory.

A step whose loss, gradients or updates are not finite leaves the state as it was and marks
`bad_step`; a finite step is exactly the optimizer's update. The guard chooses between the old
and the new state; written as a jnp.where over both states it kept both alive at once (the new
moments could not overwrite the donated old ones), which on SmolLM2-135M was 0.9 GiB of XLA
temporaries more than an unguarded step (benchmarks/RESULTS.md, "the non-finite guard").
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpsteer_jax.training.state import TrainState
from helpsteer_jax.training.step import COUNT_KEY, train_step

D = 1024  # parameters (2 x D x D float32, 8 MiB) dominate; activations are a few rows


def _objective(params, batch):
  h = jnp.tanh(batch["x"] @ params["a"]) @ params["b"]
  loss = jnp.mean(h ** 2) * batch["scale"]
  return loss, {COUNT_KEY: jnp.asarray(batch["x"].shape[0], jnp.int32)}


def _state(tx, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  params = {"a": jax.random.normal(k1, (D, D)) / D ** 0.5,
            "b": jax.random.normal(k2, (D, D)) / D ** 0.5}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=jax.random.PRNGKey(0), bad_step=jnp.full((), -1, jnp.int32))


def _batch(scale=1.0):
  return {"x": jax.random.normal(jax.random.PRNGKey(1), (4, D)), "scale": jnp.float32(scale)}


def _unguarded_step(state, batch, *, objective, tx):
  (loss, _), grads = jax.value_and_grad(objective, has_aux=True)(state.params, batch)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state), {"loss": loss, "grad_norm": optax.global_norm(grads)}


def _leaves(state):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves((state.params, state.opt_state))]


def test_finite_step_is_the_optimizer_update():
  tx = optax.adamw(1e-3, b1=0.9, b2=0.98, weight_decay=0.1)
  guarded, _ = jax.jit(functools.partial(train_step, objective=_objective, tx=tx))(
      _state(tx), _batch())
  plain, _ = jax.jit(functools.partial(_unguarded_step, objective=_objective, tx=tx))(
      _state(tx), _batch())
  assert int(guarded.step) == 1 and int(guarded.bad_step) == -1
  for a, b in zip(_leaves(guarded), _leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)  # same ops, fused differently
  assert not np.array_equal(_leaves(guarded)[0], _leaves(_state(tx))[0])


@pytest.mark.parametrize("case", ["loss", "update"])
def test_non_finite_step_is_skipped_and_marked(case):
  # "loss": a NaN loss (and gradients); "update": finite loss and gradients, a NaN learning rate.
  tx = optax.adamw(float("nan") if case == "update" else 1e-3, weight_decay=0.1)
  step = jax.jit(functools.partial(train_step, objective=_objective, tx=tx))
  before = _leaves(_state(tx))
  state, metrics = step(_state(tx), _batch(float("nan") if case == "loss" else 1.0))
  assert np.isfinite(float(metrics["loss"])) == (case == "update")
  assert int(state.step) == 0 and int(state.bad_step) == 0
  for a, b in zip(_leaves(state), before):
    np.testing.assert_array_equal(a, b)
  # Once marked, later steps are skipped too, and bad_step keeps the first bad step.
  state, _ = step(state, _batch())
  assert int(state.step) == 0 and int(state.bad_step) == 0
  for a, b in zip(_leaves(state), before):
    np.testing.assert_array_equal(a, b)


def test_guard_costs_no_temporary_memory():
  tx = optax.adamw(1e-3, b1=0.9, b2=0.98, weight_decay=0.1)
  state, batch = _state(tx), _batch()

  def temp_bytes(fn):
    compiled = jax.jit(functools.partial(fn, objective=_objective, tx=tx),
                       donate_argnums=0).lower(state, batch).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  param_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state.params))
  guarded, plain = temp_bytes(train_step), temp_bytes(_unguarded_step)
  # Tolerance: XLA:CPU materialises each finiteness test's boolean mask before reducing it, a
  # byte per parameter for the gradients' and for the updates' test: at most half the float32
  # parameters' bytes if both are alive together. Keeping the old and the new moments together
  # costs twice the parameters' bytes.
  assert guarded <= plain + param_bytes / 2, (guarded, plain, param_bytes)

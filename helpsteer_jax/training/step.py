"""The train step: a module-level pure function, jitted by the loop with explicit shardings.

`objective(params, batch) -> (loss, metrics)` binds the model and loss (see objectives.py).
Gradient accumulation splits the global batch into `grad_accum` micro-batches (strided, so every
device keeps an equal share of each) and runs them in a `lax.scan`; micro-batch losses are
combined weighted by their number of examples, so the result does not depend on `grad_accum`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from helpsteer_jax.training.state import TrainState

Objective = Callable[[Any, dict[str, jax.Array]], tuple[jax.Array, dict[str, jax.Array]]]
COUNT_KEY = "count"  # metrics key an objective uses for its number of examples (normaliser)


def _micro_batches(batch: dict[str, jax.Array], grad_accum: int) -> dict[str, jax.Array]:
  def split(x):
    if x.shape[0] % grad_accum:
      raise ValueError(f"batch of {x.shape[0]} does not split into {grad_accum} micro-batches")
    x = x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree_util.tree_map(split, batch)


def loss_and_grads(objective: Objective, params: Any, batch: dict[str, jax.Array],
                   grad_accum: int = 1, trainable: Any = None
                   ) -> tuple[jax.Array, dict[str, jax.Array], Any]:
  """Loss, metrics and gradients over the whole batch, accumulated over micro-batches.

  `trainable` (bools in the parameters' structure, None: all) restricts differentiation to the
  trained parameters: the others enter the objective as constants, so no gradient (and no
  accumulator) is formed for them (a LoRA run's frozen kernels), and their gradient reads zero.
  """
  if trainable is not None:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    mask = treedef.flatten_up_to(trainable)

    def of_trained(trained: list[jax.Array], b: dict[str, jax.Array]):
      it = iter(trained)
      return objective(treedef.unflatten([next(it) if m else jax.lax.stop_gradient(x)
                                          for x, m in zip(leaves, mask)]), b)

    loss, metrics, grads = loss_and_grads(of_trained, [x for x, m in zip(leaves, mask) if m],
                                          batch, grad_accum)
    it = iter(grads)
    return loss, metrics, treedef.unflatten([next(it) if m else jnp.zeros_like(x)
                                             for x, m in zip(leaves, mask)])
  grad_fn = jax.value_and_grad(objective, has_aux=True)
  if grad_accum == 1:
    (loss, metrics), grads = grad_fn(params, batch)
    return loss, metrics, grads

  def body(carry, micro):
    (loss, metrics), grads = grad_fn(params, micro)
    n = metrics[COUNT_KEY].astype(jnp.float32)
    acc_grads, acc_loss, acc_metrics = carry
    acc_grads = jax.tree_util.tree_map(lambda a, g: a + n * g.astype(jnp.float32), acc_grads, grads)
    acc_metrics = {k: acc_metrics[k] + (v if k == COUNT_KEY else n * v) for k, v in metrics.items()}
    return (acc_grads, acc_loss + n * loss, acc_metrics), None

  micro = _micro_batches(batch, grad_accum)
  first = jax.tree_util.tree_map(lambda x: x[0], micro)
  metric_shapes = jax.eval_shape(lambda: objective(params, first)[1])
  zeros = (jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
           jnp.zeros((), jnp.float32),
           {k: jnp.zeros(v.shape, jnp.float32) for k, v in metric_shapes.items()})
  (grads, loss, metrics), _ = jax.lax.scan(body, zeros, micro)
  total = jnp.maximum(metrics[COUNT_KEY], 1.0)
  grads = jax.tree_util.tree_map(lambda g, p: (g / total).astype(p.dtype), grads, params)
  metrics = {k: v if k == COUNT_KEY else v / total for k, v in metrics.items()}
  return loss / total, metrics, grads


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def train_step(state: TrainState, batch: dict[str, jax.Array], *, objective: Objective,
               tx: optax.GradientTransformation, grad_accum: int = 1, trainable: Any = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update. A non-finite loss, gradient or update skips it and marks `bad_step`.
  `trainable`: see loss_and_grads (the optimiser must leave the other parameters unchanged)."""
  loss, metrics, grads = loss_and_grads(objective, state.params, batch, grad_accum, trainable)
  # The updates are tested too: finite gradients can still give a non-finite step (a NaN
  # learning rate, an overflowing second moment), and the new parameters are what a checkpoint
  # would keep. They are computed twice, once for this test and once in the cond that applies
  # them: choosing between the old and the new state with jnp.where instead keeps both alive
  # at once (the new moments cannot be written over the donated old ones before the choice),
  # 0.9 GiB more for SmolLM2-135M, where the recomputation is an elementwise pass.
  finite = (jnp.isfinite(loss) & _all_finite(grads)
            & _all_finite(tx.update(grads, state.opt_state, state.params)[0]))
  ok = finite & (state.bad_step < 0)

  def apply(params, opt_state):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = jax.lax.cond(ok, apply, lambda p, o: (p, o), state.params, state.opt_state)
  new_state = state.replace(
      step=state.step + ok.astype(jnp.int32), params=params, opt_state=opt_state,
      bad_step=jnp.where((state.bad_step < 0) & ~finite, state.step, state.bad_step))
  metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
  return new_state, metrics


def train_steps(state: TrainState, batches: dict[str, jax.Array], **kwargs
                ) -> tuple[TrainState, dict[str, jax.Array]]:
  """`train_step` over stacked batches ([steps, batch, ...]), one update each, in one lax.scan;
  the metrics come back stacked. Same keyword arguments as train_step."""
  return jax.lax.scan(lambda s, b: train_step(s, b, **kwargs), state, batches)


def eval_step(params: Any, batch: dict[str, jax.Array], *, objective: Objective
              ) -> dict[str, jax.Array]:
  """Metrics of one batch (no gradients); the loop combines them weighted by COUNT_KEY."""
  _, metrics = objective(params, batch)
  return metrics

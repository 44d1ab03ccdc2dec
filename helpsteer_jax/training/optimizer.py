"""AdamW with gradient clipping and a warm-up schedule, built from the `optim` config block.

The paper's recipe (HelpSteer2-Preference, sec. 4): AdamW, beta = (0.9, 0.98), weight decay 0.1,
10 warm-up steps then a constant learning rate, gradient clipping at 1.0.
"""
from __future__ import annotations

from typing import Any

import jax
import optax


def learning_rate_schedule(optim: Any) -> optax.Schedule:
  """Linear warm-up from 0 to `lr` over `warmup_steps`, then constant or cosine to `final_lr`."""
  warmup = optax.linear_schedule(0.0, optim.lr, max(int(optim.warmup_steps), 1))
  if optim.schedule == "constant":
    after = optax.constant_schedule(optim.lr)
  elif optim.schedule == "cosine":
    after = optax.cosine_decay_schedule(optim.lr, max(int(optim.decay_steps), 1),
                                        alpha=optim.final_lr / optim.lr if optim.lr else 0.0)
  else:
    raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {optim.schedule!r}")
  return optax.join_schedules([warmup, after], [int(optim.warmup_steps)])


def _decay_mask(params: Any) -> Any:
  # Decay matrices (kernels, embeddings) only, not norm weights: the usual Llama practice.
  return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def make_optimizer(optim: Any) -> optax.GradientTransformation:
  parts = []
  if optim.grad_clip:
    parts.append(optax.clip_by_global_norm(optim.grad_clip))
  parts.append(optax.adamw(learning_rate_schedule(optim), b1=optim.b1, b2=optim.b2, eps=optim.eps,
                           weight_decay=optim.weight_decay, mask=_decay_mask))
  return optax.chain(*parts)


def freeze(tx: optax.GradientTransformation, frozen: str) -> optax.GradientTransformation:
  """`tx` on every top-level entry of the parameters but `frozen`, which never changes (DPO's
  reference model lives beside the policy in one parameter tree)."""
  def labels(params):
    return {k: jax.tree_util.tree_map(lambda _, k=k: "frozen" if k == frozen else "train", v)
            for k, v in params.items()}
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

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


_DECAYED = ("kernel", "embedding")  # projections, reward / LM heads, token embeddings


def _names(path: tuple[Any, ...]) -> list[str]:
  # Dict keys only: boxed (nn.Partitioned) leaves add an attribute step (`.value`) to the path.
  return [str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey)]


def _decays(path: tuple[Any, ...], _: Any) -> bool:
  """Whether weight decay applies to a parameter, decided by its name, never its rank.

  Kernels and embeddings decay; norm weights do not (the usual Llama practice). Rank cannot tell
  them apart: scanned layers stack the norm weights to [layers, D].
  """
  names = _names(path)
  if names and names[-1] in _DECAYED:
    return True
  if any("norm" in n for n in names) or (names and names[-1] in ("scale", "bias")):
    return False
  # A new kind of parameter must be placed on purpose, not decayed (or spared) by accident.
  raise ValueError(f"weight decay: no rule for parameter {'/'.join(names)!r}")


def decay_mask(params: Any) -> Any:
  """The weight-decay mask of a parameter tree (True where AdamW decays)."""
  return jax.tree_util.tree_map_with_path(_decays, params)


def make_optimizer(optim: Any) -> optax.GradientTransformation:
  parts = []
  if optim.grad_clip:
    parts.append(optax.clip_by_global_norm(optim.grad_clip))
  parts.append(optax.adamw(learning_rate_schedule(optim), b1=optim.b1, b2=optim.b2, eps=optim.eps,
                           weight_decay=optim.weight_decay, mask=decay_mask))
  return optax.chain(*parts)


def freeze(tx: optax.GradientTransformation, frozen: str) -> optax.GradientTransformation:
  """`tx` on every top-level entry of the parameters but `frozen`, which never changes (DPO's
  reference model lives beside the policy in one parameter tree)."""
  def labels(params):
    return {k: jax.tree_util.tree_map(lambda _, k=k: "frozen" if k == frozen else "train", v)
            for k, v in params.items()}
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

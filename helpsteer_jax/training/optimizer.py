"""AdamW with gradient clipping and a warm-up schedule, built from the `optim` config block.

The paper's recipe (HelpSteer2-Preference, sec. 4): AdamW, beta = (0.9, 0.98), weight decay 0.1,
10 warm-up steps then a constant learning rate, gradient clipping at 1.0.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from helpsteer_jax.models import lora


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


# Projections, reward / LM heads, token embeddings, LoRA factors.
_DECAYED = ("kernel", "embedding") + lora.ADAPTER_KEYS


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


def trainable_mask(params: Any, *, frozen: str | None = None, adapters_only: bool = False) -> Any:
  """True where a parameter trains: everything but the top-level subtree `frozen` (DPO's
  reference lives beside the policy in one tree); with `adapters_only` (LoRA), only the adapters
  (models/lora.py) and the reward head `score`, which is new and fully trainable."""
  def trains(path: tuple[Any, ...], _: Any) -> bool:
    names = _names(path)
    if frozen is not None and names[:1] == [frozen]:
      return False
    return not adapters_only or lora.is_adapter(tuple(names)) or names[:1] == ["score"]
  return jax.tree_util.tree_map_with_path(trains, params)


def restrict(tx: optax.GradientTransformation, mask: Callable[[Any], Any]
             ) -> optax.GradientTransformation:
  """`tx` where `mask(params)` is True; elsewhere the parameters never change and AdamW keeps no
  moments (the state of a LoRA run is the adapters' and the head's)."""
  def labels(params):
    return jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask(params))
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def freeze(tx: optax.GradientTransformation, frozen: str) -> optax.GradientTransformation:
  """`tx` on every top-level entry of the parameters but `frozen`, which never changes."""
  return restrict(tx, lambda params: trainable_mask(params, frozen=frozen))

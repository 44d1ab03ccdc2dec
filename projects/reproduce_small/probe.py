"""Reward heads trained on cached frozen-backbone features (see features.py).

The head is the reward model's `score` kernel [D, A] (no bias, as LlamaForSequenceClassification);
a sequence's rewards are h_last @ kernel. Training uses the library's losses unchanged
(helpsteer_jax.losses: the BT family on pairs, SteerLM regression on ratings) with AdamW, over
shuffled minibatches for a fixed number of epochs; the seed fixes the head's N(0, 0.02) init (when
not initialised from another head) and the batch order.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpsteer_jax import losses


@dataclasses.dataclass
class ProbeConfig:
  lr: float = 1e-3
  epochs: int = 20
  batch_size: int = 16
  weight_decay: float = 0.0
  warmup_fraction: float = 0.1


@dataclasses.dataclass
class Trained:
  kernel: np.ndarray  # [D, A]
  curve: list[dict[str, float]]  # per epoch: train loss and whatever `evaluate` returned


def init_kernel(seed: int, dim: int, num_labels: int) -> np.ndarray:
  """N(0, 0.02), the Hugging Face init of `score`."""
  return np.random.default_rng(seed).normal(0.0, 0.02, (dim, num_labels)).astype(np.float32)


def _optimizer(cfg: ProbeConfig, total_steps: int) -> optax.GradientTransformation:
  warmup = max(1, int(cfg.warmup_fraction * total_steps))
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.lr, warmup),
       optax.cosine_decay_schedule(cfg.lr, max(1, total_steps - warmup))], [warmup])
  return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def _train(loss_of: Callable[[jax.Array, dict[str, jax.Array]], jax.Array],
           kernel: np.ndarray, data: dict[str, np.ndarray], n: int, cfg: ProbeConfig, seed: int,
           evaluate: Callable[[np.ndarray], dict[str, float]] | None) -> Trained:
  steps_per_epoch = -(-n // cfg.batch_size)
  tx = _optimizer(cfg, steps_per_epoch * cfg.epochs)

  @jax.jit
  def step(k, opt_state, batch):
    loss, grad = jax.value_and_grad(loss_of)(k, batch)
    updates, opt_state = tx.update(grad, opt_state, k)
    return optax.apply_updates(k, updates), opt_state, loss

  k = jnp.asarray(kernel)
  opt_state = tx.init(k)
  rng = np.random.default_rng(seed)
  curve = []
  for epoch in range(cfg.epochs):
    order = rng.permutation(n)
    total, weight = 0.0, 0
    for s in range(steps_per_epoch):
      idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
      real = np.zeros(cfg.batch_size, np.float32)
      real[:len(idx)] = 1.0
      idx = np.pad(idx, (0, cfg.batch_size - len(idx)))  # fixed shape; filler rows masked
      batch = {key: v[idx] for key, v in data.items()}
      batch["mask"] = real
      k, opt_state, loss = step(k, opt_state, batch)
      total += float(loss) * real.sum()
      weight += int(real.sum())
    point = {"epoch": epoch + 1, "train_loss": total / weight}
    if evaluate is not None:
      point.update(evaluate(np.asarray(k)))
    curve.append(point)
  return Trained(np.asarray(k), curve)


def train_pairwise(features: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
                   strength: np.ndarray, loss_name: str, kernel: np.ndarray, cfg: ProbeConfig,
                   seed: int, evaluate: Callable[[np.ndarray], dict[str, float]] | None = None,
                   ) -> Trained:
  """A head [D, 1] trained with a BT-family loss on pairs (indices into `features`)."""
  loss_fn = losses.PAIRWISE_LOSSES[loss_name]
  data = {"c": features[chosen], "r": features[rejected], "m": strength.astype(np.float32)}

  def loss_of(k, b):
    loss, _ = loss_fn(r_chosen=b["c"] @ k[:, 0], r_rejected=b["r"] @ k[:, 0], strength=b["m"],
                      mask=b["mask"])
    return loss

  return _train(loss_of, kernel, data, len(chosen), cfg, seed, evaluate)


def train_regression(features: np.ndarray, index: np.ndarray, labels: np.ndarray,
                     label_mask: np.ndarray, kernel: np.ndarray, cfg: ProbeConfig, seed: int,
                     evaluate: Callable[[np.ndarray], dict[str, float]] | None = None) -> Trained:
  """A head [D, A] trained with SteerLM regression (masked MSE) on rated sequences."""
  data = {"x": features[index], "y": labels.astype(np.float32),
          "lm": label_mask.astype(np.float32)}

  def loss_of(k, b):
    loss, _ = losses.regression(predictions=b["x"] @ k, labels=b["y"], label_mask=b["lm"],
                                mask=b["mask"])
    return loss

  return _train(loss_of, kernel, data, len(index), cfg, seed, evaluate)


def pair_accuracy(features: np.ndarray, chosen: np.ndarray, rejected: np.ndarray,
                  kernel: Any, column: int = 0) -> float:
  """Share of pairs whose chosen reward is strictly above the rejected one (ties are wrong)."""
  r = features @ np.asarray(kernel)[:, column]
  return float(np.mean(r[chosen] > r[rejected])) if len(chosen) else float("nan")

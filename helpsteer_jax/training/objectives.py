"""Objectives: a model and a loss bound into `objective(params, batch) -> (loss, metrics)`.

Pairwise batches hold chosen and rejected of each pair side by side ([B, 2, L]); both go through
the model in one forward pass of 2B sequences. Regression batches are [B, L] with labels [B, A].
DPO trains a causal LM on the same pair batches (plus `response_mask`); its parameters are
{"policy", "ref"}, the reference frozen (stop_gradient here, set_to_zero in the optimizer).
Each objective reports `count`, the number of examples its loss and metrics average over, so
gradient accumulation and validation can weight micro-batches and batches exactly. For pairs it is
always the number of real pairs, even for Scaled BT with normalize="strength": accuracy, reward
statistics and the centering term are per pair, and only the Scaled BT term is normalised by
strength, through the batch's `mean_strength` (data/batching.py).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from helpsteer_jax import losses
from helpsteer_jax.models import lora
from helpsteer_jax.models.llama import LlamaForCausalLM, LlamaRewardModel
from helpsteer_jax.models.logprobs import response_logprobs
from helpsteer_jax.training.step import COUNT_KEY, Objective


def pair_rewards(model: LlamaRewardModel, params: Any, batch: dict[str, jax.Array],
                 head_index: int = 0) -> tuple[jax.Array, jax.Array]:
  """Rewards (chosen, rejected) from output column `head_index`, in one forward.

  [B] for [B, 2, L] batches; [B, P] for packed batches (data.PackedPairBatcher), whose `weight`
  and `strength` are [B, P] too, so the losses apply unchanged.
  """
  if "segment_ids" in batch:
    r = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                    batch["read_index"], method=LlamaRewardModel.packed)
    r = r[..., head_index].reshape(r.shape[0], -1, 2)
    return r[..., 0], r[..., 1]
  # input_ids [B, 2, L], or the residual stream [B, 2, L, D] for the top of a split model
  # (models/split.py).
  b, two, length = batch["input_ids"].shape[:3]
  assert two == 2, batch["input_ids"].shape
  r = model.apply({"params": params},
                  batch["input_ids"].reshape(2 * b, length, *batch["input_ids"].shape[3:]),
                  batch["attention_mask"].reshape(2 * b, length))
  r = r[:, head_index].reshape(b, 2)
  return r[:, 0], r[:, 1]


def pairwise_objective(model: LlamaRewardModel, loss_name: str, *, head_index: int = 0,
                       normalize: str = "pairs", centering_coef: float = 0.0) -> Objective:
  loss_fn = losses.PAIRWISE_LOSSES[loss_name] if loss_name in losses.PAIRWISE_LOSSES else None
  if loss_fn is None:
    raise ValueError(f"pairwise loss {loss_name!r} not in {sorted(losses.PAIRWISE_LOSSES)}")

  strength_norm = loss_name == "scaled_bt" and normalize == "strength"

  def objective(params, batch):
    r_c, r_r = pair_rewards(model, params, batch, head_index)
    w = batch["weight"].astype(jnp.float32)
    m = batch["strength"].astype(jnp.float32)
    loss, metrics = loss_fn(r_chosen=r_c, r_rejected=r_r, strength=m, mask=w,
                            normalize="pairs" if strength_norm else normalize)
    if strength_norm:
      # Σ m·ℓ / Σ m over the global batch (a whole validation pass) as Σ m·ℓ / (#pairs · m̄):
      # the loss is then a mean over pairs like everything else here, so micro-batches, hosts
      # and validation batches combine exactly by their pair counts. Without `mean_strength`
      # (a batch used whole) m̄ is this batch's own.
      m_bar = (jnp.max(batch["mean_strength"]) if "mean_strength" in batch
               else jnp.sum(w * m) / jnp.maximum(jnp.sum(w), 1.0))
      loss = jnp.where(m_bar > 0, loss / jnp.where(m_bar > 0, m_bar, 1.0), 0.0)
    if centering_coef:
      term, cm = losses.reward_centering(r_chosen=r_c, r_rejected=r_r, mask=w,
                                         coef=centering_coef)
      loss = loss + term
      metrics = {**metrics, **{f"centering_{k}": v for k, v in cm.items()}}
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(loss=loss, **{COUNT_KEY: jnp.sum(w)})
    return loss, metrics

  return objective


def regression_objective(model: LlamaRewardModel,
                         attribute_names: tuple[str, ...] = losses.ATTRIBUTES) -> Objective:
  """SteerLM regression: the model's outputs are the attributes, in `attribute_names` order."""

  def objective(params, batch):
    pred = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"])
    label_mask = batch["label_mask"] * batch["weight"][:, None]
    loss, metrics = losses.regression(predictions=pred, labels=batch["labels"],
                                      label_mask=label_mask, mask=batch["weight"],
                                      attribute_names=attribute_names)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(loss=loss, **{COUNT_KEY: jnp.sum(label_mask)})
    return loss, metrics

  return objective


def dpo_objective(model: LlamaForCausalLM, loss_name: str, *, beta: float) -> Objective:
  """DPO and its margin/scaled variants (losses.DPO_LOSSES) on {"policy", "ref"} parameters
  ({"policy"} alone with LoRA: the reference is the policy with its adapters off)."""
  if loss_name not in losses.DPO_LOSSES:
    raise ValueError(f"DPO loss {loss_name!r} not in {sorted(losses.DPO_LOSSES)}")
  loss_fn = losses.DPO_LOSSES[loss_name]

  def objective(params, batch):
    b, two, length = batch["input_ids"].shape
    assert two == 2, batch["input_ids"].shape
    flat = [batch[k].reshape(2 * b, length) for k in ("input_ids", "attention_mask",
                                                      "response_mask")]
    pol = response_logprobs(model, params["policy"], *flat).reshape(b, 2)
    # With LoRA there is no "ref" copy: the reference is the policy with its adapters off.
    ref_params = params["ref"] if "ref" in params else lora.adapters_off(params["policy"])
    ref = jax.lax.stop_gradient(response_logprobs(model, ref_params, *flat)).reshape(b, 2)
    w = batch["weight"].astype(jnp.float32)
    loss, metrics = loss_fn(policy_chosen_logps=pol[:, 0], policy_rejected_logps=pol[:, 1],
                            ref_chosen_logps=ref[:, 0], ref_rejected_logps=ref[:, 1],
                            strength=batch["strength"], mask=w, beta=beta)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(loss=loss, **{COUNT_KEY: jnp.sum(w)})
    return loss, metrics

  return objective

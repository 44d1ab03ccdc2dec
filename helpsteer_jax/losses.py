"""Reward-model losses: pairwise Bradley-Terry variants, SteerLM regression, DPO and SPIN.

Every loss is a pure function of keyword-only arrays, computed in float32, returning
`(loss, metrics)` with `metrics` a dict of scalar float32 arrays. Padding is handled by masks, never
by Python branches on values, so every function traces once under `jax.jit`.

Masks are boolean in meaning: a pair (or row, or label) is real when its mask is nonzero. Masked
inputs are replaced by zeros *before* any arithmetic, so a filler pair contributes nothing to the
loss, the metrics or the gradients even when its rewards are garbage (inf or NaN from a padded
sequence); multiplying a NaN by a zero weight would not give that guarantee.

A mean over zero real items is 0, not NaN: an all-filler micro-batch must not poison accumulation.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

# HelpSteer2 attribute order (defined with the records); regression heads and label columns use it.
from helpsteer_jax.data.records import ATTRIBUTES  # noqa: F401  (re-exported)

Metrics = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, Metrics]]

_NORMALIZE = ("pairs", "strength")
_DPO_VARIANTS = ("regular", "margin", "scaled")


def _f32(x: Any) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def _keep(x: jax.Array, real: jax.Array) -> jax.Array:
  # `where` (not `x * mask`) so inf/NaN in masked slots neither leaks into sums nor into gradients.
  return jnp.where(real, x, 0.0)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den, and 0 where den == 0 (both the value and its gradient stay finite)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _real_pairs(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  real = jnp.asarray(mask) != 0
  return real, jnp.sum(real, dtype=jnp.float32)


def _neg_log_sigmoid(x: jax.Array) -> jax.Array:
  # -log σ(x) = softplus(-x); log_sigmoid is exact in both tails, so ±100 stays finite.
  return -jax.nn.log_sigmoid(x)


def _check_normalize(normalize: str, loss_name: str, *, allow_strength: bool) -> None:
  if normalize not in _NORMALIZE:
    raise ValueError(f"{loss_name}: normalize must be one of {_NORMALIZE}, got {normalize!r}")
  if normalize == "strength" and not allow_strength:
    raise ValueError(f"{loss_name}: normalize='strength' (divide by the summed strength) only "
                     f"applies to scaled_bt; use normalize='pairs'")


def _pair_metrics(r_c: jax.Array, r_r: jax.Array, real: jax.Array, n: jax.Array,
                  loss: jax.Array) -> Metrics:
  """Accuracy, margin and reward statistics over real pairs (r_c, r_r already zeroed if masked)."""
  # Strict: a tie means the model did not separate the pair, so it is not a correct ranking.
  correct = jnp.sum(real & (r_c > r_r), dtype=jnp.float32)
  reward_mean = _safe_div(jnp.sum(r_c) + jnp.sum(r_r), 2.0 * n)
  # Two-pass variance: never negative, unlike E[r²] − E[r]², so the sqrt is safe.
  sq = _keep((r_c - reward_mean) ** 2, real) + _keep((r_r - reward_mean) ** 2, real)
  reward_std = jnp.sqrt(_safe_div(jnp.sum(sq), 2.0 * n))
  return {
      "loss": loss,
      "accuracy": _safe_div(correct, n),
      "margin": _safe_div(jnp.sum(r_c - r_r), n),
      "reward_mean": reward_mean,
      "reward_std": reward_std,
      "num_pairs": n,
  }


def _pairwise(name: str, r_chosen: jax.Array, r_rejected: jax.Array, strength: jax.Array,
              mask: jax.Array, normalize: str, *, offset_by_strength: bool,
              scale_by_strength: bool) -> tuple[jax.Array, Metrics]:
  """Shared body of the BT family: −w · log σ(r_c − r_r − o), with o, w ∈ {0 or 1, m}."""
  _check_normalize(normalize, name, allow_strength=scale_by_strength)
  real, n = _real_pairs(mask)
  r_c = _keep(_f32(r_chosen), real)
  r_r = _keep(_f32(r_rejected), real)
  m = _keep(_f32(strength), real)
  diff = r_c - r_r
  per_pair = _neg_log_sigmoid(diff - m if offset_by_strength else diff)
  if scale_by_strength:
    per_pair = m * per_pair  # a strength-0 pair (tie) contributes exactly 0
  total = jnp.sum(_keep(per_pair, real))
  loss = _safe_div(total, jnp.sum(m) if normalize == "strength" else n)
  return loss, _pair_metrics(r_c, r_r, real, n, loss)


def bt(*, r_chosen: jax.Array, r_rejected: jax.Array, strength: jax.Array, mask: jax.Array,
       normalize: str = "pairs") -> tuple[jax.Array, Metrics]:
  """Bradley-Terry: mean over real pairs of −log σ(r_c − r_r) (InstructGPT, Ouyang et al. 2022).

  `strength` is accepted for a uniform signature and ignored.
  """
  return _pairwise("bt", r_chosen, r_rejected, strength, mask, normalize,
                   offset_by_strength=False, scale_by_strength=False)


def margin_bt(*, r_chosen: jax.Array, r_rejected: jax.Array, strength: jax.Array,
              mask: jax.Array, normalize: str = "pairs") -> tuple[jax.Array, Metrics]:
  """Margin BT: mean of −log σ(r_c − r_r − m), m = strength (Llama 2, Touvron et al. 2023)."""
  return _pairwise("margin_bt", r_chosen, r_rejected, strength, mask, normalize,
                   offset_by_strength=True, scale_by_strength=False)


def scaled_bt(*, r_chosen: jax.Array, r_rejected: jax.Array, strength: jax.Array,
              mask: jax.Array, normalize: str = "pairs") -> tuple[jax.Array, Metrics]:
  """Scaled BT: Σ −m · log σ(r_c − r_r) / D (HelpSteer2-Preference, Wang et al. 2024).

  D is the number of real pairs (normalize="pairs") or Σ m over them (normalize="strength").
  m = |preference strength| ≥ 0; a strength-0 pair contributes exactly zero.
  """
  return _pairwise("scaled_bt", r_chosen, r_rejected, strength, mask, normalize,
                   offset_by_strength=False, scale_by_strength=True)


def reward_centering(*, r_chosen: jax.Array, r_rejected: jax.Array, mask: jax.Array,
                     coef: float | jax.Array) -> tuple[jax.Array, Metrics]:
  """Auxiliary centering term coef · mean over real pairs of (r_c + r_r)².

  From Eisenstein et al. 2023 ("Helping or herding?"): BT is invariant to a shift of all rewards,
  so this pins the per-prompt mean reward near 0 without changing the ranking objective.
  """
  real, n = _real_pairs(mask)
  s = _keep(_f32(r_chosen) + _f32(r_rejected), real)
  mean_sq = _safe_div(jnp.sum(s * s), n)
  term = _f32(coef) * mean_sq
  return term, {"loss": term, "mean_sq_sum": mean_sq}


def regression(*, predictions: jax.Array, labels: jax.Array, label_mask: jax.Array,
               mask: jax.Array,
               attribute_names: Sequence[str] | None = None) -> tuple[jax.Array, Metrics]:
  """SteerLM regression: mean squared error over present labels (Dong et al. 2023; HelpSteer2).

  predictions, labels, label_mask: [B, A]; mask: [B] (0 for filler rows). The loss is
  Σ_present (pred − label)² / #present, so a missing attribute (label_mask 0) or a filler row
  contributes nothing. metrics: "loss", "num_labels" and per-column "mse_<name>" (names from
  `attribute_names`, else the column index).
  """
  pred = _f32(predictions)
  if pred.ndim != 2:
    raise ValueError(f"predictions must be [batch, attributes], got shape {pred.shape}")
  num_attr = pred.shape[1]
  if attribute_names is None:
    attribute_names = [str(i) for i in range(num_attr)]
  elif len(attribute_names) != num_attr:
    raise ValueError(f"{len(attribute_names)} attribute_names {tuple(attribute_names)} for "
                     f"{num_attr} prediction columns")
  present = (jnp.asarray(label_mask) != 0) & (jnp.asarray(mask) != 0)[:, None]
  # Zero both sides first: the gradient of where(present, (p − l)², 0) alone would still multiply
  # a zero cotangent by a NaN prediction in a masked slot.
  sq_err = (_keep(pred, present) - _keep(_f32(labels), present)) ** 2
  per_col_count = jnp.sum(present, axis=0, dtype=jnp.float32)
  per_col_mse = _safe_div(jnp.sum(sq_err, axis=0), per_col_count)
  num_labels = jnp.sum(per_col_count)
  loss = _safe_div(jnp.sum(sq_err), num_labels)
  metrics = {"loss": loss, "num_labels": num_labels}
  for i, name in enumerate(attribute_names):
    metrics[f"mse_{name}"] = per_col_mse[i]
  return loss, metrics


def dpo(*, policy_chosen_logps: jax.Array, policy_rejected_logps: jax.Array,
        ref_chosen_logps: jax.Array, ref_rejected_logps: jax.Array, strength: jax.Array,
        mask: jax.Array, beta: float = 0.1,
        variant: str = "regular") -> tuple[jax.Array, Metrics]:
  """DPO (Rafailov et al. 2023) on sequence log-probs summed over response tokens.

  h = β[(π_c − ref_c) − (π_r − ref_r)], m = strength. Per pair, averaged over real pairs:
  "regular" −log σ(h); "margin" −log σ(h − m); "scaled" −m · log σ(h) — the Margin BT and
  Scaled BT ideas of HelpSteer2-Preference carried over to DPO's implicit reward.
  """
  if variant not in _DPO_VARIANTS:
    raise ValueError(f"dpo: variant must be one of {_DPO_VARIANTS}, got {variant!r}")
  real, n = _real_pairs(mask)
  beta = _f32(beta)
  # The reference model is frozen: no gradient may reach it even if its log-probs were computed
  # from the same parameters.
  ref_c = jax.lax.stop_gradient(_keep(_f32(ref_chosen_logps), real))
  ref_r = jax.lax.stop_gradient(_keep(_f32(ref_rejected_logps), real))
  log_ratio_c = _keep(_f32(policy_chosen_logps), real) - ref_c
  log_ratio_r = _keep(_f32(policy_rejected_logps), real) - ref_r
  reward_c, reward_r = beta * log_ratio_c, beta * log_ratio_r
  # β·(difference of log-ratios) rounds once; β·a − β·b would round twice and then cancel.
  h = beta * (log_ratio_c - log_ratio_r)
  m = _keep(_f32(strength), real)
  if variant == "margin":
    per_pair = _neg_log_sigmoid(h - m)
  elif variant == "scaled":
    per_pair = m * _neg_log_sigmoid(h)
  else:
    per_pair = _neg_log_sigmoid(h)
  loss = _safe_div(jnp.sum(_keep(per_pair, real)), n)
  metrics = {
      "loss": loss,
      "accuracy": _safe_div(jnp.sum(real & (reward_c > reward_r), dtype=jnp.float32), n),
      "reward_chosen": _safe_div(jnp.sum(reward_c), n),
      "reward_rejected": _safe_div(jnp.sum(reward_r), n),
      "margin": _safe_div(jnp.sum(h), n),
      "num_pairs": n,
  }
  return loss, metrics


def spin(*, policy_real_logps: jax.Array, policy_generated_logps: jax.Array,
         ref_real_logps: jax.Array, ref_generated_logps: jax.Array, mask: jax.Array,
         beta: float = 0.1) -> tuple[jax.Array, Metrics]:
  """SPIN (Self-Play Fine-Tuning, Chen et al. 2024) on sequence log-probs of response tokens.

  y is the SFT data's response to prompt x ("real"), y' the previous iterate's own generation for
  the same prompt ("generated"), and the reference p_t is that previous iterate (frozen). With
  the logistic loss ℓ(t) = log(1 + e^{−t}) and β the paper's λ, per pair, averaged over real pairs:

    h = β[(log p(y|x) − log p_t(y|x)) − (log p(y'|x) − log p_t(y'|x))],   loss = ℓ(h) = −log σ(h)

  This is DPO's regular loss with the SFT response as chosen and the generation as rejected;
  what makes it SPIN is where the pair and the reference come from (the iteration loop). Metrics:
  "accuracy" (the real response has the higher implicit reward), "reward_real",
  "reward_generated" (β times each log-ratio), "margin" (mean h) and "num_pairs".
  """
  # The same arithmetic as DPO (the previous iterate is frozen there as DPO's reference is);
  # strength is unused by the regular variant.
  loss, m = dpo(policy_chosen_logps=policy_real_logps, policy_rejected_logps=policy_generated_logps,
                ref_chosen_logps=ref_real_logps, ref_rejected_logps=ref_generated_logps,
                strength=jnp.ones_like(_f32(mask)), mask=mask, beta=beta, variant="regular")
  return loss, {"loss": loss, "accuracy": m["accuracy"], "reward_real": m["reward_chosen"],
                "reward_generated": m["reward_rejected"], "margin": m["margin"],
                "num_pairs": m["num_pairs"]}


def spin_on_pairs(*, policy_chosen_logps: jax.Array, policy_rejected_logps: jax.Array,
                  ref_chosen_logps: jax.Array, ref_rejected_logps: jax.Array, strength: jax.Array,
                  mask: jax.Array, beta: float = 0.1) -> tuple[jax.Array, Metrics]:
  """`spin` in the DPO trainer's calling convention: the pair's chosen side is the SFT data's
  response, its rejected side the previous iterate's generation (the SPIN loop writes them so)."""
  del strength
  return spin(policy_real_logps=policy_chosen_logps, policy_generated_logps=policy_rejected_logps,
              ref_real_logps=ref_chosen_logps, ref_generated_logps=ref_rejected_logps, mask=mask,
              beta=beta)


PAIRWISE_LOSSES: Mapping[str, LossFn] = {"bt": bt, "margin_bt": margin_bt, "scaled_bt": scaled_bt}

DPO_LOSSES: Mapping[str, LossFn] = {
    "dpo": functools.partial(dpo, variant="regular"),
    "dpo_margin": functools.partial(dpo, variant="margin"),
    "dpo_scaled": functools.partial(dpo, variant="scaled"),
    "spin": spin_on_pairs,
}

_ALL_LOSSES: Mapping[str, LossFn] = {**PAIRWISE_LOSSES, **DPO_LOSSES, "regression": regression}


def get_loss(name: str) -> LossFn:
  """The loss registered under a config name (pairwise, DPO or "regression")."""
  if name not in _ALL_LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(_ALL_LOSSES))}")
  return _ALL_LOSSES[name]

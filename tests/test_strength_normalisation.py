"""Scaled BT with normalize="strength": only the Scaled BT term is divided by the summed strength.

Validation metrics (accuracy, reward statistics) and the reward-centering term stay per pair, and
combining batches (validation) or micro-batches (gradient accumulation) gives the numbers of the
whole set: Σ m·ℓ / Σ m + c · mean over pairs of (r_c + r_r)². Tiny random Llama, float32;
tolerances: losses and metrics within rtol 1e-5 of float64 NumPy on the same rewards (rewards of a
sequence padded differently differ by ~1e-7); gradients of grad_accum 1 vs 2 within rtol 1e-4
and atol 1e-6 times the largest entry of the leaf (float32 sums of terms up to that size, added
in another order, differ by a few of its ulps).
"""
import functools

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.data import Encoded, EncodedPair, PairBatcher
from helpsteer_jax.models import PRESETS, LlamaRewardModel
from helpsteer_jax.train import evaluate
from helpsteer_jax.training import objectives
from helpsteer_jax.training.step import eval_step, loss_and_grads

CENTERING = 0.3


def _pairs(strengths):
  """Pair i: lengths growing with i (so a length-sorted pass keeps index order), strength given."""
  rng = np.random.default_rng(0)
  return [EncodedPair(Encoded(rng.integers(1, 256, 6 + i).astype(np.int32), 2),
                      Encoded(rng.integers(1, 256, 5 + i).astype(np.int32), 2),
                      strength=float(s), source="f.jsonl", row=i)
          for i, s in enumerate(strengths)]


@pytest.fixture(scope="module")
def model_and_params():
  model = LlamaRewardModel(PRESETS["tiny"], num_labels=1)
  params = nn.unbox(model.init(jax.random.key(0), np.ones((1, 8), np.int32)))["params"]
  # Rewards of order 1 rather than 0.01, so that the centering term weighs in the loss.
  params = {**params, "score": {"kernel": params["score"]["kernel"] * 50.0}}
  return model, params


def _expected(model, params, pairs):
  """float64 per-pair formulas on the rewards of every pair scored in one batch."""
  whole = next(iter(PairBatcher(pairs, len(pairs), shuffle=False, pad_id=0)))
  r_c, r_r = (np.asarray(r, np.float64) for r in objectives.pair_rewards(model, params, whole))
  m = whole["strength"].astype(np.float64)
  d = r_c - r_r
  scaled = np.sum(m * np.logaddexp(0.0, -d)) / np.sum(m)
  centering = np.mean((r_c + r_r) ** 2)
  return {"loss": scaled + CENTERING * centering, "accuracy": np.mean(d > 0),
          "margin": np.mean(d), "centering_mean_sq_sum": centering,
          "strength_weighted_accuracy": np.sum(m * (d > 0)) / np.sum(m)}


def test_validation_metrics_and_centering_are_per_pair(model_and_params):
  model, params = model_and_params
  # Batches of 4 in index order with summed strengths 12, 8 and 1.
  pairs = _pairs([3, 3, 3, 3, 2, 2, 2, 2, 1, 0.5, 0.25, 0.25])
  want = _expected(model, params, pairs)
  # The check must be able to fail: weighting pairs by strength changes the accuracy here.
  assert abs(want["strength_weighted_accuracy"] - want["accuracy"]) > 0.02, want
  objective = objectives.pairwise_objective(model, "scaled_bt", normalize="strength",
                                            centering_coef=CENTERING)
  eval_fn = jax.jit(functools.partial(eval_step, objective=objective))
  batcher = PairBatcher(pairs, 4, shuffle=False, pad_id=0)
  got = evaluate(eval_fn, params, iter(batcher), lambda b: b)
  assert got["count"] == len(pairs)  # every pair counts once, whatever its strength
  for key in ("accuracy", "margin", "centering_mean_sq_sum", "loss"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_gradient_accumulation_keeps_centering_per_pair(model_and_params):
  model, params = model_and_params
  # The batch keeps index order (length-grouped); grad_accum=2 takes rows 0, 2, 4, 6 (summed
  # strength 12) and 1, 3, 5, 7 (summed strength 3).
  pairs = _pairs([3, 0.5, 3, 0.5, 3, 1, 3, 1])
  want = _expected(model, params, pairs)
  objective = objectives.pairwise_objective(model, "scaled_bt", normalize="strength",
                                            centering_coef=CENTERING)
  batch = next(iter(PairBatcher(pairs, 8, seed=0, pad_id=0)))  # one shuffled global batch
  assert batch["strength"].tolist() == [3, 0.5, 3, 0.5, 3, 1, 3, 1]
  runs = {k: jax.jit(functools.partial(loss_and_grads, objective, grad_accum=k))(params, batch)
          for k in (1, 2)}
  for k, (loss, metrics, grads) in runs.items():
    np.testing.assert_allclose(float(loss), want["loss"], rtol=1e-5, err_msg=f"grad_accum={k}")
    for key in ("accuracy", "margin", "centering_mean_sq_sum"):
      np.testing.assert_allclose(float(metrics[key]), want[key], rtol=1e-5,
                                 err_msg=f"{key}, grad_accum={k}")
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                                atol=1e-6 * float(np.abs(b).max())),
        grads, runs[1][2])

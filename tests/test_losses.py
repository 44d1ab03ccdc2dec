"""Loss tests: exact values, masking, gradient signs, NumPy references, jit.

NumPy references run in float64 on the float32 inputs; the float32 losses must match them at
rtol 1e-6 (a few float32 ulps of summation error, nothing looser).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax import losses

LOG2 = float(np.log(2.0))
RTOL = 1e-6
PAIRWISE = sorted(losses.PAIRWISE_LOSSES)


# ---------------------------------------------------------------- NumPy references

def _np_neg_log_sigmoid(x):
  return np.logaddexp(0.0, -x)  # log(1 + exp(−x))


def np_pairwise(name, r_c, r_r, m, mask, normalize="pairs"):
  r_c, r_r, m = (np.asarray(a, np.float64) for a in (r_c, r_r, m))
  real = np.asarray(mask) != 0
  r_c, r_r, m = r_c[real], r_r[real], m[real]
  d = r_c - r_r
  if name == "bt":
    per, den = _np_neg_log_sigmoid(d), len(d)
  elif name == "margin_bt":
    per, den = _np_neg_log_sigmoid(d - m), len(d)
  else:
    per = m * _np_neg_log_sigmoid(d)
    den = m.sum() if normalize == "strength" else len(d)
  rewards = np.concatenate([r_c, r_r])
  return per.sum() / den, {
      "accuracy": np.mean(r_c > r_r), "margin": np.mean(d), "reward_mean": rewards.mean(),
      "reward_std": rewards.std(), "num_pairs": float(len(d))}


def np_regression(predictions, labels, label_mask, mask):
  present = (np.asarray(label_mask) != 0) & (np.asarray(mask) != 0)[:, None]
  sq = (np.asarray(predictions, np.float64) - np.asarray(labels, np.float64)) ** 2
  per_col = [sq[present[:, j], j].mean() if present[:, j].any() else 0.0
             for j in range(sq.shape[1])]
  return sq[present].mean(), per_col, float(present.sum())


def np_dpo(pc, pr, rc, rr, m, mask, beta, variant):
  real = np.asarray(mask) != 0
  pc, pr, rc, rr, m = (np.asarray(a, np.float64)[real] for a in (pc, pr, rc, rr, m))
  h = beta * ((pc - rc) - (pr - rr))
  per = {"regular": _np_neg_log_sigmoid(h), "margin": _np_neg_log_sigmoid(h - m),
         "scaled": m * _np_neg_log_sigmoid(h)}[variant]
  return per.mean(), {"accuracy": np.mean(h > 0), "reward_chosen": np.mean(beta * (pc - rc)),
                      "reward_rejected": np.mean(beta * (pr - rr)), "margin": np.mean(h)}


# ---------------------------------------------------------------- helpers

def f32(*xs):
  return tuple(np.asarray(x, np.float32) for x in xs)


def random_pairs(seed, b=16, filler=0):
  rng = np.random.default_rng(seed)
  r_c, r_r = f32(rng.normal(size=b) * 2, rng.normal(size=b) * 2)
  m = np.asarray(rng.integers(0, 4, size=b), np.float32)
  mask = np.ones(b, np.float32)
  if filler:
    mask[-filler:] = 0.0
  return dict(r_chosen=r_c, r_rejected=r_r, strength=m, mask=mask)


def call(name, **kw):
  loss, metrics = losses.PAIRWISE_LOSSES[name](**kw)
  return float(loss), {k: float(v) for k, v in metrics.items()}


# ---------------------------------------------------------------- pairwise: exact values

@pytest.mark.parametrize("name", PAIRWISE)
def test_equal_rewards_give_log2(name):
  kw = dict(r_chosen=np.full(3, 0.7), r_rejected=np.full(3, 0.7), strength=np.zeros(3),
            mask=np.ones(3))
  if name == "scaled_bt":
    kw["strength"] = np.ones(3)  # strength 1 so scaled_bt is plain BT
  loss, metrics = call(name, **kw)
  assert loss == pytest.approx(LOG2, rel=RTOL)
  assert metrics["loss"] == loss


def test_margin_zero_and_scale_one_reduce_to_bt():
  kw = random_pairs(0)
  base, _ = call("bt", **kw)
  assert call("margin_bt", **{**kw, "strength": np.zeros(16, np.float32)})[0] == base
  assert call("scaled_bt", **{**kw, "strength": np.ones(16, np.float32)})[0] == base
  # ...and bt really ignores strength.
  assert call("bt", **{**kw, "strength": np.full(16, 3.0, np.float32)})[0] == base


def test_margin_bt_shifts_by_strength():
  # Equal rewards, m = 1: −log σ(−1) = log(1 + e).
  loss, _ = call("margin_bt", r_chosen=np.zeros(2), r_rejected=np.zeros(2),
                 strength=np.ones(2), mask=np.ones(2))
  assert loss == pytest.approx(np.log1p(np.e), rel=RTOL)


def test_scaled_bt_strength_zero_pair_adds_nothing():
  # Three real pairs at equal rewards (each −log σ(0) = log 2), strengths 1, 2, 3.
  base = dict(r_chosen=np.zeros(3), r_rejected=np.zeros(3), strength=np.array([1.0, 2.0, 3.0]),
              mask=np.ones(3))
  # The same plus a tie (strength 0) that the model gets badly wrong.
  tie = dict(r_chosen=np.array([0.0, 0.0, 0.0, -5.0]), r_rejected=np.array([0.0, 0.0, 0.0, 5.0]),
             strength=np.array([1.0, 2.0, 3.0, 0.0]), mask=np.ones(4))

  # normalize="pairs": the tie adds 0 to the sum but counts as a pair, so 6·log2/3 -> 6·log2/4.
  assert call("scaled_bt", **base)[0] == pytest.approx(2.0 * LOG2, rel=RTOL)
  assert call("scaled_bt", **tie)[0] == pytest.approx(1.5 * LOG2, rel=RTOL)
  assert call("scaled_bt", **tie)[0] == pytest.approx(call("scaled_bt", **base)[0] * 3 / 4,
                                                      rel=RTOL)
  # normalize="strength": the denominator is Σm = 6 for both, so the tie changes nothing.
  assert call("scaled_bt", **base, normalize="strength")[0] == pytest.approx(LOG2, rel=RTOL)
  assert call("scaled_bt", **tie, normalize="strength")[0] == pytest.approx(LOG2, rel=RTOL)
  # Denominator is Σm, not the pair count: strengths 1, 3 at equal rewards -> 4·log2/4.
  loss, _ = call("scaled_bt", r_chosen=np.zeros(2), r_rejected=np.zeros(2),
                 strength=np.array([1.0, 3.0]), mask=np.ones(2), normalize="strength")
  assert loss == pytest.approx(LOG2, rel=RTOL)
  # The tie gets no gradient at all.
  g_c, g_r = jax.grad(lambda c, r: losses.scaled_bt(
      r_chosen=c, r_rejected=r, strength=tie["strength"], mask=tie["mask"])[0],
      argnums=(0, 1))(*f32(tie["r_chosen"], tie["r_rejected"]))
  assert g_c[3] == 0.0 and g_r[3] == 0.0


def test_scaled_bt_all_strength_zero_is_zero_not_nan():
  kw = dict(r_chosen=np.ones(2), r_rejected=np.zeros(2), strength=np.zeros(2), mask=np.ones(2))
  for normalize in ("pairs", "strength"):
    assert call("scaled_bt", **kw, normalize=normalize)[0] == 0.0


# ---------------------------------------------------------------- pairwise: masking

@pytest.mark.parametrize("name", PAIRWISE)
def test_masked_pairs_change_nothing(name):
  real = random_pairs(1, b=6)
  padded = {k: np.concatenate([v, np.zeros(3, np.float32)]) for k, v in real.items()}
  # Filler rewards are garbage on purpose: huge, infinite, NaN; strength too.
  padded["r_chosen"][6:] = [1e30, np.inf, np.nan]
  padded["r_rejected"][6:] = [-1e30, np.nan, -np.inf]
  padded["strength"][6:] = [5.0, np.nan, 1.0]
  fn = losses.PAIRWISE_LOSSES[name]
  for normalize in (("pairs", "strength") if name == "scaled_bt" else ("pairs",)):
    loss_a, met_a = call(name, **real, normalize=normalize)
    loss_b, met_b = call(name, **padded, normalize=normalize)
    assert loss_b == pytest.approx(loss_a, rel=RTOL)
    assert met_b.keys() == met_a.keys()
    for k in met_a:
      assert met_b[k] == pytest.approx(met_a[k], rel=RTOL, abs=1e-7), k

    def f(c, r, kw, normalize=normalize):
      return fn(r_chosen=c, r_rejected=r, strength=kw["strength"], mask=kw["mask"],
                normalize=normalize)[0]
    ga = jax.grad(f, argnums=(0, 1))(real["r_chosen"], real["r_rejected"], real)
    gb = jax.grad(f, argnums=(0, 1))(padded["r_chosen"], padded["r_rejected"], padded)
    for a, b in zip(ga, gb):
      assert np.all(np.asarray(b[6:]) == 0.0)  # exactly zero, not NaN
      np.testing.assert_allclose(b[:6], a, rtol=RTOL)


@pytest.mark.parametrize("name", PAIRWISE)
def test_zero_real_pairs_give_zeros(name):
  kw = dict(r_chosen=np.array([np.nan, 1.0]), r_rejected=np.array([2.0, np.inf]),
            strength=np.ones(2), mask=np.zeros(2))
  loss, metrics = call(name, **kw)
  assert loss == 0.0
  assert all(v == 0.0 for v in metrics.values()), metrics


# ---------------------------------------------------------------- pairwise: gradients, references

@pytest.mark.parametrize("name", PAIRWISE)
def test_gradient_signs(name):
  kw = random_pairs(2)
  kw["strength"] = kw["strength"] + 1.0  # strictly positive: scaled_bt's gradient is m·(…)
  fn = losses.PAIRWISE_LOSSES[name]
  g_c, g_r = jax.grad(lambda c, r: fn(r_chosen=c, r_rejected=r, strength=kw["strength"],
                                      mask=kw["mask"])[0], argnums=(0, 1))(
                                          kw["r_chosen"], kw["r_rejected"])
  assert np.all(np.asarray(g_c) < 0), g_c  # raising the chosen reward lowers the loss
  assert np.all(np.asarray(g_r) > 0), g_r


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("seed", [3, 4])
def test_pairwise_matches_numpy(name, seed):
  kw = random_pairs(seed, b=32, filler=5)
  for normalize in (("pairs", "strength") if name == "scaled_bt" else ("pairs",)):
    loss, metrics = call(name, **kw, normalize=normalize)
    ref_loss, ref_metrics = np_pairwise(name, kw["r_chosen"], kw["r_rejected"], kw["strength"],
                                        kw["mask"], normalize)
    assert loss == pytest.approx(ref_loss, rel=RTOL)
    for k, v in ref_metrics.items():
      assert metrics[k] == pytest.approx(v, rel=RTOL), k


def test_tie_counts_as_wrong():
  _, metrics = call("bt", r_chosen=np.array([1.0, 2.0, 0.0]), r_rejected=np.array([1.0, 1.0, 3.0]),
                    strength=np.ones(3), mask=np.ones(3))
  assert metrics["accuracy"] == pytest.approx(1.0 / 3.0, rel=RTOL)


@pytest.mark.parametrize("name", PAIRWISE)
def test_large_margins_are_finite(name):
  kw = dict(r_chosen=np.array([100.0, -100.0, 1e4]), r_rejected=np.array([-100.0, 100.0, -1e4]),
            strength=np.array([1.0, 3.0, 2.0]), mask=np.ones(3))
  fn = losses.PAIRWISE_LOSSES[name]
  loss, grads = jax.value_and_grad(lambda c, r: fn(r_chosen=c, r_rejected=r,
                                                   strength=kw["strength"], mask=kw["mask"])[0],
                                   argnums=(0, 1))(*f32(kw["r_chosen"], kw["r_rejected"]))
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in grads)
  # The −200 margin pair dominates: ≈ (200 − m) / 3 or m·200 / 3 depending on the loss.
  expected = {"bt": 200 / 3, "margin_bt": 203 / 3, "scaled_bt": 600 / 3}[name]
  assert float(loss) == pytest.approx(expected, rel=RTOL)


def test_normalize_is_checked():
  kw = random_pairs(5, b=4)
  with pytest.raises(ValueError, match="normalize"):
    losses.scaled_bt(**kw, normalize="mean")
  for name in ("bt", "margin_bt"):
    with pytest.raises(ValueError, match="scaled_bt"):
      losses.PAIRWISE_LOSSES[name](**kw, normalize="strength")


@pytest.mark.parametrize("name", PAIRWISE)
def test_bfloat16_inputs_are_computed_in_float32(name):
  kw = random_pairs(6, b=8)
  kw["r_chosen"] = kw["r_chosen"] * 37.0  # large rewards: bfloat16 arithmetic would lose digits
  half = {k: jnp.asarray(v, jnp.bfloat16) for k, v in kw.items()}
  loss, metrics = losses.PAIRWISE_LOSSES[name](**half)
  assert loss.dtype == jnp.float32
  assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())
  # Same numbers as the float64 reference on the bfloat16-rounded inputs.
  ref_loss, ref_metrics = np_pairwise(name, *(np.asarray(half[k], np.float64) for k in (
      "r_chosen", "r_rejected", "strength", "mask")))
  assert float(loss) == pytest.approx(ref_loss, rel=RTOL)
  for k, v in ref_metrics.items():
    assert float(metrics[k]) == pytest.approx(v, rel=RTOL), k


# ---------------------------------------------------------------- reward centering

def test_reward_centering_hand_computed():
  # Real sums 1 and 3 -> squares 1 and 9 -> mean 5 -> 0.1 · 5 = 0.5; the filler pair is ignored.
  term, metrics = losses.reward_centering(r_chosen=np.array([1.0, 2.0, 50.0]),
                                          r_rejected=np.array([0.0, 1.0, np.nan]),
                                          mask=np.array([1.0, 1.0, 0.0]), coef=0.1)
  assert float(term) == pytest.approx(0.5, rel=RTOL)
  assert float(metrics["mean_sq_sum"]) == pytest.approx(5.0, rel=RTOL)
  term, _ = losses.reward_centering(r_chosen=np.ones(2), r_rejected=np.ones(2), mask=np.zeros(2),
                                    coef=1.0)
  assert float(term) == 0.0


# ---------------------------------------------------------------- regression

def random_regression(seed, b=8, a=5):
  rng = np.random.default_rng(seed)
  pred, labels = f32(rng.normal(size=(b, a)) * 2, rng.integers(0, 5, size=(b, a)))
  label_mask = np.asarray(rng.random((b, a)) < 0.7, np.float32)
  mask = np.ones(b, np.float32)
  mask[-2:] = 0.0
  return dict(predictions=pred, labels=labels, label_mask=label_mask, mask=mask)


def test_regression_matches_numpy_and_names_columns():
  kw = random_regression(7)
  loss, metrics = losses.regression(**kw, attribute_names=losses.ATTRIBUTES)
  ref_loss, ref_cols, ref_n = np_regression(**kw)
  assert float(loss) == pytest.approx(ref_loss, rel=RTOL)
  assert float(metrics["loss"]) == float(loss)
  assert float(metrics["num_labels"]) == ref_n
  for name, ref in zip(losses.ATTRIBUTES, ref_cols):
    assert float(metrics[f"mse_{name}"]) == pytest.approx(ref, rel=RTOL), name
  # Without names the columns are numbered.
  _, metrics = losses.regression(**kw)
  assert sorted(k for k in metrics if k.startswith("mse_")) == [f"mse_{i}" for i in range(5)]
  # Helpfulness only (A = 1).
  one = {k: v[:, :1] if v.ndim == 2 else v for k, v in kw.items()}
  loss, metrics = losses.regression(**one, attribute_names=("helpfulness",))
  assert float(loss) == pytest.approx(np_regression(**one)[0], rel=RTOL)
  with pytest.raises(ValueError, match="attribute_names"):
    losses.regression(**one, attribute_names=losses.ATTRIBUTES)


def test_regression_masked_labels_add_nothing():
  kw = random_regression(8)
  garbage = dict(kw)
  missing = (kw["label_mask"] == 0) | (kw["mask"] == 0)[:, None]
  garbage["predictions"] = np.where(missing, np.nan, kw["predictions"]).astype(np.float32)
  garbage["labels"] = np.where(missing, 1e30, kw["labels"]).astype(np.float32)
  loss_a, met_a = losses.regression(**kw)
  loss_b, met_b = losses.regression(**garbage)
  assert float(loss_b) == float(loss_a)
  assert {k: float(v) for k, v in met_b.items()} == {k: float(v) for k, v in met_a.items()}
  grad = jax.grad(lambda p: losses.regression(**{**garbage, "predictions": p})[0])(
      garbage["predictions"])
  assert np.all(np.asarray(grad)[missing] == 0.0)
  assert np.all(np.isfinite(grad))


def test_regression_fully_masked_is_zero_not_nan():
  kw = random_regression(9)
  kw["label_mask"] = np.zeros_like(kw["label_mask"])
  loss, metrics = losses.regression(**kw)
  assert float(loss) == 0.0
  assert all(float(v) == 0.0 for v in metrics.values())
  grad = jax.grad(lambda p: losses.regression(**{**kw, "predictions": p})[0])(kw["predictions"])
  assert np.all(np.asarray(grad) == 0.0)


# ---------------------------------------------------------------- DPO

def random_dpo(seed, b=16, filler=3):
  rng = np.random.default_rng(seed)
  # Log-probs on a 1/64 grid: the policy − reference differences are then exact in float32, so
  # the comparison tests the formula rather than cancellation of two ~100-nat sums.
  ref = -np.round(rng.gamma(5.0, 20.0, size=(2, b)) * 64) / 64
  policy = ref + np.round(rng.normal(size=(2, b)) * 4 * 64) / 64
  mask = np.ones(b, np.float32)
  mask[-filler:] = 0.0
  return dict(policy_chosen_logps=f32(policy[0])[0], policy_rejected_logps=f32(policy[1])[0],
              ref_chosen_logps=f32(ref[0])[0], ref_rejected_logps=f32(ref[1])[0],
              strength=np.asarray(rng.integers(0, 4, size=b), np.float32), mask=mask)


def test_dpo_at_reference_is_log2_and_variants_reduce():
  logps = np.array([-12.0, -40.0, -7.5], np.float32)
  rej = np.array([-30.0, -9.0, -7.5], np.float32)
  at_ref = dict(policy_chosen_logps=logps, policy_rejected_logps=rej, ref_chosen_logps=logps,
                ref_rejected_logps=rej, mask=np.ones(3))
  loss, metrics = losses.dpo(**at_ref, strength=np.ones(3))
  assert float(loss) == pytest.approx(LOG2, rel=RTOL)
  assert float(metrics["accuracy"]) == 0.0  # h = 0 everywhere: ties are wrong
  # margin at m: −log σ(−m); scaled at m: m · log 2 averaged over pairs.
  m = np.array([0.0, 1.0, 2.0])
  loss, _ = losses.dpo(**at_ref, strength=m, variant="margin")
  assert float(loss) == pytest.approx(np.mean(np.logaddexp(0.0, m)), rel=RTOL)
  loss, _ = losses.dpo(**at_ref, strength=m, variant="scaled")
  assert float(loss) == pytest.approx(LOG2, rel=RTOL)  # (0 + 1 + 2)·log2 / 3
  # Off the reference: margin with m = 0 and scaled with m = 1 equal regular.
  kw = random_dpo(10)
  reg = float(losses.dpo(**kw)[0])
  assert float(losses.dpo(**{**kw, "strength": np.zeros(16)}, variant="margin")[0]) == reg
  assert float(losses.dpo(**{**kw, "strength": np.ones(16)}, variant="scaled")[0]) == reg


@pytest.mark.parametrize("variant", ["regular", "margin", "scaled"])
def test_dpo_matches_numpy(variant):
  kw = random_dpo(11)
  loss, metrics = losses.dpo(**kw, beta=0.05, variant=variant)
  ref_loss, ref_metrics = np_dpo(kw["policy_chosen_logps"], kw["policy_rejected_logps"],
                                 kw["ref_chosen_logps"], kw["ref_rejected_logps"], kw["strength"],
                                 kw["mask"], 0.05, variant)
  assert float(loss) == pytest.approx(ref_loss, rel=RTOL)
  for k, v in ref_metrics.items():
    assert float(metrics[k]) == pytest.approx(v, rel=RTOL), k
  # The registry's partials are the same function.
  name = {"regular": "dpo", "margin": "dpo_margin", "scaled": "dpo_scaled"}[variant]
  assert float(losses.get_loss(name)(**kw, beta=0.05)[0]) == float(loss)


def test_dpo_gradients_and_masking():
  kw = random_dpo(12)
  kw["policy_chosen_logps"][-3:] = [np.nan, np.inf, -np.inf]
  grads = jax.grad(lambda c, r: losses.dpo(**{**kw, "policy_chosen_logps": c,
                                               "policy_rejected_logps": r})[0],
                   argnums=(0, 1))(kw["policy_chosen_logps"], kw["policy_rejected_logps"])
  g_c, g_r = (np.asarray(g) for g in grads)
  assert np.all(g_c[:-3] < 0) and np.all(g_r[:-3] > 0)
  assert np.all(g_c[-3:] == 0.0) and np.all(g_r[-3:] == 0.0)
  # Large implicit-reward margins stay finite.
  big = dict(kw, policy_chosen_logps=np.full(16, -1e4, np.float32), mask=np.ones(16))
  loss, g = jax.value_and_grad(lambda c: losses.dpo(**{**big, "policy_chosen_logps": c},
                                                    variant="margin")[0])(
                                                        big["policy_chosen_logps"])
  assert np.isfinite(loss) and np.all(np.isfinite(g))


def test_dpo_unknown_variant_raises():
  with pytest.raises(ValueError, match="regular"):
    losses.dpo(**random_dpo(13), variant="ipo")


# ---------------------------------------------------------------- registry and jit

def test_registry():
  assert losses.PAIRWISE_LOSSES == {"bt": losses.bt, "margin_bt": losses.margin_bt,
                                    "scaled_bt": losses.scaled_bt}
  assert sorted(losses.DPO_LOSSES) == ["dpo", "dpo_margin", "dpo_scaled", "spin"]
  assert losses.get_loss("scaled_bt") is losses.scaled_bt
  assert losses.get_loss("regression") is losses.regression
  with pytest.raises(ValueError) as err:
    losses.get_loss("nope")
  for name in ("bt", "margin_bt", "scaled_bt", "dpo", "dpo_margin", "dpo_scaled", "regression"):
    assert name in str(err.value)


def _assert_same(a, b):
  (loss_a, met_a), (loss_b, met_b) = a, b
  np.testing.assert_allclose(loss_b, loss_a, rtol=RTOL)
  assert met_a.keys() == met_b.keys()
  for k in met_a:
    np.testing.assert_allclose(met_b[k], met_a[k], rtol=RTOL, atol=1e-7, err_msg=k)


def test_all_losses_jit():
  pairs = random_pairs(14, filler=2)
  for name, fn in losses.PAIRWISE_LOSSES.items():
    for normalize in (("pairs", "strength") if name == "scaled_bt" else ("pairs",)):
      bound = functools.partial(fn, normalize=normalize)
      _assert_same(bound(**pairs), jax.jit(lambda kw, f=bound: f(**kw))(pairs))
  center = functools.partial(losses.reward_centering, coef=0.3)
  kw = {k: pairs[k] for k in ("r_chosen", "r_rejected", "mask")}
  _assert_same(center(**kw), jax.jit(lambda kw: center(**kw))(kw))
  reg = functools.partial(losses.regression, attribute_names=losses.ATTRIBUTES)
  kw = random_regression(15)
  _assert_same(reg(**kw), jax.jit(lambda kw: reg(**kw))(kw))
  kw = random_dpo(16)
  for fn in losses.DPO_LOSSES.values():
    _assert_same(fn(**kw), jax.jit(lambda kw, f=fn: f(**kw))(kw))


# ---------------------------------------------------------------- ties (data/ties.py)

def _tie_loss_and_grad(name):
  """Loss and gradient (w.r.t. the rewards / policy log-probs) of one real strength-0 pair."""
  one = lambda x: np.asarray([x], np.float32)
  if name in losses.PAIRWISE_LOSSES:
    fn = lambda a, b: losses.PAIRWISE_LOSSES[name](r_chosen=a, r_rejected=b, strength=one(0.0),
                                                    mask=one(1.0))[0]
  else:
    fn = lambda a, b: losses.DPO_LOSSES[name](
        policy_chosen_logps=a, policy_rejected_logps=b, ref_chosen_logps=one(-10.0),
        ref_rejected_logps=one(-12.0), strength=one(0.0), mask=one(1.0))[0]
  a, b = one(-9.0), one(-13.0)  # rewards that a loss trained on the tie would still push apart
  loss, grads = jax.value_and_grad(fn, argnums=(0, 1))(a, b)
  return float(loss), float(np.abs(np.concatenate(grads)).max())


@pytest.mark.parametrize("name", sorted({**losses.PAIRWISE_LOSSES, **losses.DPO_LOSSES}))
def test_keeping_ties_is_allowed_exactly_for_losses_that_ignore_them(name):
  """drop_ties=False is allowed exactly for the losses whose strength-0 pair has loss and
  gradient 0; every other pairwise or DPO loss would train a kept tie as "chosen wins"."""
  from helpsteer_jax.data.records import DataError
  from helpsteer_jax.data.ties import resolve_drop_ties
  loss, grad = _tie_loss_and_grad(name)
  ignores_ties = loss == 0.0 and grad == 0.0
  assert ignores_ties == (name in ("scaled_bt", "dpo_scaled")), (name, loss, grad)
  assert resolve_drop_ties(name, None) and resolve_drop_ties(name, True)
  if ignores_ties:
    assert resolve_drop_ties(name, False) is False
  else:
    with pytest.raises(DataError, match="cannot keep ties"):
      resolve_drop_ties(name, False)

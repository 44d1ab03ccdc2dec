"""The SPIN loss (losses.spin) against a NumPy reference and against DPO with the substituted pair.

Tolerance: 1e-6 relative against float64 NumPy (float32 arithmetic on log-probs chosen on a 1/64
grid, so the policy − reference differences are exact and only the log-sigmoid rounds), with
1e-6 absolute besides for the metrics, some of which (the margin) can sit near 0; equality
with DPO is exact (the same float32 operations in the same order).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax import losses


def _np_spin(py, pg, ry, rg, mask, beta):
  real = np.asarray(mask) != 0
  py, pg, ry, rg = (np.asarray(a, np.float64)[real] for a in (py, pg, ry, rg))
  h = beta * ((py - ry) - (pg - rg))
  per = np.logaddexp(0.0, -h)  # log(1 + e^{-h}): the paper's logistic loss ℓ(h)
  return per.mean(), {"accuracy": np.mean(h > 0), "reward_real": np.mean(beta * (py - ry)),
                      "reward_generated": np.mean(beta * (pg - rg)), "margin": np.mean(h),
                      "num_pairs": float(real.sum())}


def _random(seed, b=12, filler=2):
  rng = np.random.default_rng(seed)
  ref = -np.round(rng.gamma(5.0, 20.0, size=(2, b)) * 64) / 64
  policy = ref + np.round(rng.normal(size=(2, b)) * 4 * 64) / 64
  mask = np.ones(b, np.float32)
  if filler:  # filler pairs hold garbage that must not reach the loss
    mask[-filler:] = 0.0
    policy[:, -filler:] = np.nan
  f = lambda a: np.asarray(a, np.float32)
  return dict(policy_real_logps=f(policy[0]), policy_generated_logps=f(policy[1]),
              ref_real_logps=f(ref[0]), ref_generated_logps=f(ref[1]), mask=mask)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_spin_matches_numpy(beta):
  kw = _random(0)
  loss, metrics = losses.spin(**kw, beta=beta)
  ref_loss, ref_metrics = _np_spin(kw["policy_real_logps"], kw["policy_generated_logps"],
                                   kw["ref_real_logps"], kw["ref_generated_logps"], kw["mask"],
                                   beta)
  np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-6)
  assert float(metrics["loss"]) == float(loss)
  for k, v in ref_metrics.items():
    np.testing.assert_allclose(float(metrics[k]), v, rtol=1e-6, atol=1e-6, err_msg=k)
  assert float(metrics["num_pairs"]) == 10.0


def test_spin_hand_value_at_the_reference_is_log2():
  # At the reference every log-ratio is 0, so h = 0 and the loss is log 2 for any beta.
  lp = np.array([-10.0, -3.5], np.float32)
  gp = np.array([-4.0, -8.0], np.float32)
  loss, metrics = losses.spin(policy_real_logps=lp, policy_generated_logps=gp, ref_real_logps=lp,
                              ref_generated_logps=gp, mask=np.ones(2), beta=0.3)
  np.testing.assert_allclose(float(loss), np.log(2.0), rtol=1e-7)
  assert float(metrics["accuracy"]) == 0.0  # h = 0 is not a win
  # One pair by hand: β = 0.5, real log-ratio +2, generated −2 → h = 2, loss = log(1 + e^-2).
  loss, _ = losses.spin(policy_real_logps=np.array([-8.0]), policy_generated_logps=np.array([-6.]),
                        ref_real_logps=np.array([-10.0]), ref_generated_logps=np.array([-4.0]),
                        mask=np.ones(1), beta=0.5)
  np.testing.assert_allclose(float(loss), np.log1p(np.exp(-2.0)), rtol=1e-6)


def test_spin_equals_dpo_with_the_real_response_as_chosen():
  kw = _random(1)
  loss, metrics = losses.spin(**kw, beta=0.2)
  d_loss, d_metrics = losses.dpo(policy_chosen_logps=kw["policy_real_logps"],
                                 policy_rejected_logps=kw["policy_generated_logps"],
                                 ref_chosen_logps=kw["ref_real_logps"],
                                 ref_rejected_logps=kw["ref_generated_logps"],
                                 strength=np.zeros(12, np.float32), mask=kw["mask"], beta=0.2)
  assert float(loss) == float(d_loss)
  assert float(metrics["margin"]) == float(d_metrics["margin"])
  assert float(metrics["reward_real"]) == float(d_metrics["reward_chosen"])
  assert float(metrics["reward_generated"]) == float(d_metrics["reward_rejected"])
  assert float(metrics["accuracy"]) == float(d_metrics["accuracy"])


def test_spin_gradients_push_real_up_generated_down_and_skip_the_reference():
  kw = _random(2, filler=0)

  def f(py, pg, ry):
    return losses.spin(**{**kw, "policy_real_logps": py, "policy_generated_logps": pg,
                          "ref_real_logps": ry})[0]

  g_real, g_gen, g_ref = jax.grad(f, argnums=(0, 1, 2))(kw["policy_real_logps"],
                                                        kw["policy_generated_logps"],
                                                        kw["ref_real_logps"])
  assert (np.asarray(g_real) < 0).all() and (np.asarray(g_gen) > 0).all()
  assert (np.asarray(g_ref) == 0).all()  # the previous iterate is frozen
  np.testing.assert_allclose(np.asarray(g_real), -np.asarray(g_gen), rtol=1e-6)


def test_spin_all_filler_is_zero_not_nan():
  kw = _random(3, b=4, filler=4)
  loss, metrics = losses.spin(**kw)
  assert float(loss) == 0.0 and float(metrics["num_pairs"]) == 0.0
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_spin_registered_for_the_dpo_trainer_is_the_spin_loss():
  """DPO_LOSSES["spin"] (what `loss.name = "spin"` trains with) is `spin` with chosen = the SFT
  response and rejected = the generation, whatever the strength column holds."""
  rng = np.random.default_rng(3)
  a, b, c, d = (jnp.asarray(rng.normal(size=6) * 5, jnp.float32) for _ in range(4))
  mask = jnp.asarray([1, 1, 1, 1, 0, 1], jnp.float32)
  want, wm = losses.spin(policy_real_logps=a, policy_generated_logps=b, ref_real_logps=c,
                         ref_generated_logps=d, mask=mask, beta=0.3)
  got, gm = losses.DPO_LOSSES["spin"](policy_chosen_logps=a, policy_rejected_logps=b,
                                      ref_chosen_logps=c, ref_rejected_logps=d,
                                      strength=jnp.full(6, 7.0), mask=mask, beta=0.3)
  assert float(got) == float(want) and float(gm["accuracy"]) == float(wm["accuracy"])
  from helpsteer_jax.training.tasks import task_for  # pylint: disable=g-import-not-at-top
  assert task_for("spin").name == "dpo"

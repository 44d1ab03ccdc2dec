"""The small study's cached frozen-backbone features and the heads trained on them
(projects/reproduce_small/features.py, probe.py)."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from helpsteer_jax import losses
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models import PRESETS, LlamaRewardModel
from projects.reproduce_small import probe
from projects.reproduce_small.features import FeatureCache, digest, last_token_fn


@pytest.fixture(scope="module")
def tiny():
  cfg = PRESETS["tiny"]
  model = LlamaRewardModel(cfg, num_labels=3)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  params = jax.tree_util.tree_map(np.asarray, params)
  rng = np.random.default_rng(0)
  seqs = [rng.integers(1, cfg.vocab_size, n).astype(np.int32) for n in (5, 17, 9, 30, 12, 3, 21)]
  return cfg, model, params, seqs


def _feature_scorer(cfg, params):
  s = Scorer(None, params["model"], pad_id=0, batch_size=3, pad_to_multiple_of=8,
             fn=last_token_fn(cfg))
  return lambda seqs: s(seqs)


def test_head_on_cached_features_is_the_reward_model(tiny, tmp_path):
  cfg, model, params, seqs = tiny
  feats = FeatureCache(tmp_path / "f", _feature_scorer(cfg, params), chunk=3)(seqs, log=None)
  direct = Scorer(model, params, pad_id=0, batch_size=2, pad_to_multiple_of=16)(seqs)
  # float32, differently padded batches: the tolerance of the model's own batching test.
  np.testing.assert_allclose(feats @ params["score"]["kernel"], direct, atol=1e-5, rtol=1e-5)


def test_cache_resumes_and_refuses_other_sequences(tiny, tmp_path):
  cfg, _, params, seqs = tiny
  calls = []
  score = _feature_scorer(cfg, params)

  def counting(chunk):
    calls.append(len(chunk))
    return score(chunk)

  cache = FeatureCache(tmp_path / "f", counting, chunk=3)
  first = cache(seqs, log=None)
  assert calls == [3, 3, 1] and cache.done(len(seqs)) and cache.seconds() > 0
  (tmp_path / "f" / "part_00001.npz").unlink()  # as if interrupted during the second chunk
  calls.clear()
  again = cache(seqs, log=None)
  assert calls == [3]  # only the missing chunk is recomputed
  np.testing.assert_array_equal(first, again)
  other = list(seqs)
  other[0] = other[0][:-1]
  with pytest.raises(ValueError, match="part_00000.npz: cached features were computed for other"):
    cache(other, log=None)
  assert digest(seqs) != digest(other)


def _toy_pairs(n=200, dim=16, seed=0):
  """Features with a hidden linear reward; pairs ordered by it, strength from the gap."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(2 * n, dim)).astype(np.float32)
  w = rng.normal(size=dim).astype(np.float32)
  r = x @ w
  a, b = np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2)
  chosen, rejected = np.where(r[a] > r[b], a, b), np.where(r[a] > r[b], b, a)
  strength = np.clip(np.ceil(np.abs(r[a] - r[b])), 1, 3).astype(np.float32)
  return x, chosen, rejected, strength, w


@pytest.mark.parametrize("loss", sorted(losses.PAIRWISE_LOSSES))
def test_pairwise_head_learns_a_linear_preference(loss):
  x, c, r, m, _ = _toy_pairs()
  k0 = probe.init_kernel(0, x.shape[1], 1)
  before = probe.pair_accuracy(x, c, r, k0)
  cfg = probe.ProbeConfig(lr=3e-2, epochs=15, batch_size=32)
  trained = probe.train_pairwise(x, c, r, m, loss, k0, cfg, seed=0,
                                 evaluate=lambda k: {"acc": probe.pair_accuracy(x, c, r, k)})
  assert trained.kernel.shape == (x.shape[1], 1)
  assert trained.curve[-1]["train_loss"] < trained.curve[0]["train_loss"]
  # Learning, not fitting to the last pair: 90% of training pairs from a chance start.
  assert trained.curve[-1]["acc"] > 0.9 > before + 0.2
  assert [p["epoch"] for p in trained.curve] == list(range(1, 16))


def test_seed_sets_batch_order_and_init_is_kept_when_given():
  x, c, r, m, _ = _toy_pairs()
  cfg = probe.ProbeConfig(lr=1e-2, epochs=2, batch_size=32)
  k0 = probe.init_kernel(0, x.shape[1], 1)
  a = probe.train_pairwise(x, c, r, m, "bt", k0, cfg, seed=0).kernel
  b = probe.train_pairwise(x, c, r, m, "bt", k0, cfg, seed=0).kernel
  d = probe.train_pairwise(x, c, r, m, "bt", k0, cfg, seed=1).kernel
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, d)
  np.testing.assert_array_equal(k0, probe.init_kernel(0, x.shape[1], 1))  # input not mutated


def test_regression_head_fits_masked_labels():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 8)).astype(np.float32)
  w = rng.normal(size=(8, 2)).astype(np.float32)
  y = x @ w
  mask = np.ones_like(y)
  mask[::3, 1] = 0.0
  y_corrupt = np.where(mask > 0, y, 1e3)  # a masked label must not move the head
  idx = np.arange(300)
  cfg = probe.ProbeConfig(lr=5e-2, epochs=30, batch_size=32)
  t = probe.train_regression(x, idx, y_corrupt, mask, probe.init_kernel(0, 8, 2), cfg, seed=0)
  mse = float(np.mean((x @ t.kernel - y) ** 2))
  assert mse < 0.05 * float(np.mean(y ** 2)), mse

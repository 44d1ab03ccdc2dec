"""Sequence packing: the batcher's layout, and packed rewards/losses equal unpacked ones.

Tolerance: rewards of a sequence packed among others equal its rewards alone within 1e-5
(float32; the masked-out keys change XLA's reduction order, nothing else).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpsteer_jax.data import DataError, Encoded, EncodedPair, PackedPairBatcher, PairBatcher
from helpsteer_jax.models.config import PRESETS
from helpsteer_jax.models.llama import LlamaRewardModel, segment_positions
from helpsteer_jax.training import objectives


def make_pairs(n=41, seed=0, vocab=256, lo=3, hi=60):
  """Random token ids (distinct with overwhelming probability) and lengths in [lo, hi)."""
  rng = np.random.default_rng(seed)
  pairs = []
  for i in range(n):
    lc, lr = rng.integers(lo, hi, size=2)
    pairs.append(EncodedPair(Encoded(rng.integers(1, vocab, lc).astype(np.int32), 2),
                             Encoded(rng.integers(1, vocab, lr).astype(np.int32), 2),
                             strength=float(i % 3 + 1), source="f.jsonl", row=i))
  return pairs


def _pairs_in(batcher, batch):
  """(row, slot j, example index) of each real pair, found by matching token ids."""
  out = []
  for r in range(batch["input_ids"].shape[0]):
    for j in range(batch["weight"].shape[1]):
      if not batch["weight"][r, j]:
        continue
      seg = batch["segment_ids"][r]
      chosen = batch["input_ids"][r][seg == 2 * j + 1]
      rejected = batch["input_ids"][r][seg == 2 * j + 2]
      hits = [i for i, ex in enumerate(batcher.examples)
              if np.array_equal(ex.chosen.input_ids, chosen)
              and np.array_equal(ex.rejected.input_ids, rejected)]
      assert len(hits) == 1, (r, j)
      out.append((r, j, hits[0]))
  return out


def test_every_pair_once_per_epoch_whole_and_readable():
  pairs = make_pairs()
  batcher = PackedPairBatcher(pairs, 3, seed=1, row_length=160, max_pairs_per_row=4, pad_id=0)
  seen = []
  for batch in batcher:
    assert batch["input_ids"].shape == (3, 160) and batch["read_index"].shape == (3, 8)
    assert batch["weight"].shape == batch["strength"].shape == (3, 4)
    for r, j, i in _pairs_in(batcher, batch):
      seen.append(i)
      seg = batch["segment_ids"][r]
      for side, s in enumerate((pairs[i].chosen, pairs[i].rejected)):
        where = np.flatnonzero(seg == 2 * j + side + 1)
        assert np.array_equal(where, np.arange(where[0], where[0] + len(s.input_ids)))
        assert batch["read_index"][r, 2 * j + side] == where[-1]
      assert batch["strength"][r, j] == pairs[i].strength
    # Segments are contiguous and in slot order, padding only at the end of a row.
    for seg in batch["segment_ids"]:
      real = seg[seg > 0]
      assert (np.diff(real) >= 0).all() and (seg[len(real):] == 0).all()
    assert (batch["attention_mask"] == (batch["segment_ids"] > 0)).all()
  assert sorted(seen) == list(range(len(pairs)))


def test_packing_leaves_little_padding_and_is_deterministic():
  pairs = make_pairs(200)
  packed = PackedPairBatcher(pairs, 4, seed=0, row_length=256, pad_id=0)
  plain = PairBatcher(pairs, 4, seed=0, pad_id=0, pad_to_multiple_of=1)
  rows = [m for b in packed for m, w in zip(b["attention_mask"], b["weight"]) if w.any()]
  lower_bound = -(-packed.pair_lengths.sum() // 256)  # rows if packing were perfect
  assert len(rows) <= lower_bound + 1, (len(rows), lower_bound)
  packed_share = 1 - sum(float(m.sum()) for m in rows) / (len(rows) * 256)
  plain_share = 1 - sum(float(b["attention_mask"].sum()) for b in plain) / sum(
      b["attention_mask"].size for b in plain)
  assert packed_share < 0.05 < plain_share, (packed_share, plain_share)
  again = PackedPairBatcher(pairs, 4, seed=0, row_length=256, pad_id=0)
  a = next(iter(again.iterate(1)))
  fresh = PackedPairBatcher(pairs, 4, seed=0, row_length=256, pad_id=0)
  b = next(iter(fresh.iterate(1)))
  assert all(np.array_equal(a[k], b[k]) for k in a)
  # Resume after two batches gives the same third batch.
  run = PackedPairBatcher(pairs, 4, seed=0, row_length=256, pad_id=0)
  list(run.iterate(2))
  resumed = PackedPairBatcher(pairs, 4, seed=0, row_length=256, pad_id=0)
  resumed.restore(run.state())
  x, y = next(iter(run.iterate(1))), next(iter(resumed.iterate(1)))
  assert all(np.array_equal(x[k], y[k]) for k in x)


def test_resume_anywhere_when_epochs_pack_to_different_lengths():
  """Stopping after any batch (mid-epoch or at an epoch's end) and resuming in a fresh batcher
  gives exactly the batches of an uninterrupted run, although each epoch's shuffle packs into
  its own number of rows (so a fresh batcher's current epoch has another length than the saved
  one)."""
  pairs = make_pairs(n=30, seed=2)
  make = lambda: PackedPairBatcher(pairs, 2, seed=2, row_length=128, max_pairs_per_row=4,
                                   pad_id=0, group_batches=1)
  lengths = [len(make().plan(e)) for e in range(4)]
  # The case that matters: a later epoch longer than epoch 0, so that its end position is past
  # the end of a fresh batcher's epoch.
  assert lengths == [11, 12, 11, 12], lengths
  total = sum(lengths)
  stream = list(make().iterate(total))
  for stop in range(1, total):
    run = make()
    head = list(run.iterate(stop))
    resumed = make()
    resumed.restore(run.state())
    rest = list(resumed.iterate(total - stop))
    for k, (want, got) in enumerate(zip(stream, head + rest)):
      assert want.keys() == got.keys()
      assert all(np.array_equal(want[key], got[key]) for key in want), (stop, k)
  at_end = make()
  list(at_end.iterate(lengths[0] + lengths[1]))  # the end of epoch 1 (12 batches)
  assert at_end.state()["epoch"] == 1 and at_end.state()["position"] == 12
  with pytest.raises(DataError, match="position 13 outside epoch 1 of 12"):
    make().restore({**at_end.state(), "position": 13})


def test_a_pair_longer_than_a_row_is_an_error_naming_it():
  pairs = make_pairs(5)
  with pytest.raises(DataError, match=r"f\.jsonl:\d+: pair of \d+ tokens"):
    PackedPairBatcher(pairs, 2, row_length=40)


def test_segment_positions_restart_per_segment():
  seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0]])
  assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
@pytest.mark.parametrize("scan", [False, True])
def test_packed_rewards_and_loss_equal_unpacked(scan):
  cfg = dataclasses.replace(PRESETS["tiny"], scan_layers=scan)
  model = LlamaRewardModel(cfg, num_labels=2)
  pairs = make_pairs(13, vocab=cfg.vocab_size)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))["params"]
  packed = PackedPairBatcher(pairs, 2, seed=0, row_length=128, max_pairs_per_row=3, pad_id=0)
  plain = PairBatcher(pairs, 13, seed=0, shuffle=False, pad_id=0)
  ref_batch = next(iter(plain))
  ref_c, ref_r = objectives.pair_rewards(model, params, ref_batch, head_index=1)
  # Reference row of each example in the unpacked batch (length-sorted), found by its ids.
  order = {}
  for k in range(len(pairs)):
    ids = ref_batch["input_ids"][k, 0]
    order[next(i for i, ex in enumerate(pairs)
               if np.array_equal(ids[:len(ex.chosen.input_ids)], ex.chosen.input_ids))] = k
  objective = objectives.pairwise_objective(model, "scaled_bt", head_index=1)
  total, n = 0.0, 0
  for batch in packed:
    r_c, r_r = objectives.pair_rewards(model, params, batch, head_index=1)
    for r, j, i in _pairs_in(packed, batch):
      np.testing.assert_allclose(r_c[r, j], ref_c[order[i]], atol=1e-5)
      np.testing.assert_allclose(r_r[r, j], ref_r[order[i]], atol=1e-5)
    loss, m = objective(params, batch)
    total, n = total + float(loss) * float(m["count"]), n + float(m["count"])
  ref_loss, ref_m = objective(params, ref_batch)
  assert n == float(ref_m["count"]) == len(pairs)
  np.testing.assert_allclose(total / n, float(ref_loss), atol=1e-5)

"""PairBatcher / RatingBatcher: layout, filler rows, determinism, exact resume, host sharding."""
import json

import numpy as np
import pytest

from helpsteer_jax.data import (DataError, Encoded, EncodedPair, EncodedRating, PairBatcher,
                                RatingBatcher)


def make_pairs(n=37, seed=0):
  """Pair i: chosen ids all 1000+i, rejected all 2000+i; lengths vary; 3 prompt tokens."""
  rng = np.random.default_rng(seed)
  pairs = []
  for i in range(n):
    lc, lr = rng.integers(5, 120, size=2)
    pairs.append(EncodedPair(Encoded(np.full(lc, 1000 + i, np.int32), 3),
                             Encoded(np.full(lr, 2000 + i, np.int32), 3),
                             strength=float(i % 3 + 1), source="f.jsonl", row=i + 1))
  return pairs


def pair_ids(batch):
  """Example index of each real row, read back from the chosen token ids."""
  return [int(ids[0, 0]) - 1000 for ids, w in zip(batch["input_ids"], batch["weight"]) if w]


def test_pair_batch_layout_and_pairs_stay_together():
  pairs = make_pairs()
  batcher = PairBatcher(pairs, 4, seed=0, pad_id=7, pad_to_multiple_of=16, response_mask=True)
  for batch in batcher:
    b, two, length = batch["input_ids"].shape
    assert (b, two) == (4, 2) and length % 16 == 0
    assert batch["input_ids"].dtype == np.int32 and batch["attention_mask"].dtype == np.int32
    assert batch["strength"].dtype == np.float32 and batch["weight"].dtype == np.float32
    for r, i in enumerate(pair_ids(batch)):
      ex = pairs[i]
      for side, seq in enumerate((ex.chosen, ex.rejected)):
        n = len(seq.input_ids)
        assert (batch["input_ids"][r, side, :n] == seq.input_ids).all()
        assert (batch["input_ids"][r, side, n:] == 7).all()
        assert batch["attention_mask"][r, side].tolist() == [1] * n + [0] * (length - n)
        assert batch["response_mask"][r, side].tolist() == (
            [0] * 3 + [1] * (n - 3) + [0] * (length - n))
      assert batch["strength"][r] == ex.strength
    assert length - 16 < max(pairs[i].length for i in pair_ids(batch)) <= length


def test_filler_rows_have_weight_zero_and_one_attended_token():
  batches = list(PairBatcher(make_pairs(37), 8, seed=1))
  assert len(batches) == 5
  weights = np.concatenate([b["weight"] for b in batches])
  assert weights.sum() == 37 and set(weights.tolist()) == {0.0, 1.0}
  for b in batches:
    filler = b["weight"] == 0
    assert (b["attention_mask"][filler].sum(axis=-1) == 1).all()  # no all-masked row (NaN)
    assert (b["strength"][filler] == 0).all()


def test_epoch_sees_every_pair_once_and_order_depends_only_on_seed():
  pairs = make_pairs()
  order = lambda seed, epoch=0: [pair_ids(b) for b in _epoch(PairBatcher(pairs, 4, seed), epoch)]
  first = order(0)
  assert sorted(i for b in first for i in b) == list(range(37))
  assert first == order(0)
  assert first != order(1)
  assert first != order(0, epoch=1)  # a new shuffle each epoch


def _epoch(batcher, epoch):
  for _ in range(epoch):
    list(batcher)
  return list(batcher)


def test_length_grouping_pads_less_than_file_order():
  pairs = make_pairs(400)
  batcher = PairBatcher(pairs, 8, seed=0, pad_to_multiple_of=1)
  grouped = sum(b["input_ids"].shape[-1] for b in batcher)
  naive = sum(max(p.length for p in pairs[s:s + 8]) for s in range(0, 400, 8))
  assert grouped < 0.8 * naive


def test_state_restore_continues_exactly_across_epochs():
  pairs = make_pairs()
  ref = PairBatcher(pairs, 4, seed=3)
  stream = [pair_ids(b) for b in ref.iterate(25)]  # 10 batches per epoch: crosses two epochs
  for stop in (0, 4, 10, 13, 20):
    first = PairBatcher(pairs, 4, seed=3)
    seen = [pair_ids(b) for b in first.iterate(stop)]
    saved = json.loads(json.dumps(first.state()))  # survives a JSON checkpoint
    resumed = PairBatcher(pairs, 4, seed=3)
    resumed.restore(saved)
    assert seen + [pair_ids(b) for b in resumed.iterate(25 - stop)] == stream
  assert ref.state()["epoch"] == 2 and ref.state()["position"] == 5


def test_restore_refuses_a_different_dataset_or_batch():
  state = PairBatcher(make_pairs(37), 4, seed=0).state()
  with pytest.raises(DataError, match="num_examples"):
    PairBatcher(make_pairs(36), 4, seed=0).restore(state)
  with pytest.raises(DataError, match="global_batch"):
    PairBatcher(make_pairs(37), 8, seed=0).restore(state)


def test_hosts_get_disjoint_slices_of_the_same_global_batches():
  pairs = make_pairs(50)
  whole = list(PairBatcher(pairs, 6, seed=5, pad_to_multiple_of=8))
  hosts = [list(PairBatcher(pairs, 2, seed=5, process_index=p, process_count=3,
                            pad_to_multiple_of=8)) for p in range(3)]
  assert all(len(h) == len(whole) == 9 for h in hosts)
  for k, batch in enumerate(whole):
    parts = [h[k] for h in hosts]
    assert {p["input_ids"].shape for p in parts} == {(2,) + batch["input_ids"].shape[1:]}
    for key in batch:
      assert (np.concatenate([p[key] for p in parts]) == batch[key]).all()


def test_eval_order_is_fixed_and_length_sorted():
  pairs = make_pairs()
  a = [pair_ids(b) for b in PairBatcher(pairs, 4, seed=0, shuffle=False)]
  b = [pair_ids(b) for b in PairBatcher(pairs, 4, seed=9, shuffle=False)]
  flat = [i for batch in a for i in batch]
  assert a == b and [pairs[i].length for i in flat] == sorted(p.length for p in pairs)


def test_rating_batch_labels_masks_and_attribute_subset():
  examples = [EncodedRating(Encoded(np.arange(1, 6 + i, dtype=np.int32), 2),
                            {"helpfulness": float(i % 5), "correctness": None,
                             "coherence": 4.0, "complexity": 1.0, "verbosity": 2.0},
                            "r.jsonl", i + 1) for i in range(10)]
  batcher = RatingBatcher(examples, 4, seed=0, pad_to_multiple_of=8)
  rows = 0
  for batch in batcher:
    assert batch["input_ids"].ndim == 2 and batch["input_ids"].shape[1] % 8 == 0
    assert batch["labels"].shape == batch["label_mask"].shape == (4, 5)
    for r in np.flatnonzero(batch["weight"]):
      n = int(batch["attention_mask"][r].sum())
      ex = next(e for e in examples if e.length == n)
      assert batch["labels"][r].tolist() == [ex.attributes["helpfulness"], 0.0, 4.0, 1.0, 2.0]
      assert batch["label_mask"][r].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]
      rows += 1
    assert (batch["label_mask"][batch["weight"] == 0] == 0).all()
  assert rows == 10
  only = next(iter(RatingBatcher(examples, 4, attributes=["coherence"])))
  assert only["labels"].shape == (4, 1) and (only["labels"][only["weight"] == 1] == 4.0).all()
  with pytest.raises(DataError, match="not loaded with attribute"):
    RatingBatcher([EncodedRating(Encoded(np.ones(3, np.int32), 1), {"helpfulness": 1.0},
                                 "r.jsonl", 1)], 4)

"""Reward-model data: loading (HelpSteer2 and other preference sources), chat-template tokenisation
with left truncation, and deterministic length-grouped batches that resume exactly.

  pairs, counts = load_preferences({"format": "helpsteer2_preference", "path": "nvidia/HelpSteer2",
                                    "split": "train"}, loss="scaled_bt")
  encoded = encode_pairs(pairs, tokenizer, max_length=4096, counts=counts)
  print(counts.report())
  batches = PairBatcher(encoded, batch_size=8, seed=0, pad_id=tokenizer.pad_token_id)
  for batch in batches.iterate(num_steps): ...
"""
from helpsteer_jax.data.batching import PackedPairBatcher, PairBatcher, RatingBatcher
from helpsteer_jax.data.encoding import (ChatEncoder, Encoded, EncodedPair, EncodedRating,
                                         encode_pairs, encode_ratings)
from helpsteer_jax.data.records import (ATTRIBUTES, Counts, DataError, PreferencePair,
                                        RatedExample)
from helpsteer_jax.data.spec import FORMATS, DataSpec, load_preferences, load_ratings
from helpsteer_jax.data.ties import resolve_drop_ties

__all__ = [
    "ATTRIBUTES", "ChatEncoder", "Counts", "DataError", "DataSpec", "Encoded", "EncodedPair",
    "EncodedRating", "FORMATS", "PackedPairBatcher", "PairBatcher", "PreferencePair",
    "RatedExample", "RatingBatcher",
    "encode_pairs", "encode_ratings", "load_preferences", "load_ratings", "resolve_drop_ties",
]

"""Rewards for rows of prompts and responses, written back as the same rows plus the rewards.

Each row has `prompt` (a string or a list of chat messages) and either `chosen`/`rejected` or
`response` (evaluation/rows.py). Every conversation is rendered once with the tokenizer's chat
template and tokenised without adding special tokens again (no double BOS), by the training
pipeline's encoder: a conversation over `max_length` loses its oldest turns first. Output rows
are the input rows plus `reward_chosen`/`reward_rejected` or `reward` (head output `head_index`;
all outputs under `outputs_*` when the head has several), in input order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import DataError, where
from helpsteer_jax.evaluation.rows import ResponseRow, load_response_rows
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax import runs
from helpsteer_jax.models import LlamaRewardModel, Pretrained


def score_rows(pre: Pretrained, rows: Sequence[ResponseRow], *, batch_size: int = 8,
               max_length: int = 4096, head_index: int = 0) -> tuple[list[dict[str, Any]], int]:
  """(the rows with their rewards added, number of rows whose oldest turns were cut)."""
  encoder = ChatEncoder(pre.tokenizer, max_length)
  seqs: list[np.ndarray] = []
  slots: list[tuple[int, str]] = []  # (index in `rows`, field) of each sequence
  truncated = 0
  encoded_rows = encoder.encode_many([(r.messages, r.responses) for r in rows],
                                     [where(r.source, r.line) for r in rows])
  for k, (r, (encoded, cut)) in enumerate(zip(rows, encoded_rows)):
    if encoded is None:
      raise DataError(f"{where(r.source, r.line)}: longer than --max-length {max_length} tokens "
                      "even with only the final user turn")
    truncated += bool(cut)
    seqs += [e.input_ids for e in encoded]
    slots += [(k, f) for f in r.fields]
  scorer = Scorer(LlamaRewardModel(pre.config, num_labels=pre.num_labels), pre.reward_params(),
                  pad_id=pre.tokenizer.pad_token_id, batch_size=batch_size)
  rewards = scorer(seqs)
  results: list[dict[str, Any]] = [dict(r.row) for r in rows]
  for (k, field), r in zip(slots, rewards):
    suffix = "" if field == "response" else f"_{field}"
    results[k][f"reward{suffix}"] = float(r[head_index])
    if r.shape[0] > 1:
      results[k][f"outputs{suffix}"] = [float(x) for x in r]
  return results, truncated


def score_file(model: str, input_path: str | Path, output_path: str | Path, *,
               batch_size: int = 8, max_length: int = 4096, head_index: int = 0) -> dict[str, int]:
  """Scores every row of `input_path` with reward model `model`; writes jsonl to `output_path`."""
  rows = load_response_rows(input_path)  # before the model: bad rows fail in seconds
  pre = runs.load_model(model)
  if pre.num_labels is None:
    raise DataError(f"{model} has no reward head: score needs a reward model "
                    "(LlamaForSequenceClassification, or a trained workdir exported to one)")
  results, truncated = score_rows(pre, rows, batch_size=batch_size, max_length=max_length,
                                  head_index=head_index)
  with open(output_path, "w", encoding="utf-8") as f:
    for row in results:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return {"scored_rows": len(results), "truncated_rows": truncated}

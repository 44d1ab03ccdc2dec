"""Score jsonl rows with a reward model.

  python -m helpsteer_jax.score --model SOURCE --input IN.jsonl --output OUT.jsonl

Each row has `prompt` (a string or a list of chat messages) and either `chosen`/`rejected` or
`response` (strings, or one-message assistant lists). Every conversation is rendered once with the
tokenizer's chat template and tokenised without adding special tokens again (no double BOS), by
the training pipeline's encoder: a conversation over --max-length loses its oldest turns first.
Output rows are the input rows plus `reward_chosen`/`reward_rejected` or `reward` (the head output
`--head-index`; all outputs under `outputs_*` when the head has several), in input order.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.data.chat import check_response, message_list, prompt_messages
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.reading import text_lines
from helpsteer_jax.data.records import BAD_INPUT, DataError, error_line
from helpsteer_jax.models import LlamaRewardModel, load_pretrained


ScoreError = DataError  # bad input: the message starts with file:line


def response_text(value: Any, source: str, line: int, column: str) -> str:
  """A response given as a string or as a one-message assistant list (TRL conversational)."""
  if isinstance(value, list):
    messages = message_list(value, source, line, column)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
      raise ScoreError(f"{source}:{line}: {column} must be one assistant message")
    value = messages[0]["content"]
  return check_response(value, source, line, column)


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
  """(line number, row) of a jsonl file; a missing file, bad bytes or bad JSON: `path:line`."""
  if not Path(path).is_file():
    raise ScoreError(f"{path}: no such file")
  rows = []
  for line_no, line in text_lines(path):  # UTF-8, a bad byte named by its line
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ScoreError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
    if not isinstance(row, dict):
      raise ScoreError(f"{path}:{line_no}: a row must be a JSON object")
    rows.append((line_no, row))
  return rows


def _fields(row: dict[str, Any], where: str) -> tuple[str, ...]:
  if "prompt" not in row:
    raise ScoreError(f"{where}: missing column 'prompt'")
  if "chosen" in row or "rejected" in row:
    if "chosen" not in row or "rejected" not in row:
      raise ScoreError(f"{where}: needs both 'chosen' and 'rejected'")
    return ("chosen", "rejected")
  if "response" in row:
    return ("response",)
  raise ScoreError(f"{where}: needs 'chosen' and 'rejected', or 'response'")


class Scorer:
  """Batched, length-sorted scoring with one compiled shape per padded length.

  By default it applies a reward model: `fn(params, ids, mask, starts) -> [B, ...]` replaces that
  (for example response log-probs of a causal LM; `starts` [B] are the per-row response starts
  passed to `__call__`, zeros when not given). With `mesh`, the batch dimension is sharded over
  all of the mesh's devices (batch_size rounded up to a multiple of them) and params replicated.
  `progress(n)` is called with the number of sequences after each batch.
  """

  def __init__(self, model: LlamaRewardModel | None, params: Any, pad_id: int,
               batch_size: int = 8, pad_to_multiple_of: int = 64, *,
               fn: Callable[..., Any] | None = None, mesh: Any = None):
    if mesh is not None:
      batch_size = -(-batch_size // mesh.size) * mesh.size
    self.batch_size, self.multiple, self.pad_id = batch_size, pad_to_multiple_of, pad_id
    if fn is None:
      fn = lambda p, i, m, s: model.apply({"params": p}, i, m)  # pylint: disable=unnecessary-lambda-assignment
    self._apply = jax.jit(fn)
    self._batch_sharding = None
    if mesh is not None:
      from helpsteer_jax import sharding  # pylint: disable=g-import-not-at-top
      self._batch_sharding = sharding.batch_sharding(mesh)
      params = jax.device_put(params, sharding.replicated(mesh))
    self.params = params

  def _put(self, a: np.ndarray) -> jax.Array:
    if self._batch_sharding is None:
      return jnp.asarray(a)
    return jax.device_put(a, self._batch_sharding)

  def __call__(self, sequences: Sequence[Sequence[int]], starts: Sequence[int] | None = None,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[np.ndarray | None] = [None] * len(sequences)
    for start in range(0, len(order), self.batch_size):
      idx = order[start:start + self.batch_size]
      longest = max(len(sequences[i]) for i in idx)
      length = -(-longest // self.multiple) * self.multiple
      ids = np.full((self.batch_size, length), self.pad_id, np.int32)
      mask = np.zeros((self.batch_size, length), np.int32)
      first = np.zeros((self.batch_size,), np.int32)
      for row, i in enumerate(idx):
        ids[row, :len(sequences[i])] = sequences[i]
        mask[row, :len(sequences[i])] = 1
        if starts is not None:
          first[row] = starts[i]
      mask[len(idx):, 0] = 1  # filler rows (discarded) still need one real token
      rewards = np.asarray(self._apply(self.params, self._put(ids), self._put(mask),
                                       self._put(first)))
      for row, i in enumerate(idx):
        out[i] = rewards[row]
      if progress is not None:
        progress(len(idx))
    return np.stack(out) if out else np.zeros((0, 1), np.float32)


def score_file(model_source: str, input_path: str | Path, output_path: str | Path, *,
               batch_size: int = 8, max_length: int = 4096, head_index: int = 0) -> dict[str, int]:
  input_path = Path(input_path)
  rows = read_rows(input_path)  # before the model: a bad file fails in seconds, not after a load
  pre = load_pretrained(model_source)
  if pre.num_labels is None:
    raise ScoreError(f"{model_source} has no reward head: score needs a reward model "
                     "(LlamaForSequenceClassification, or a trained workdir exported to one)")
  tok = pre.tokenizer
  # The training pipeline's encoder: rendered once, no added specials, oldest turns cut first.
  encoder = ChatEncoder(tok, max_length)
  seqs: list[np.ndarray] = []
  slots: list[tuple[int, str]] = []  # (row number in `rows`, field) of each sequence
  truncated = 0
  for k, (line_no, row) in enumerate(rows):
    src = str(input_path)
    fields = _fields(row, f"{src}:{line_no}")
    messages = prompt_messages(row["prompt"], src, line_no)
    responses = [response_text(row[f], src, line_no, f) for f in fields]
    encoded, cut = encoder.encode(messages, responses)
    if encoded is None:
      raise ScoreError(f"{src}:{line_no}: longer than --max-length {max_length} tokens even with "
                       "only the final user turn")
    truncated += bool(cut)
    seqs += [e.input_ids for e in encoded]
    slots += [(k, f) for f in fields]
  scorer = Scorer(LlamaRewardModel(pre.config, num_labels=pre.num_labels), pre.reward_params(),
                  pad_id=tok.pad_token_id, batch_size=batch_size)
  rewards = scorer(seqs)
  results: list[dict[str, Any]] = [dict(row) for _, row in rows]
  for (k, field), r in zip(slots, rewards):
    suffix = "" if field == "response" else f"_{field}"
    results[k][f"reward{suffix}"] = float(r[head_index])
    if r.shape[0] > 1:
      results[k][f"outputs{suffix}"] = [float(x) for x in r]
  with open(output_path, "w", encoding="utf-8") as f:
    for row in results:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return {"scored_rows": len(results), "truncated_rows": truncated}


def main(argv: Iterable[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="reward model source (HF dir, gguf:PATH, ...)")
  ap.add_argument("--input", required=True)
  ap.add_argument("--output", required=True)
  ap.add_argument("--batch-size", type=int, default=8)
  ap.add_argument("--max-length", type=int, default=4096)
  ap.add_argument("--head-index", type=int, default=0, help="head output used as `reward`")
  args = ap.parse_args(argv)
  try:
    summary = score_file(args.model, args.input, args.output, batch_size=args.batch_size,
                         max_length=args.max_length, head_index=args.head_index)
  except (*BAD_INPUT, ValueError) as e:  # bad rows (ScoreError), a missing or broken model
    sys.exit(error_line(e))
  print(json.dumps({**summary, "output": args.output}))


if __name__ == "__main__":
  main()

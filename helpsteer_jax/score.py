"""Score jsonl rows with a reward model.

  python -m helpsteer_jax.score --model SOURCE --input IN.jsonl --output OUT.jsonl

Each row has `prompt` (a string or a list of chat messages) and either `chosen`/`rejected` or
`response` (strings, or lists of assistant messages). Every conversation is rendered once with the
tokenizer's chat template and tokenised without adding special tokens again (no double BOS).
Output rows are the input rows plus `reward_chosen`/`reward_rejected` or `reward` (the head output
`--head-index`; all outputs under `outputs_*` when the head has several), in input order.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import LlamaRewardModel, load_pretrained


class ScoreError(ValueError):
  pass


def conversation(prompt: Any, response: Any, where: str) -> list[dict[str, str]]:
  """Chat messages for a prompt (string or messages) followed by a response."""
  if isinstance(prompt, str):
    messages = [{"role": "user", "content": prompt}]
  elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m and "content" in m
                                        for m in prompt):
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
  else:
    raise ScoreError(f"{where}: 'prompt' must be a string or a list of {{role, content}} messages")
  if isinstance(response, str):
    if not response.strip():
      raise ScoreError(f"{where}: empty response")
    return messages + [{"role": "assistant", "content": response}]
  if isinstance(response, list) and response and all(
      isinstance(m, dict) and m.get("role") == "assistant" for m in response):
    return messages + [{"role": "assistant", "content": m["content"]} for m in response]
  raise ScoreError(f"{where}: a response must be a non-empty string or assistant messages")


def encode(tokenizer, messages: list[dict[str, str]], max_length: int, where: str) -> list[int]:
  text = tokenizer.apply_chat_template(messages, tokenize=False)
  ids = tokenizer(text, add_special_tokens=False)["input_ids"]
  if len(ids) > max_length:
    raise ScoreError(f"{where}: {len(ids)} tokens exceed --max-length {max_length}")
  return ids


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
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
  """Batched, length-sorted reward scoring with one compiled shape per padded length."""

  def __init__(self, model: LlamaRewardModel, params: Any, pad_id: int, batch_size: int = 8,
               pad_to_multiple_of: int = 64):
    self.batch_size, self.multiple, self.pad_id = batch_size, pad_to_multiple_of, pad_id
    self._apply = jax.jit(lambda p, i, m: model.apply({"params": p}, i, m))
    self.params = params

  def __call__(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    order = np.argsort([len(s) for s in sequences], kind="stable")
    out: list[np.ndarray | None] = [None] * len(sequences)
    for start in range(0, len(order), self.batch_size):
      idx = order[start:start + self.batch_size]
      longest = max(len(sequences[i]) for i in idx)
      length = -(-longest // self.multiple) * self.multiple
      ids = np.full((self.batch_size, length), self.pad_id, np.int32)
      mask = np.zeros((self.batch_size, length), np.int32)
      for row, i in enumerate(idx):
        ids[row, :len(sequences[i])] = sequences[i]
        mask[row, :len(sequences[i])] = 1
      mask[len(idx):, 0] = 1  # filler rows (discarded) still need one real token
      rewards = np.asarray(self._apply(self.params, jnp.asarray(ids), jnp.asarray(mask)))
      for row, i in enumerate(idx):
        out[i] = rewards[row]
    return np.stack(out) if out else np.zeros((0, 1), np.float32)


def score_file(model_source: str, input_path: str | Path, output_path: str | Path, *,
               batch_size: int = 8, max_length: int = 4096, head_index: int = 0) -> int:
  input_path = Path(input_path)
  pre = load_pretrained(model_source)
  if pre.num_labels is None:
    raise ScoreError(f"{model_source} has no reward head: score needs a reward model "
                     "(LlamaForSequenceClassification, or a trained workdir exported to one)")
  tok = pre.tokenizer
  rows = read_rows(input_path)
  seqs: list[list[int]] = []
  slots: list[tuple[int, str]] = []  # (row number in `rows`, field) of each sequence
  for k, (line_no, row) in enumerate(rows):
    where = f"{input_path}:{line_no}"
    for field in _fields(row, where):
      seqs.append(encode(tok, conversation(row["prompt"], row[field], where), max_length, where))
      slots.append((k, field))
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
  return len(results)


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
    n = score_file(args.model, args.input, args.output, batch_size=args.batch_size,
                   max_length=args.max_length, head_index=args.head_index)
  except ScoreError as e:
    sys.exit(f"error: {e}")
  print(json.dumps({"scored_rows": n, "output": args.output}))


if __name__ == "__main__":
  main()

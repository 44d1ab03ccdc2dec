"""Prompts for RLHF: a prompt-only jsonl, or the prompts of any ratings or preference source.

  load_prompts({"format": "prompts", "path": "prompts.jsonl"})            # a `prompt` column
  load_prompts({"format": "helpsteer_ratings", "path": ".../helpsteer_v1_sample.jsonl",
                "split": "train"})                                        # HelpSteer prompts
  load_prompts({"format": "helpsteer2_preference", "path": "nvidia/HelpSteer2"})

Every reader of helpsteer_jax.data works (the records' prompt conversations are kept, each distinct
prompt once, in file order). A `prompt` is a string (one user turn) or a list of messages.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from helpsteer_jax.data import DataSpec, load_preferences, load_ratings
from helpsteer_jax.data.chat import prompt_messages
from helpsteer_jax.data.reading import read_split, require
from helpsteer_jax.data.records import Counts, DataError, Message
from helpsteer_jax.data.spec import FORMATS


def _prompt_file(spec: Mapping[str, Any]) -> list[list[Message]]:
  counts = Counts(source=str(spec["path"]))
  out = []
  rows = read_split(spec["path"], spec.get("split"), counts=counts,
                    skip_invalid=bool(spec.get("skip_invalid", False)),
                    validation_fraction=float(spec.get("validation_fraction", 0.0)),
                    prompt_key=lambda row: str(row.get("prompt", "")))
  for source, row_no, row in rows:
    require(row, ("prompt",), source, row_no)
    out.append(prompt_messages(row["prompt"], source, row_no))
  return out


def load_prompts(spec: Mapping[str, Any], limit: int = 0) -> list[list[Message]]:
  """Distinct prompt conversations (each ends with a user turn) of a source, in file order."""
  spec = dict(spec.to_dict() if hasattr(spec, "to_dict") else spec)
  fmt = spec.get("format")
  if fmt == "prompts":
    convs = _prompt_file(spec)
  elif fmt in FORMATS:
    if FORMATS[fmt].kind == "ratings":
      records, _ = load_ratings(spec)
    else:
      records, _ = load_preferences(DataSpec.create(spec))
    convs = [r.messages for r in records]
  else:
    raise DataError(f"unknown prompt format {fmt!r}; use 'prompts' or one of {sorted(FORMATS)}")
  seen, out = set(), []
  for messages in convs:
    key = json.dumps(messages, sort_keys=True)
    if key not in seen:
      seen.add(key)
      out.append(messages)
  if not out:
    raise DataError(f"{spec.get('path')}: no prompts")
  return out[:limit] if limit and limit > 0 else out


def encode_prompts(prompts: list[list[Message]], tokenizer: Any, max_length: int,
                   limit: int = 0) -> tuple[list[list[Message]], list[np.ndarray], int]:
  """Token ids of each prompt rendered with the generation prompt; drops (and counts) prompts
  longer than `max_length` tokens. With `limit` > 0, stops at the first `limit` prompts that fit
  (a fixed evaluation set of that size; the count is of the prompts dropped on the way).
  Returns (kept prompts, their ids, number dropped)."""
  kept, ids, dropped = [], [], 0
  for messages in prompts:
    if limit and len(kept) == limit:
      break
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    seq = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], np.int32)
    if len(seq) <= max_length:
      kept.append(messages)
      ids.append(seq)
    else:
      dropped += 1
  return kept, ids, dropped

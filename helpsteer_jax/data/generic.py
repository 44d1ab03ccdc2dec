"""Generic binary preference data: TRL-style chosen/rejected columns and HH-RLHF transcripts.

TRL's preference formats (`trl` docs, "dataset formats"): an explicit `prompt` (string or
messages) with `chosen`/`rejected` replies (strings, or a one-message assistant list), or an
implicit prompt, where `chosen`/`rejected` are whole conversations that share everything but the
final assistant reply. RewardBench (`prompt`, `chosen`, `rejected` strings) is the explicit form.
HH-RLHF stores two whole transcripts; their shared prefix is the prompt.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional

from helpsteer_jax.data import chat
from helpsteer_jax.data.reading import Row, parse_rows, require
from helpsteer_jax.data.records import Counts, DataError, Message, PreferencePair, where


def _reply(value: Any, source: str, row: int, column: str) -> str:
  """A reply given as a string or as a list holding one assistant message."""
  if isinstance(value, list):
    msgs = chat.message_list(value, source, row, column)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
      raise DataError(f"{where(source, row)}: with a prompt column, {column} must be one "
                      f"assistant reply")
    value = msgs[0]["content"]
  return chat.check_response(value, source, row, column)


def _strength(row: dict[str, Any], column: Optional[str], source: str, row_no: int) -> float:
  if column is None:
    return 1.0
  require(row, (column,), source, row_no)
  v = row[column]
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
    raise DataError(f"{where(source, row_no)}: {column} must be a finite number >= 0 (the "
                    f"chosen reply is the better one), got {v!r}")
  return float(v)


def _shared_prompt(chosen: list[Message], rejected: list[Message], source: str,
                   row: int) -> tuple[list[Message], str, str]:
  """Prompt and the two final replies of two conversations that differ only in their last turn."""
  p_c, r_c = chat.split_last_reply(chosen, source, row, "chosen")
  p_r, r_r = chat.split_last_reply(rejected, source, row, "rejected")
  if p_c != p_r:
    raise DataError(f"{where(source, row)}: chosen and rejected differ before their final reply")
  return chat.check_prompt(p_c, source, row), r_c, r_r


def load_chosen_rejected(rows: Iterator[Row], counts: Counts, *, skip_invalid: bool = False,
                         strength_column: Optional[str] = None) -> list[PreferencePair]:
  """TRL-style pairs (explicit or implicit prompt); strength from `strength_column`, else 1."""

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("chosen", "rejected"), source, row_no)
    strength = _strength(row, strength_column, source, row_no)
    if row.get("prompt") is not None:
      messages = chat.prompt_messages(row["prompt"], source, row_no)
      chosen = _reply(row["chosen"], source, row_no, "chosen")
      rejected = _reply(row["rejected"], source, row_no, "rejected")
    elif isinstance(row["chosen"], list):
      messages, chosen, rejected = _shared_prompt(
          chat.message_list(row["chosen"], source, row_no, "chosen"),
          chat.message_list(row["rejected"], source, row_no, "rejected"), source, row_no)
    else:
      raise DataError(f"{where(source, row_no)}: no 'prompt' column, so chosen and rejected must "
                      f"be message lists (use format 'hh_rlhf' for Human:/Assistant: transcripts)")
    chosen = chat.check_response(chosen, source, row_no, "chosen")
    rejected = chat.check_response(rejected, source, row_no, "rejected")
    return [PreferencePair(messages, chosen, rejected, strength, source, row_no)]

  return parse_rows(rows, parse, counts, skip_invalid)


def load_hh_rlhf(rows: Iterator[Row], counts: Counts, *,
                 skip_invalid: bool = False) -> list[PreferencePair]:
  """Anthropic HH-RLHF: two transcripts, the shared prefix is the prompt; strength 1."""

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("chosen", "rejected"), source, row_no)
    messages, chosen, rejected = _shared_prompt(
        chat.hh_messages(row["chosen"], source, row_no, "chosen"),
        chat.hh_messages(row["rejected"], source, row_no, "rejected"), source, row_no)
    chosen = chat.check_response(chosen, source, row_no, "chosen")
    rejected = chat.check_response(rejected, source, row_no, "rejected")
    return [PreferencePair(messages, chosen, rejected, 1.0, source, row_no)]

  return parse_rows(rows, parse, counts, skip_invalid)


def hh_prompt_key(row: dict[str, Any]) -> str:
  """The prompt part of an HH transcript (for a stable train/validation split by prompt)."""
  text = row.get("chosen") if isinstance(row, dict) else None
  return text[:text.rfind("\n\nAssistant:")] if isinstance(text, str) else ""

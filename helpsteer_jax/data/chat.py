"""Turning the conversation encodings of the sources into chat messages, and checking them.

Every loader ends with a prompt conversation (a list of {"role", "content"} ending with a user
turn) plus response strings, so the model's own chat template can render it later. HelpSteer2 joins
turns with NeMo's `<extra_id_1>` markers; HH-RLHF writes whole "\\n\\nHuman: ...\\n\\nAssistant: ..."
transcripts; TRL data uses message lists; the arena stores JSON-encoded lists of turns.
"""
from __future__ import annotations

import json
import re
from typing import Any

from helpsteer_jax.data.records import DataError, Message, where

ROLES = ("system", "user", "assistant")
# HelpSteer2 multi-turn prompts: "turn 1\n<extra_id_1>Assistant\nreply 1\n<extra_id_1>User\nturn 2"
_HELPSTEER_TURN = re.compile(r"\n<extra_id_1>(User|Assistant)\n")
# HH-RLHF transcripts; the space after the colon is absent when a turn is empty.
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def helpsteer_messages(prompt: Any, source: str, row: int) -> list[Message]:
  """HelpSteer2's prompt string (multi-turn joined with `<extra_id_1>` markers) as messages."""
  if not isinstance(prompt, str):
    raise DataError(f"{where(source, row)}: prompt must be a string, got {type(prompt).__name__}")
  parts = _HELPSTEER_TURN.split(prompt)
  # split() alternates text and captured role names: [text, role, text, role, text, ...]
  messages = [{"role": "user", "content": parts[0]}]
  for role, text in zip(parts[1::2], parts[2::2]):
    messages.append({"role": role.lower(), "content": text})
  return check_prompt(messages, source, row)


def hh_messages(transcript: Any, source: str, row: int, column: str) -> list[Message]:
  """An HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as messages."""
  if not isinstance(transcript, str):
    raise DataError(f"{where(source, row)}: {column} must be a transcript string")
  parts = _HH_TURN.split(transcript)
  if parts[0].strip() or len(parts) < 3:
    raise DataError(f"{where(source, row)}: {column} is not a '\\n\\nHuman: ...\\n\\nAssistant: "
                    f"...' transcript")
  role = {"Human": "user", "Assistant": "assistant"}
  return [{"role": role[r], "content": t} for r, t in zip(parts[1::2], parts[2::2])]


def split_last_reply(messages: list[Message], source: str, row: int,
                     column: str) -> tuple[list[Message], str]:
  """(prompt messages, final assistant reply) of a whole conversation."""
  if not messages or messages[-1]["role"] != "assistant":
    raise DataError(f"{where(source, row)}: {column} must end with an assistant turn")
  return messages[:-1], messages[-1]["content"]


def prompt_messages(prompt: Any, source: str, row: int) -> list[Message]:
  """A prompt given as a string (one user turn) or as a list of messages."""
  if isinstance(prompt, str):
    return check_prompt([{"role": "user", "content": prompt}], source, row)
  return check_prompt(message_list(prompt, source, row, "prompt"), source, row)


def message_list(value: Any, source: str, row: int, column: str) -> list[Message]:
  """A list of {"role", "content"} dicts with known roles and string contents (copied)."""
  if not isinstance(value, list) or not value:
    raise DataError(f"{where(source, row)}: {column} must be a non-empty list of messages")
  out = []
  for m in value:
    if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
      raise DataError(f"{where(source, row)}: {column} has a bad message {m!r:.80}")
    out.append({"role": m["role"], "content": m["content"]})
  return out


def json_turns(value: Any, source: str, row: int, column: str) -> list[str]:
  """The arena's JSON-encoded list of turn strings."""
  if isinstance(value, str):
    try:
      value = json.loads(value)
    except json.JSONDecodeError as e:
      raise DataError(f"{where(source, row)}: {column} is not valid JSON ({e.msg})") from e
  if not (isinstance(value, list) and value and all(isinstance(t, str) for t in value)):
    raise DataError(f"{where(source, row)}: {column} must be a non-empty list of strings")
  return value


def check_prompt(messages: list[Message], source: str, row: int) -> list[Message]:
  """The prompt must end with a non-empty user turn; system turns only at the start."""
  if not messages or messages[-1]["role"] != "user":
    raise DataError(f"{where(source, row)}: the prompt must end with a user turn")
  if not messages[-1]["content"].strip():
    raise DataError(f"{where(source, row)}: the final user turn is empty")
  seen_other = False
  for m in messages:
    if m["role"] == "system" and seen_other:
      raise DataError(f"{where(source, row)}: a system message after the first turn")
    seen_other |= m["role"] != "system"
  return messages


def check_response(response: Any, source: str, row: int, column: str) -> str:
  if not isinstance(response, str):
    raise DataError(f"{where(source, row)}: {column} must be a string, got "
                    f"{type(response).__name__}")
  if not response.strip():
    raise DataError(f"{where(source, row)}: {column} is empty")
  return response

"""The rows the evaluation commands score, read through the data pipeline's readers.

Two kinds: *pairs* (`evaluate`: `prompt`, `chosen`, `rejected`, optionally `subset`, `id` and a
`strength`/`margin` column, as in RewardBench) and *response rows* (`score`: `prompt` with either
`chosen`/`rejected` or one `response`). A prompt is a string or a list of chat messages; a
response is a string or a one-message assistant list (TRL's conversational form).

Files are read by `data.reading`: jsonl, json (an array), either gzipped, or parquet, UTF-8, each
row named `file:line` (a JSON array's rows by position) in every error. A name that is not a
local file of those kinds is a Hugging Face dataset id (RewardBench: `allenai/reward-bench`,
split `filtered`); its rows are named `id[split]:row`.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from helpsteer_jax.data.chat import check_response, message_list, prompt_messages
from helpsteer_jax.data.reading import Row, is_local_file, read_rows, read_split
from helpsteer_jax.data.records import Counts, DataError, Message, where

STRENGTH_COLUMNS = ("strength", "margin")


def response_text(value: Any, source: str, line: int, column: str) -> str:
  """A response given as a string or as a one-message assistant list (TRL conversational)."""
  if isinstance(value, list):
    messages = message_list(value, source, line, column)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
      raise DataError(f"{where(source, line)}: {column} must be one assistant message")
    value = messages[0]["content"]
  return check_response(value, source, line, column)


def read_bench_rows(source: str, split: Optional[str], limit: Optional[int] = None
                    ) -> Iterator[Row]:
  """The rows of a local file (named as `source` is written), or of split `split` of a hub
  dataset (e.g. allenai/reward-bench-2, split "test": needs the network or the hub cache)."""
  if is_local_file(source):
    rows = read_rows(source, counts=Counts(), name=source)
  else:
    rows = read_split(source, split, counts=Counts(),
                      prompt_key=lambda row: str(row.get("prompt", "")))
  return itertools.islice(rows, limit)


def row_object(row: Any, source: str, line: int, columns: Sequence[str] = ()) -> dict[str, Any]:
  """`row` as a dict holding every one of `columns` (not None); a DataError naming source:line."""
  if not isinstance(row, dict):  # a JSON array's element (jsonl lines are checked on reading)
    raise DataError(f"{where(source, line)}: a row must be a JSON object")
  for col in columns:
    if row.get(col) is None:
      raise DataError(f"{where(source, line)}: missing column '{col}'")
  return row


# ----------------------------------------------------------------------------- pairs
@dataclasses.dataclass
class Pair:
  id: str
  subset: Optional[str]
  messages: list[Message]
  chosen: str
  rejected: str
  strength: Optional[float]
  source: str
  line: int


def parse_pair(row: Any, source: str, line: int) -> Pair:
  """One row as a Pair; a DataError naming `source:line` when a column is missing or bad."""
  row = row_object(row, source, line, ("prompt", "chosen", "rejected"))
  subset = row.get("subset")
  if subset is not None and not isinstance(subset, str):
    raise DataError(f"{where(source, line)}: subset must be a string")
  strength = None
  for col in STRENGTH_COLUMNS:
    if row.get(col) is not None:
      try:
        strength = float(row[col])
      except (TypeError, ValueError) as e:
        raise DataError(f"{where(source, line)}: {col} must be a number") from e
      break
  return Pair(id=str(row.get("id", line)), subset=subset,
              messages=prompt_messages(row["prompt"], source, line),
              chosen=response_text(row["chosen"], source, line, "chosen"),
              rejected=response_text(row["rejected"], source, line, "rejected"),
              strength=strength, source=source, line=line)


def load_pairs(source: str, *, split: str = "filtered", limit: Optional[int] = None,
               limit_per_subset: Optional[int] = None) -> list[Pair]:
  """Pairs of a local file, or of split `split` of a hub dataset.

  `limit`: only the first N rows (the rest are not read); `limit_per_subset`: then only the first
  K rows of each subset.
  """
  rows = read_bench_rows(source, split, limit)
  pairs = [parse_pair(row, src, line) for src, line, row in rows]
  if limit_per_subset is not None:
    seen: dict[Optional[str], int] = {}
    kept = []
    for p in pairs:
      seen[p.subset] = seen.get(p.subset, 0) + 1
      if seen[p.subset] <= limit_per_subset:
        kept.append(p)
    pairs = kept
  if not pairs:
    raise DataError(f"{source}: no rows")
  return pairs


def choose_mode(pairs: Sequence[Pair], mode: str) -> str:
  """"rewardbench" (sections) or "pairwise"; "auto" is rewardbench when every row has a subset."""
  if mode == "pairwise":
    return "pairwise"
  missing = next((p for p in pairs if p.subset is None), None)
  if mode == "rewardbench":
    if missing is not None:
      raise DataError(f"{where(missing.source, missing.line)}: --mode rewardbench needs a "
                      "'subset' column on every row")
    return "rewardbench"
  return "pairwise" if missing is not None else "rewardbench"


# ----------------------------------------------------------------------------- response rows
@dataclasses.dataclass
class ResponseRow:
  """A row to score: its responses (`chosen`, `rejected` or `response`) after its prompt."""
  row: dict[str, Any]  # the input row, written back with the rewards added
  source: str
  line: int
  messages: list[Message]
  fields: tuple[str, ...]  # ("chosen", "rejected") or ("response",)
  responses: list[str]


def _fields(row: dict[str, Any], source: str, line: int) -> tuple[str, ...]:
  if "prompt" not in row:
    raise DataError(f"{where(source, line)}: missing column 'prompt'")
  if "chosen" in row or "rejected" in row:
    if "chosen" not in row or "rejected" not in row:
      raise DataError(f"{where(source, line)}: needs both 'chosen' and 'rejected'")
    return ("chosen", "rejected")
  if "response" in row:
    return ("response",)
  raise DataError(f"{where(source, line)}: needs 'chosen' and 'rejected', or 'response'")


def parse_response_row(row: Any, source: str, line: int) -> ResponseRow:
  row = row_object(row, source, line)
  fields = _fields(row, source, line)
  return ResponseRow(row=row, source=source, line=line,
                     messages=prompt_messages(row["prompt"], source, line), fields=fields,
                     responses=[response_text(row[f], source, line, f) for f in fields])


def load_response_rows(path: str | Path) -> list[ResponseRow]:
  """Every row of a file (or of every split of a hub dataset), parsed: bad input fails here."""
  return [parse_response_row(row, src, line) for src, line, row in read_bench_rows(str(path), None)]

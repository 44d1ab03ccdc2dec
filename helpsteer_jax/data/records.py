"""The records every loader produces, the counts it reports, and the one data error type.

Records are plain dataclasses holding text, not tokens: tokenisation (`encoding.py`) is a separate
step, so the same records feed any model's chat template. Every record keeps its provenance
(`source` file or hub id, 1-based `row`) so an error or a skip can always name where it came from.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

# HelpSteer's five attributes, in the order of the regression head's outputs.
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class DataError(ValueError):
  """Bad input data; the message starts with `file:row` (or just `file`) of the culprit."""


def where(source: str, row: Optional[int] = None) -> str:
  """`source:row` as used at the start of every DataError message."""
  return source if row is None else f"{source}:{row}"


# Bad input every command ends with one line (`error_line`) instead of a traceback: bad data, and
# a data or model file that is not there.
BAD_INPUT = (DataError, FileNotFoundError)


def error_line(error: BaseException) -> str:
  """`error: <message>` on one line: what a command prints (then exits 1) on bad input."""
  return "error: " + " ".join(str(error).splitlines())


@dataclasses.dataclass
class PreferencePair:
  """A prompt conversation and two responses, `chosen` preferred over `rejected`.

  `strength` = |preference strength| >= 0 (HelpSteer2: 0..3; binary data: 1.0; 0.0 is a tie, kept
  only when the tie policy keeps ties, and then `chosen` is simply response_1).
  `messages` ends with a user turn.
  """
  messages: list[Message]
  chosen: str
  rejected: str
  strength: float
  source: str
  row: int


@dataclasses.dataclass
class RatedExample:
  """A prompt conversation, one response and its attribute ratings (None = not rated)."""
  messages: list[Message]
  response: str
  attributes: dict[str, Optional[float]]
  source: str
  row: int


@dataclasses.dataclass
class Counts:
  """What happened to the rows of one source, printed as a one-line report.

  rows: rows read (of the requested split); kept: records produced (a ratings row can yield
  several matched pairs, so kept may exceed rows); dropped_tie: strength-0 pairs dropped by the
  tie policy (and PandaLM votes with no majority); invalid: bad rows skipped under skip_invalid;
  truncated: records whose oldest prompt turns were cut to fit max_length; too_long: records
  dropped because even the final user turn and the response do not fit; skipped: source-specific
  reasons (e.g. arena conversations whose turns differ between the two sides).
  """
  source: str = ""
  rows: int = 0
  kept: int = 0
  dropped_tie: int = 0
  invalid: int = 0
  truncated: int = 0
  too_long: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)

  def skip(self, reason: str, n: int = 1) -> None:
    self.skipped[reason] = self.skipped.get(reason, 0) + n

  def __add__(self, other: "Counts") -> "Counts":
    names = [s for s in (self.source, other.source) if s]
    skipped = dict(self.skipped)
    for k, v in other.skipped.items():
      skipped[k] = skipped.get(k, 0) + v
    return Counts(source=" + ".join(names), rows=self.rows + other.rows,
                  kept=self.kept + other.kept, dropped_tie=self.dropped_tie + other.dropped_tie,
                  invalid=self.invalid + other.invalid,
                  truncated=self.truncated + other.truncated,
                  too_long=self.too_long + other.too_long, skipped=skipped)

  def report(self) -> str:
    parts = [f"rows={self.rows}", f"kept={self.kept}", f"dropped_tie={self.dropped_tie}",
             f"invalid={self.invalid}", f"truncated={self.truncated}",
             f"too_long={self.too_long}"]
    parts += [f"skipped_{k}={v}" for k, v in sorted(self.skipped.items())]
    return f"{self.source or 'data'}: " + " ".join(parts)

  def __str__(self) -> str:
    return self.report()

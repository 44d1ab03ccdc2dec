"""HelpSteer2 ratings, HelpSteer2 preferences, and matched pairs built from ratings.

Ratings (`nvidia/HelpSteer2` train/validation, HelpSteer v1 has the same schema): prompt,
response and five attributes rated 0..4. Preferences (`data_dir="preference"`): split, prompt,
response_1, response_2, preference_strength in -3..3 (negative: response_1 is better; 0: tie).
Matched pairs: responses to the same prompt with different helpfulness, so one rated dataset feeds
both the regression and the Bradley-Terry paradigm (the paper's matched comparison).
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator, Sequence

from helpsteer_jax.data import chat
from helpsteer_jax.data.reading import Row, number, parse_rows, require
from helpsteer_jax.data.records import ATTRIBUTES, Counts, DataError, PreferencePair, RatedExample

MAX_STRENGTH = 3.0  # HelpSteer2-Preference's scale: 1 slightly, 2 better, 3 much better
RATING_RANGE = (0.0, 4.0)


def load_ratings(rows: Iterator[Row], counts: Counts, *, skip_invalid: bool = False,
                 attributes: Sequence[str] = ATTRIBUTES) -> list[RatedExample]:
  """Rated responses; a null rating becomes None (masked in the loss), out of range is invalid."""
  attributes = tuple(attributes)
  unknown = set(attributes) - set(ATTRIBUTES)
  if unknown:
    raise DataError(f"unknown attribute(s) {sorted(unknown)}; HelpSteer has {ATTRIBUTES}")

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[RatedExample]:
    require(row, ("prompt", "response") + attributes, source, row_no)
    messages = chat.helpsteer_messages(row["prompt"], source, row_no)
    response = chat.check_response(row["response"], source, row_no, "response")
    ratings = {a: number(row[a], a, *RATING_RANGE, source, row_no, allow_none=True)
               for a in attributes}
    return [RatedExample(messages, response, ratings, source, row_no)]

  out = parse_rows(rows, parse, counts, skip_invalid)
  counts.kept = len(out)
  return out


def load_preferences(rows: Iterator[Row], counts: Counts, *,
                     skip_invalid: bool = False) -> list[PreferencePair]:
  """HelpSteer2 preference pairs with strength |preference_strength|; ties keep strength 0."""

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("prompt", "response_1", "response_2", "preference_strength"), source, row_no)
    messages = chat.helpsteer_messages(row["prompt"], source, row_no)
    r1 = chat.check_response(row["response_1"], source, row_no, "response_1")
    r2 = chat.check_response(row["response_2"], source, row_no, "response_2")
    s = number(row["preference_strength"], "preference_strength", -MAX_STRENGTH, MAX_STRENGTH,
               source, row_no)
    # Negative strength means response_1 is better; a tie (0) keeps file order.
    chosen, rejected = (r2, r1) if s > 0 else (r1, r2)
    return [PreferencePair(messages, chosen, rejected, abs(s), source, row_no)]

  return parse_rows(rows, parse, counts, skip_invalid)


def matched_pairs(rows: Iterator[Row], counts: Counts, *,
                  skip_invalid: bool = False) -> list[PreferencePair]:
  """Every two responses to the same prompt, strength = helpfulness difference clipped to 3.

  Equal helpfulness gives a tie (strength 0, left to the tie policy); an unrated response pairs
  with nothing (counted as skipped_unrated). A pair's `row` is the chosen response's row.
  """
  rated = load_ratings(rows, counts, skip_invalid=skip_invalid, attributes=("helpfulness",))
  groups: dict[str, list[RatedExample]] = {}
  for ex in rated:  # dicts keep first-appearance order, so pairs come out in file order
    groups.setdefault(repr(ex.messages), []).append(ex)
  pairs = []
  for group in groups.values():
    unrated = [ex for ex in group if ex.attributes["helpfulness"] is None]
    if unrated:
      counts.skip("unrated", len(unrated))
    group = [ex for ex in group if ex.attributes["helpfulness"] is not None]
    for a, b in itertools.combinations(group, 2):
      diff = b.attributes["helpfulness"] - a.attributes["helpfulness"]
      chosen, rejected = (b, a) if diff > 0 else (a, b)
      pairs.append(PreferencePair(a.messages, chosen.response, rejected.response,
                                  min(abs(diff), MAX_STRENGTH), chosen.source, chosen.row))
  return pairs

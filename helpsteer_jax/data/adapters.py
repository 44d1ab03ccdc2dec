"""Adapters for preference sources with their own schemas: PandaLM, Stack Exchange, Chatbot Arena.

Each turns its native signal into a `PreferencePair` strength on HelpSteer2's 0..3 scale:
  - PandaLM (three human votes, 0 tie / 1 / 2): strength = |votes for 1 - votes for 2|, so
    unanimous is 3 and one-vote majorities are 1; no majority is a tie (strength 0).
  - Stack Exchange (answers with `pm_score`): every two answers of a question; strength = the
    score difference clipped to 1..3; equal scores are ties.
  - Chatbot Arena (winner_model_a / winner_model_b / winner_tie): strength 1, tie 0. A multi-turn
    conversation whose earlier replies differ between the two models has no single shared prompt,
    so it is skipped (counted as skipped_diverged_history).
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

from helpsteer_jax.data import chat
from helpsteer_jax.data.reading import Row, number, parse_rows, require
from helpsteer_jax.data.records import Counts, DataError, PreferencePair, where

MAX_STRENGTH = 3.0


def pandalm_prompt(row: dict[str, Any]) -> str:
  """PandaLM's instruction, followed by its input when there is one."""
  instruction, inp = row.get("instruction") or "", row.get("input") or ""
  return f"{instruction}\n\n{inp}" if str(inp).strip() else str(instruction)


def load_pandalm(rows: Iterator[Row], counts: Counts, *,
                 skip_invalid: bool = False) -> list[PreferencePair]:
  """PandaLM human test set: strength from how many of the three annotators agree."""
  votes_cols = ("annotator1", "annotator2", "annotator3")

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("instruction", "input", "response1", "response2") + votes_cols, source, row_no)
    messages = chat.prompt_messages(pandalm_prompt(row), source, row_no)
    r1 = chat.check_response(row["response1"], source, row_no, "response1")
    r2 = chat.check_response(row["response2"], source, row_no, "response2")
    votes = [row[c] for c in votes_cols]
    if any(v not in (0, 1, 2) or isinstance(v, bool) for v in votes):
      raise DataError(f"{where(source, row_no)}: annotator votes must be 0, 1 or 2, got {votes}")
    margin = votes.count(2) - votes.count(1)
    chosen, rejected = (r2, r1) if margin > 0 else (r1, r2)
    return [PreferencePair(messages, chosen, rejected, float(abs(margin)), source, row_no)]

  return parse_rows(rows, parse, counts, skip_invalid)


def load_stack_exchange(rows: Iterator[Row], counts: Counts, *,
                        skip_invalid: bool = False) -> list[PreferencePair]:
  """Stack Exchange questions: one pair per two answers, strength from the pm_score difference.

  Answer text stays as the site's HTML; the question is the single user turn.
  """

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("question", "answers"), source, row_no)
    messages = chat.prompt_messages(row["question"], source, row_no)
    answers = row["answers"]
    if not isinstance(answers, list):
      raise DataError(f"{where(source, row_no)}: answers must be a list")
    scored = []
    for k, a in enumerate(answers):
      require(a, ("text", "pm_score"), source, row_no)
      text = chat.check_response(a["text"], source, row_no, f"answers[{k}].text")
      scored.append((text, number(a["pm_score"], f"answers[{k}].pm_score", -float("inf"),
                                  float("inf"), source, row_no)))
    pairs = []
    for (t1, s1), (t2, s2) in itertools.combinations(scored, 2):
      (chosen, sc), (rejected, sr) = ((t2, s2), (t1, s1)) if s2 > s1 else ((t1, s1), (t2, s2))
      strength = 0.0 if sc == sr else min(max(sc - sr, 1.0), MAX_STRENGTH)
      pairs.append(PreferencePair(messages, chosen, rejected, strength, source, row_no))
    return pairs

  return parse_rows(rows, parse, counts, skip_invalid)


def load_arena(rows: Iterator[Row], counts: Counts, *,
               skip_invalid: bool = False) -> list[PreferencePair]:
  """lmsys arena-human-preference: JSON-encoded turn lists and one-hot winner columns."""
  winner_cols = ("winner_model_a", "winner_model_b", "winner_tie")

  def parse(source: str, row_no: int, row: dict[str, Any]) -> list[PreferencePair]:
    require(row, ("prompt", "response_a", "response_b") + winner_cols, source, row_no)
    prompts = chat.json_turns(row["prompt"], source, row_no, "prompt")
    replies_a = chat.json_turns(row["response_a"], source, row_no, "response_a")
    replies_b = chat.json_turns(row["response_b"], source, row_no, "response_b")
    if not len(prompts) == len(replies_a) == len(replies_b):
      raise DataError(f"{where(source, row_no)}: prompt, response_a and response_b have "
                      f"different numbers of turns")
    winner = [row[c] for c in winner_cols]
    if sorted(winner) != [0, 0, 1]:
      raise DataError(f"{where(source, row_no)}: exactly one of {winner_cols} must be 1, "
                      f"got {winner}")
    if replies_a[:-1] != replies_b[:-1]:
      counts.skip("diverged_history")
      return []
    messages = []
    for user, reply in zip(prompts[:-1], replies_a[:-1]):
      messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    messages = chat.check_prompt(messages + [{"role": "user", "content": prompts[-1]}],
                                 source, row_no)
    a = chat.check_response(replies_a[-1], source, row_no, "response_a")
    b = chat.check_response(replies_b[-1], source, row_no, "response_b")
    chosen, rejected = (b, a) if winner[1] == 1 else (a, b)
    return [PreferencePair(messages, chosen, rejected, 0.0 if winner[2] == 1 else 1.0, source,
                           row_no)]

  return parse_rows(rows, parse, counts, skip_invalid)

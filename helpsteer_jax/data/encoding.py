"""Tokenisation with the model's chat template, and left truncation of the prompt.

Each conversation (prompt messages + the assistant response) is rendered once with
`apply_chat_template(..., tokenize=False)` and tokenised with `add_special_tokens=False`: the
template already writes whatever BOS/special tokens the model expects, so adding them again would
double them. The prompt/response boundary is the end of the rendered prompt (rendered with the
generation prompt), mapped to tokens through the tokenizer's character offsets; a token that
straddles the boundary counts as prompt.

Too long for `max_length`: the oldest exchanges (a user turn and the replies up to the next user
turn) are removed first, the same number for both sides of a pair so they keep one context. Leading
system messages are kept, because they govern every turn (and templates such as SmolLM2's insert a
default one anyway); the final user turn and the whole response are always kept. A record that
still does not fit is dropped and counted as too_long, never cut inside a turn or a response.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import numpy as np

from helpsteer_jax.data.records import Counts, DataError, Message, PreferencePair, RatedExample


@dataclasses.dataclass
class Encoded:
  """Token ids of one rendered conversation and how many of them are prompt."""
  input_ids: np.ndarray  # int32 [T]
  prompt_len: int


@dataclasses.dataclass
class EncodedPair:
  chosen: Encoded
  rejected: Encoded
  strength: float
  source: str
  row: int

  @property
  def length(self) -> int:
    """The row length of the pair in a [B, 2, L] batch: its longer side."""
    return max(len(self.chosen.input_ids), len(self.rejected.input_ids))


@dataclasses.dataclass
class EncodedRating:
  sequence: Encoded
  attributes: dict[str, Optional[float]]
  source: str
  row: int

  @property
  def length(self) -> int:
    return len(self.sequence.input_ids)


def _common_prefix(a: str, b: str) -> int:
  n = min(len(a), len(b))
  i = 0
  while i < n and a[i] == b[i]:
    i += 1
  return i


def _leading_system(messages: Sequence[Message]) -> int:
  n = 0
  while n < len(messages) and messages[n]["role"] == "system":
    n += 1
  return n


def cut_points(messages: Sequence[Message]) -> list[int]:
  """Indices where the kept prompt may start, least truncation first: every user turn after the
  leading system messages, the final user turn last."""
  return [i for i in range(_leading_system(messages), len(messages))
          if messages[i]["role"] == "user"]


def prompt_candidates(messages: Sequence[Message]) -> list[list[Message]]:
  """The whole prompt, then shorter and shorter ones: leading system messages plus everything
  from a later user turn on; the last holds only the system messages and the final user turn."""
  head = list(messages[:_leading_system(messages)])
  out = [list(messages)]
  for start in cut_points(messages):
    if start > len(head):  # starting at the first turn after the system head changes nothing
      out.append(head + list(messages[start:]))
  return out


class ChatEncoder:
  """Renders and tokenises conversations for one tokenizer and `max_length`."""

  def __init__(self, tokenizer: Any, max_length: int):
    if not getattr(tokenizer, "chat_template", None):
      raise DataError("the tokenizer has no chat_template; reward data is rendered as chat")
    self.tokenizer = tokenizer
    self.max_length = int(max_length)

  def _render(self, prompt: list[Message], responses: Sequence[str]) -> tuple[list[str], list[int]]:
    """Full texts (one per response) and the character index where each response part starts."""
    head = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    texts, bounds = [], []
    for r in responses:
      text = self.tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": r}],
                                                tokenize=False)
      texts.append(text)
      bounds.append(_common_prefix(head, text))
    return texts, bounds

  def _tokenize(self, texts: list[str], bounds: list[int]) -> list[Encoded]:
    tok = self.tokenizer
    if getattr(tok, "is_fast", True):
      enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
      out = []
      for ids, offsets, b in zip(enc["input_ids"], enc["offset_mapping"], bounds):
        n_prompt = sum(1 for start, _ in offsets if start < b)
        out.append(Encoded(np.asarray(ids, np.int32), n_prompt))
      return out
    # Slow tokenizers have no offsets: count the tokens of the rendered prompt on its own.
    enc = tok(texts, add_special_tokens=False)["input_ids"]
    heads = tok([t[:b] for t, b in zip(texts, bounds)], add_special_tokens=False)["input_ids"]
    return [Encoded(np.asarray(ids, np.int32), len(h)) for ids, h in zip(enc, heads)]

  def encode(self, messages: list[Message], responses: Sequence[str], *,
             full_known_too_long: bool = False) -> tuple[Optional[list[Encoded]], bool]:
    """(one Encoded per response, whether the prompt was truncated); (None, _) if too long."""
    candidates = prompt_candidates(messages)
    for k, prompt in enumerate(candidates):
      if k == 0 and full_known_too_long:
        continue
      seqs = self._tokenize(*self._render(prompt, responses))
      if all(len(s.input_ids) <= self.max_length for s in seqs):
        return seqs, k > 0
    return None, len(candidates) > 1

  def encode_many(self, items: list[tuple[list[Message], Sequence[str]]],
                  labels: Optional[Sequence[str]] = None
                  ) -> list[tuple[Optional[list[Encoded]], bool]]:
    """`encode` for many records: one batched tokenizer call for the common (fitting) case.

    `labels` ("file:row" per item) name the record when its template rendering fails.
    """
    texts, bounds, spans = [], [], []
    for k, (messages, responses) in enumerate(items):
      try:
        t, b = self._render(messages, responses)
      except Exception as e:  # jinja raises for conversations a template rejects
        label = labels[k] if labels is not None else f"record {k}"
        raise DataError(f"{label}: the chat template cannot render this conversation "
                        f"({type(e).__name__}: {e})") from e
      spans.append((len(texts), len(texts) + len(t)))
      texts += t
      bounds += b
    seqs = self._tokenize(texts, bounds) if texts else []
    out = []
    for (lo, hi), (messages, responses) in zip(spans, items):
      mine = seqs[lo:hi]
      if all(len(s.input_ids) <= self.max_length for s in mine):
        out.append((mine, False))
      else:  # rare: retry with older turns removed
        out.append(self.encode(messages, responses, full_known_too_long=True))
    return out


def _encode_each(items: list[Any], responses: Callable[[Any], tuple[str, ...]],
                 build: Callable[[Any, list[Encoded]], Any], tokenizer: Any,
                 max_length: int, counts: Optional[Counts]) -> list[Any]:
  """Encode each item's conversation with its responses; drop (and count) those too long."""
  encoder = ChatEncoder(tokenizer, max_length)
  results = encoder.encode_many([(it.messages, responses(it)) for it in items],
                                [f"{it.source}:{it.row}" for it in items])
  out = []
  for it, (seqs, truncated) in zip(items, results):
    if seqs is None:
      _count(counts, too_long=1)
      continue
    _count(counts, truncated=int(truncated))
    out.append(build(it, seqs))
  return out


def encode_pairs(pairs: list[PreferencePair], tokenizer: Any, max_length: int,
                 counts: Optional[Counts] = None) -> list[EncodedPair]:
  """Tokenised pairs; updates `counts` (truncated, too_long, kept) when given."""
  return _encode_each(pairs, lambda p: (p.chosen, p.rejected),
                      lambda p, s: EncodedPair(s[0], s[1], p.strength, p.source, p.row),
                      tokenizer, max_length, counts)


def encode_ratings(examples: list[RatedExample], tokenizer: Any, max_length: int,
                   counts: Optional[Counts] = None) -> list[EncodedRating]:
  """Tokenised rated responses; updates `counts` (truncated, too_long, kept) when given."""
  return _encode_each(examples, lambda ex: (ex.response,),
                      lambda ex, s: EncodedRating(s[0], dict(ex.attributes), ex.source, ex.row),
                      tokenizer, max_length, counts)


def _count(counts: Optional[Counts], *, too_long: int = 0, truncated: int = 0) -> None:
  if counts is not None:
    counts.too_long += too_long
    counts.kept -= too_long
    counts.truncated += truncated

"""LLM-as-a-judge rewards: a causal LM prompted to grade a response, scored two ways.

The prompts. `RUBRIC_PROMPT` is an additive 5-point rubric in the manner of Self-Rewarding
Language Models (Yuan et al. 2024): five criteria, one point each, from "relevant at all" up to
"expert, nothing to improve", so a response earns 0..5 points and the judge ends with
`Score: <points>`. `PAIRWISE_PROMPT` asks which of two responses is better and ends with
`Verdict: A` or `Verdict: B`. Both are `str.format` templates (fields `{prompt}`, `{response}`,
or `{prompt}`, `{response_a}`, `{response_b}`; literal braces doubled), so a config can replace
them; `render` checks the fields.

Scorer 1, sampled (the paper's): sample n judgments, parse each with `parse_score`, average the
scorable ones (`mean_score`). A judgment without a score, with a malformed one or with one
outside the scale is *unscorable*: it is counted by reason, never read as 0, and a response all of
whose judgments are unscorable has no score (None / NaN) rather than a made-up one.

Scorer 2, deterministic: one forward pass over the judge prompt followed by the text that precedes
the score (`score_prefix`, "Score: " by default); at that last position the judge's next-token
distribution restricted to the score tokens t_lo..t_hi ("0".."5" or "1".."5"), renormalised, gives

    p(v) = exp(l_v) / Σ_u exp(l_u),     E[score] = Σ_v v · p(v)        (v over the scale)

with l the logits. `expected_score` is that arithmetic (a pure function of the logits);
`last_token_logits` runs the model once on a left- or right-padded batch and reads the logits at
each row's last real token only (the [B, T, V] logits are never built); `DeterministicJudge`
renders prompts, batches them through `Scorer` and returns expected scores and distributions.
The score tokens are resolved from the tokenizer (`score_token_ids`): each value must add exactly
one token after the prefix, or it is an error naming the value.
"""
from __future__ import annotations

import collections
import dataclasses
import re
import string
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax import runs
from helpsteer_jax.data.records import Message
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models.llama import LlamaForCausalLM, last_token_index
from helpsteer_jax.rlhf.generate import SamplingConfig, eos_ids_of, generate, left_pad

RUBRIC_PROMPT = """\
Review the user's question and the response below, and grade the response with the additive \
5-point scale described here. Points add up; start from 0.
- Add 1 point if the response is relevant to the question and offers some information about it, \
even if it is incomplete or contains some irrelevant content.
- Add a 2nd point if it addresses a substantial part of the question, though it does not fully \
resolve it or give a direct answer.
- Add a 3rd point if it answers the basic elements of the question usefully, whatever its \
flaws of style, organisation or completeness.
- Add a 4th point if it is written from an AI assistant's point of view, addresses the question \
directly and comprehensively, and is well organised and helpful, with at most slight room to be \
clearer, more concise or more focused.
- Add a 5th point if it is an impeccable answer tailored to the question: no extraneous \
content, expert knowledge, and an engaging, insightful, high-quality reply.

<question>{prompt}</question>
<response>{response}</response>

Briefly justify your grade (at most 100 words), then give the total on the last line in the \
form "Score: <points>", where <points> is a whole number from 0 to 5."""

PAIRWISE_PROMPT = """\
Compare two responses to the user's question below and decide which one is better: more \
helpful, correct, relevant and clearly written. Ignore their order and their length as such.

<question>{prompt}</question>
<response_a>{response_a}</response_a>
<response_b>{response_b}</response_b>

Briefly explain your decision, then end with a last line of the form "Verdict: A" or \
"Verdict: B"."""

UNSCORABLE_REASONS = ("missing", "malformed", "out_of_range")


@dataclasses.dataclass(frozen=True)
class ScoreScale:
  """Integer scores lo..hi (the rubric's 0..5 by default; 1..5 for a 5-point Likert prompt)."""
  lo: int = 0
  hi: int = 5

  def __post_init__(self):
    if not 0 <= self.lo < self.hi <= 9:
      raise ValueError(f"a score scale is single digits lo < hi, got {self.lo}..{self.hi}")

  @property
  def values(self) -> np.ndarray:
    return np.arange(self.lo, self.hi + 1, dtype=np.float32)


def render(template: str, **fields: str) -> str:
  """`template` with its fields filled; a field the template needs but is not given is an error."""
  needed = {name for _, name, _, _ in string.Formatter().parse(template) if name}
  missing = needed - set(fields)
  if missing:
    raise ValueError(f"the judge template needs fields {sorted(missing)}; given {sorted(fields)}")
  return template.format(**fields)


def conversation_text(messages: Sequence[Message]) -> str:
  """A prompt as the judge reads it: the question itself, or a transcript of several turns."""
  if len(messages) == 1 and messages[0]["role"] == "user":
    return messages[0]["content"]
  return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


# ----------------------------------------------------------------------------- sampled judgments
@dataclasses.dataclass(frozen=True)
class Judgment:
  score: Optional[float]  # None when unscorable
  reason: Optional[str] = None  # one of UNSCORABLE_REASONS when unscorable


# The last "Score:" of the text; optional markdown emphasis around the value; the value is a
# number, optionally written "N/hi" or "N out of hi". Anything else after "Score:" is malformed.
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(\S*)", re.IGNORECASE)
_VALUE = re.compile(r"^([+-]?\d+(?:\.\d+)?)\**(?:/(\d+))?[.,;)*]*$")
_OUT_OF = re.compile(r"^\s*out\s+of\s+(\d+)", re.IGNORECASE)


def parse_score(text: str, scale: ScoreScale = ScoreScale()) -> Judgment:
  """The score of one sampled judgment, or an unscorable Judgment with its reason."""
  found = list(_SCORE.finditer(text))
  if not found:
    return Judgment(None, "missing")
  last = found[-1]
  m = _VALUE.match(last.group(1))
  if m is None:
    return Judgment(None, "malformed")
  denominator = m.group(2)
  if denominator is None:
    out_of = _OUT_OF.match(text[last.end():])
    denominator = out_of.group(1) if out_of else None
  if denominator is not None and int(denominator) != scale.hi:
    return Judgment(None, "malformed")  # "3/10" on a 0..5 scale is not a score we can read
  value = float(m.group(1))
  if not scale.lo <= value <= scale.hi:
    return Judgment(None, "out_of_range")
  return Judgment(value)


@dataclasses.dataclass
class SampledScore:
  """The mean over a response's scorable judgments (None if none), and what was unscorable."""
  mean: Optional[float]
  scores: list[float]
  unscorable: collections.Counter

  @property
  def num_unscorable(self) -> int:
    return sum(self.unscorable.values())


def mean_score(judgments: Sequence[str], scale: ScoreScale = ScoreScale()) -> SampledScore:
  """Parse n sampled judgments of one response and average the scorable ones."""
  scores, bad = [], collections.Counter()
  for text in judgments:
    j = parse_score(text, scale)
    if j.score is None:
      bad[j.reason] += 1
    else:
      scores.append(j.score)
  return SampledScore(float(np.mean(scores)) if scores else None, scores, bad)


_VERDICT = re.compile(r"verdict\s*[:=]\s*\**\s*\[*\s*(A|B)\b", re.IGNORECASE)


def parse_verdict(text: str) -> Optional[str]:
  """"A" or "B" from the last `Verdict:` line of a pairwise judgment; None if there is none."""
  found = _VERDICT.findall(text)
  return found[-1].upper() if found else None


# ----------------------------------------------------------------------------- deterministic
def expected_score(logits_bv: jax.Array, score_ids: Sequence[int],
                   values: Sequence[float]) -> tuple[jax.Array, jax.Array]:
  """(E[score] [B], p [B, K]) from next-token logits [B, V] restricted to the score tokens."""
  p = score_probs(logits_bv, score_ids)
  return p @ jnp.asarray(values, jnp.float32), p


def score_probs(logits_bv: jax.Array, score_ids: Sequence[int]) -> jax.Array:
  """The next-token distribution renormalised over the score tokens: [B, K]."""
  logits = jnp.asarray(logits_bv, jnp.float32)[:, jnp.asarray(score_ids)]
  return jax.nn.softmax(logits, axis=-1)


def last_token_logits(model: LlamaForCausalLM, params: Any, input_ids: jax.Array,
                      attention_mask: jax.Array) -> jax.Array:
  """Next-token logits [B, V] (float32) at each row's last real token; any padding side."""

  def at_last(m: LlamaForCausalLM, ids: jax.Array, mask: jax.Array) -> jax.Array:
    # [B, 1, D]: the last layer computes only that row (LlamaModel's read_index_bk)
    h_last = m.model(ids, mask, read_index_bk=last_token_index(mask)[:, None])
    out = m.model.attend(h_last) if m.cfg.tie_word_embeddings else m.lm_head(h_last)
    return out[:, 0].astype(jnp.float32)

  return model.apply({"params": params}, input_ids, attention_mask, method=at_last)


def request_text(tokenizer: Any, template: str, messages: Sequence[Message],
                 response: str) -> str:
  """The judge request: `template` filled, as one user turn through the tokenizer's chat template
  (plain text when it has none), with the generation prompt."""
  ask = render(template, prompt=conversation_text(messages), response=response)
  if getattr(tokenizer, "chat_template", None):
    ask = tokenizer.apply_chat_template([{"role": "user", "content": ask}], tokenize=False,
                                        add_generation_prompt=True)
  return ask


def _encode(tokenizer: Any, text: str) -> list[int]:
  return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def score_token_ids(tokenizer: Any, scale: ScoreScale = ScoreScale(),
                    score_prefix: str = "Score: ") -> list[int]:
  """The token each score value adds right after `score_prefix`, lo..hi; an error otherwise."""
  head = _encode(tokenizer, score_prefix)
  ids = []
  for v in range(scale.lo, scale.hi + 1):
    full = _encode(tokenizer, score_prefix + str(v))
    if full[:len(head)] != head or len(full) != len(head) + 1:
      added = full[len(head):] if full[:len(head)] == head else full
      raise ValueError(f"the score {v} is not a single token after {score_prefix!r} for this "
                       f"tokenizer (it encodes as {added}); choose another score_prefix")
    if full[-1] == getattr(tokenizer, "unk_token_id", None):
      raise ValueError(f"the score {v} is the unknown token for this tokenizer")
    ids.append(full[-1])
  if len(set(ids)) != len(ids):
    raise ValueError(f"score values share tokens: {ids}")
  return ids


def judge_fn(model: LlamaForCausalLM, score_ids: Sequence[int]):
  """A `Scorer` fn: the renormalised score-token distribution [B, K] at the last real token."""
  def fn(params, ids, mask, starts):
    del starts
    return score_probs(last_token_logits(model, params, ids, mask), score_ids)

  return fn


@dataclasses.dataclass
class JudgeScores:
  expected: np.ndarray  # [N] float64, NaN where the prompt did not fit max_length
  probs: np.ndarray  # [N, K] over the scale's values (NaN rows likewise)
  too_long: int


class DeterministicJudge:
  """Expected-score judge: one forward pass per response, no sampling.

  The judge prompt is `template` (fields {prompt}, {response}) rendered as one user turn through
  the tokenizer's chat template (plain text when it has none), with the generation prompt, and
  then the tokens of `score_prefix`; its score is E[score] under the next-token distribution
  there. Prompts longer than `max_length` tokens are not scored (NaN, counted in `too_long`).
  """

  def __init__(self, model: LlamaForCausalLM, params: Any, tokenizer: Any, *,
               template: str = RUBRIC_PROMPT, scale: ScoreScale = ScoreScale(),
               score_prefix: str = "Score: ", max_length: int = 2048, batch_size: int = 8,
               pad_to_multiple_of: int = 64, mesh: Optional[jax.sharding.Mesh] = None):
    self.tokenizer, self.template, self.scale = tokenizer, template, scale
    self.score_prefix, self.max_length = score_prefix, max_length
    self.score_ids = score_token_ids(tokenizer, scale, score_prefix)
    self._prefix_ids = _encode(tokenizer, score_prefix)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    self.scorer = Scorer(None, params, pad, batch_size, pad_to_multiple_of,
                         fn=judge_fn(model, self.score_ids), mesh=mesh)

  def ask_text(self, messages: Sequence[Message], response: str) -> str:
    """The rendered judge request, up to and including the chat template's generation prompt."""
    return request_text(self.tokenizer, self.template, messages, response)

  def encode(self, messages: Sequence[Message], response: str) -> list[int]:
    """Token ids ending right before the score token: the request's tokens, then the prefix's.

    Tokenised apart, as if the judge had generated the prefix itself after the generation
    prompt: encoding the joined text could merge the prefix into the template's last word.
    """
    return _encode(self.tokenizer, self.ask_text(messages, response)) + self._prefix_ids

  def __call__(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
               ) -> JudgeScores:
    seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
    keep = [i for i, s in enumerate(seqs) if len(s) <= self.max_length]
    k = len(self.score_ids)
    probs = np.full((len(seqs), k), np.nan)
    if keep:
      probs[keep] = np.asarray(self.scorer([seqs[i] for i in keep]), np.float64).reshape(-1, k)
    expected = probs @ self.scale.values.astype(np.float64)
    return JudgeScores(expected, probs, len(seqs) - len(keep))

  def score_fn(self):
    """This judge as a benchmark ScoreFn (evaluation/response_sets.py): expected scores."""
    return lambda prompts, responses: self(prompts, responses).expected


# ----------------------------------------------------------------------------- sampled judge
@dataclasses.dataclass
class SampledScores:
  mean: np.ndarray  # [N] float64: the mean of each response's scorable judgments, NaN if none
  judgments: list[list[str]]  # the n sampled judgment texts of each response
  unscorable: collections.Counter  # judgments without a readable score, by reason
  too_long: int  # requests longer than max_length (not judged: NaN)


class SampledJudge:
  """The Self-Rewarding paper's scorer: `n` sampled judgments per response (the KV-cache sampler
  of rlhf/generate.py, fixed seed), each parsed by `parse_score`, averaged over the scorable ones.

  The request is the deterministic judge's (`template` as one user turn with the generation
  prompt); the judge writes its reasoning and ends with "Score: <points>". A response none of
  whose judgments is scorable scores NaN (and its judgments are counted by reason), never 0.
  """

  def __init__(self, model: LlamaForCausalLM, params: Any, tokenizer: Any, *,
               template: str = RUBRIC_PROMPT, scale: ScoreScale = ScoreScale(), n: int = 3,
               max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 1.0,
               max_length: int = 2048, batch_size: int = 8, seed: int = 0):
    if n < 1:
      raise ValueError(f"a sampled judge needs n >= 1 judgments per response, got {n}")
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.template, self.scale, self.n = template, scale, int(n)
    self.max_length, self.batch_size, self.seed = max_length, int(batch_size), int(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    self.sc = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                             eos_ids=eos_ids_of(tokenizer.eos_token_id), pad_id=pad)

  def ask_ids(self, messages: Sequence[Message], response: str) -> list[int]:
    return _encode(self.tokenizer, request_text(self.tokenizer, self.template, messages, response))

  def sample(self, requests: Sequence[Sequence[int]]) -> list[list[str]]:
    """`n` judgment texts per request (batches of `batch_size` rows, each request n times)."""
    rows = [r for r in requests for _ in range(self.n)]
    texts: list[str] = []
    for b, start in enumerate(range(0, len(rows), self.batch_size)):
      chunk = rows[start:start + self.batch_size]
      ids, mask = left_pad(chunk, self.sc.pad_id, 64)
      gen = generate(self.params, self.model.cfg, ids, mask,
                     jax.random.fold_in(jax.random.PRNGKey(self.seed), b), self.sc)
      tokens, resp = np.asarray(gen.tokens), np.asarray(gen.response_mask)
      texts += [self.tokenizer.decode(t[m.astype(bool)], skip_special_tokens=True)
                for t, m in zip(tokens, resp)]
    return [texts[i * self.n:(i + 1) * self.n] for i in range(len(requests))]

  def __call__(self, prompts: Sequence[Sequence[Message]], responses: Sequence[str]
               ) -> SampledScores:
    requests = [self.ask_ids(p, r) for p, r in zip(prompts, responses)]
    keep = [i for i, q in enumerate(requests) if len(q) <= self.max_length]
    judged = self.sample([requests[i] for i in keep])
    mean = np.full(len(requests), np.nan)
    judgments: list[list[str]] = [[] for _ in requests]
    bad: collections.Counter = collections.Counter()
    for i, texts in zip(keep, judged):
      s = mean_score(texts, self.scale)
      judgments[i] = list(texts)
      bad.update(s.unscorable)
      if s.mean is not None:
        mean[i] = s.mean
    return SampledScores(mean, judgments, bad, len(requests) - len(keep))

  def score_fn(self):
    """This judge as a benchmark ScoreFn (evaluation/response_sets.py): mean sampled scores."""
    return lambda prompts, responses: self(prompts, responses).mean


JUDGE_SCORERS = ("expected", "sampled")
TEMPLATES = {"rubric": RUBRIC_PROMPT}


def load_judge(source: str, scorer: str = "expected", *, template: str = "rubric",
               samples: int = 3, max_length: Optional[int] = None, batch_size: int = 8,
               dtype: Optional[str] = None, seed: int = 0,
               mesh: Optional[jax.sharding.Mesh] = None) -> "DeterministicJudge | SampledJudge":
  """A causal LM (any source runs.load_model reads) as a rubric judge with `scorer`."""
  if scorer not in JUDGE_SCORERS:
    raise ValueError(f"judge scorer must be one of {JUDGE_SCORERS}, got {scorer!r}")
  text = TEMPLATES.get(template, template)  # a name, or a template string itself
  pre = runs.load_model(source, **({"dtype": dtype} if dtype else {}))
  params = pre.causal_lm_params()
  model = LlamaForCausalLM(pre.config)
  max_length = max_length or pre.config.max_position_embeddings
  if scorer == "expected":
    return DeterministicJudge(model, params, pre.tokenizer, template=text, max_length=max_length,
                              batch_size=batch_size, mesh=mesh)
  return SampledJudge(model, params, pre.tokenizer, template=text, n=samples,
                      max_length=max_length, batch_size=batch_size, seed=seed)

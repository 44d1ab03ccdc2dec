"""Rewards of sampled responses: a reward model, or any Python function.

A reward function takes a `Rollout` (prompts and sampled responses, as ids and as text) and returns
one float per row. `RewardModel` wraps a LlamaRewardModel loaded with `runs.load_model` (a training
workdir, a Hugging Face reward-model directory, ...) or a random preset (smoke tests). It scores
each response exactly as the reward model saw its training data: the conversation rendered with
*its* chat template. When the policy uses the same tokenizer and template, the prompt and response
ids are reused as they are, and only the template's end-of-turn suffix ("<|im_end|>\\n" for
SmolLM2) is appended; otherwise the response is decoded and the conversation re-rendered.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from helpsteer_jax.data.records import Message
from helpsteer_jax.evaluation import judges
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax import runs
from helpsteer_jax.models import LlamaRewardModel


@dataclasses.dataclass
class Rollout:
  """B = prompts x k rows; the k samples of a prompt are adjacent."""
  messages: list[list[Message]]  # prompt conversation of each row
  prompt_ids: np.ndarray  # int32 [B, P], left-padded
  prompt_mask: np.ndarray  # int32 [B, P]
  tokens: np.ndarray  # int32 [B, N]
  response_mask: np.ndarray  # int32 [B, N], 1 up to and including the EOS
  tokenizer: Any = None  # the policy's tokenizer (to decode `tokens`), if any

  def response_texts(self) -> list[str]:
    return [self.tokenizer.decode(t[m.astype(bool)], skip_special_tokens=True)
            for t, m in zip(self.tokens, self.response_mask)]


RewardFn = Callable[[Rollout], np.ndarray]


def _same_tokenizer(a: Any, b: Any) -> bool:
  if a is b:
    return True
  if a is None or b is None:
    return False
  return (getattr(a, "chat_template", None) == getattr(b, "chat_template", None)
          and a.get_vocab() == b.get_vocab())


def _turn_suffix(tok: Any) -> list[int]:
  """Token ids the chat template writes after an assistant reply (e.g. <|im_end|>, "\\n")."""
  marker = "XyZzY"
  text = tok.apply_chat_template([{"role": "user", "content": "a"},
                                  {"role": "assistant", "content": marker}], tokenize=False)
  return list(tok(text[text.rindex(marker) + len(marker):], add_special_tokens=False)["input_ids"])


class RewardModel:
  """r = output `head_index` of a reward model, on each (prompt, response) conversation."""

  def __init__(self, source: str, *, policy_tokenizer: Any = None, head_index: int = 0,
               tokenizer: str = "smollm2", seed: int = 0, batch_size: int = 16,
               pad_to_multiple_of: int = 32):
    src = runs.resolve(source)
    if src.kind == "preset":  # a random reward model (smoke tests): the preset with `tokenizer`
      cfg, tok = runs.preset(src.name, tokenizer)
      model = LlamaRewardModel(cfg, num_labels=1)
      params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 8), jnp.int32)))
      params, num_labels = params["params"], 1
    else:
      pre = runs.load_model(src, scan_layers=False, remat_policy="none")
      cfg, tok, num_labels = pre.config, pre.tokenizer, pre.num_labels
      params = pre.reward_params()
    if not 0 <= head_index < num_labels:
      raise ValueError(f"head_index {head_index} outside the reward head's {num_labels} outputs")
    self.cfg, self.tokenizer, self.head_index = cfg, tok, head_index
    self.reuse_ids = _same_tokenizer(policy_tokenizer, tok)
    self.suffix = _turn_suffix(tok) if self.reuse_ids else []
    eos = cfg.eos_token_id
    self.eos_ids = set([eos] if isinstance(eos, int) else (eos or []))
    self._scorer = Scorer(LlamaRewardModel(cfg, num_labels=num_labels), jax.device_put(params),
                          pad_id=tok.pad_token_id or 0, batch_size=batch_size,
                          pad_to_multiple_of=pad_to_multiple_of)

  def sequences(self, rollout: Rollout) -> list[np.ndarray]:
    """The reward model's token ids for each row's whole conversation."""
    out = []
    if self.reuse_ids:
      for p, pm, t, tm in zip(rollout.prompt_ids, rollout.prompt_mask, rollout.tokens,
                              rollout.response_mask):
        resp = list(t[tm.astype(bool)])
        suffix = self.suffix
        if resp and suffix and resp[-1] == suffix[0]:
          suffix = suffix[1:]  # the sampled EOS is the template's end-of-turn token
        elif resp and resp[-1] in self.eos_ids:
          resp = resp[:-1]
        out.append(np.asarray(list(p[pm.astype(bool)]) + resp + list(suffix), np.int32))
      return out
    for messages, text in zip(rollout.messages, rollout.response_texts()):
      conv = messages + [{"role": "assistant", "content": text}]
      rendered = self.tokenizer.apply_chat_template(conv, tokenize=False)
      out.append(np.asarray(self.tokenizer(rendered, add_special_tokens=False)["input_ids"],
                            np.int32))
    return out

  def score(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Output `head_index` of the reward model for each sequence (float32 [N])."""
    return self._scorer(seqs)[:, self.head_index].astype(np.float32)

  def __call__(self, rollout: Rollout) -> np.ndarray:
    return self.score(self.sequences(rollout))


class JudgeReward:
  """r = an LLM judge's rubric score of each (prompt, response) (evaluation/judges.py).

  `scorer` "expected" (one forward pass) or "sampled" (mean of `samples` sampled judgments). A
  response the judge cannot score (no readable score in any judgment; a request longer than the
  judge's context) gets `unscorable_reward` (by default the rubric's lowest score, 0), and is
  counted: `last_unscorable` after each call, which the RL trainer logs as reward_unscorable.
  """

  def __init__(self, source: str, *, scorer: str = "expected", samples: int = 3,
               unscorable_reward: float = 0.0, batch_size: int = 16, seed: int = 0):
    self.judge = judges.load_judge(source, scorer, samples=samples, batch_size=batch_size,
                                   seed=seed)
    self.scorer, self.fill = scorer, float(unscorable_reward)
    self.last_unscorable = 0

  def __call__(self, rollout: Rollout) -> np.ndarray:
    out = self.judge(rollout.messages, rollout.response_texts())
    scores = np.asarray(out.expected if self.scorer == "expected" else out.mean, np.float64)
    bad = np.isnan(scores)
    self.last_unscorable = int(bad.sum())
    return np.where(bad, self.fill, scores).astype(np.float32)


def token_fraction_reward(token_ids: Sequence[int]) -> RewardFn:
  """A programmatic reward: the fraction of response tokens that are in `token_ids` (tests)."""
  wanted = np.asarray(sorted(set(int(t) for t in token_ids)), np.int32)

  def reward(rollout: Rollout) -> np.ndarray:
    hit = np.isin(rollout.tokens, wanted) & (rollout.response_mask != 0)
    return (hit.sum(-1) / np.maximum(rollout.response_mask.sum(-1), 1)).astype(np.float32)

  return reward

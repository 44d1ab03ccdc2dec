"""LLM-as-a-judge scoring: the rubric parser, the expected-score arithmetic and the one-forward
deterministic judge on a tiny random Llama.

Tolerances: the expected score and distribution from the judge equal a manual computation (full
[T, V] forward of each prompt alone, unpadded, float64 softmax in NumPy) within 1e-5 absolute:
float32 logits, and the judge's batched, padded forward reads one position (its own matmul
shapes), measured differences ~1e-7. Hand-computed arithmetic is checked at 1e-6 (float32).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.evaluation import judges
from helpsteer_jax.evaluation.judges import Judgment, ScoreScale, parse_score
from helpsteer_jax.models import PRESETS, LlamaForCausalLM
from word_tokenizer import word_tokenizer

TINY = PRESETS["tiny"]  # vocab 256, pad 0, bos 1, eos 2


# ----------------------------------------------------------------------------- the parser
@pytest.mark.parametrize("text,expected", [
    ("The response is relevant and complete.\nScore: 4", Judgment(4.0)),
    ("Reasoning...\nScore: 0", Judgment(0.0)),
    ("score:5", Judgment(5.0)),
    ("Score: **3**", Judgment(3.0)),
    ("Score: 4/5", Judgment(4.0)),
    ("Score: 2 out of 5.", Judgment(2.0)),
    ("Score: 3.", Judgment(3.0)),
    ("Score: 2.5", Judgment(2.5)),
    # The last "Score:" wins (a judge that restates the format first).
    ('I must answer as "Score: <points>".\nScore: 1', Judgment(1.0)),
    ("Score: 4\nOn reflection, Score: 2", Judgment(2.0)),
])
def test_parse_well_formed(text, expected):
  assert parse_score(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("A fine answer, I would give it four points.", "missing"),
    ("", "missing"),
    ("Scores vary: 3", "missing"),
    ("Score: four", "malformed"),
    ("Score:", "malformed"),
    ("Score: <points>", "malformed"),
    ("Score: 3/10", "malformed"),  # another scale's denominator
    ("Score: 7", "out_of_range"),
    ("Score: -1", "out_of_range"),
    ("Score: 5.5", "out_of_range"),
])
def test_parse_unscorable_is_counted_never_zero(text, reason):
  j = parse_score(text)
  assert j.score is None and j.reason == reason


def test_parse_on_a_one_to_five_scale():
  assert parse_score("Score: 0", ScoreScale(1, 5)) == Judgment(None, "out_of_range")
  assert parse_score("Score: 1", ScoreScale(1, 5)) == Judgment(1.0)


def test_mean_over_samples_ignores_unscorable():
  s = judges.mean_score(["Score: 4", "no score here", "Score: 2", "Score: 9", "Score: x"])
  assert s.mean == 3.0 and s.scores == [4.0, 2.0]
  assert dict(s.unscorable) == {"missing": 1, "out_of_range": 1, "malformed": 1}
  assert s.num_unscorable == 3
  none = judges.mean_score(["Score: 6", "nothing"])
  assert none.mean is None and none.scores == [] and none.num_unscorable == 2
  assert judges.mean_score([]).mean is None


def test_pairwise_verdict_and_templates():
  assert judges.parse_verdict("A is clearer.\nVerdict: A") == "A"
  assert judges.parse_verdict("Verdict: **B**") == "B"
  assert judges.parse_verdict("Verdict: [[a]]") == "A"
  assert judges.parse_verdict("Both are fine.") is None
  text = judges.render(judges.PAIRWISE_PROMPT, prompt="Q?", response_a="x", response_b="y")
  assert "<response_a>x</response_a>" in text and text.endswith('"Verdict: B".')
  rubric = judges.render(judges.RUBRIC_PROMPT, prompt="What is 2+2?", response="4")
  assert "<question>What is 2+2?</question>" in rubric and "Score: <points>" in rubric
  with pytest.raises(ValueError, match=r"needs fields \['response'\]"):
    judges.render(judges.RUBRIC_PROMPT, prompt="Q")
  # Braces inside a response are content, not fields.
  assert "{x}" in judges.render("{prompt} {response}", prompt="a", response="{x}")


# ----------------------------------------------------------------------------- arithmetic
def test_expected_score_by_hand():
  # Two rows over a 6-token vocabulary; score tokens are ids 5, 3, 4 for values 1, 2, 3.
  logits = np.array([[9.0, 9.0, 9.0, 0.0, math.log(2.0), 0.0],     # p = 1/4, 1/4, 2/4
                     [-9.0, 0.0, 0.0, 5.0, 5.0, 5.0]], np.float32)  # p = 1/3 each
  e, p = judges.expected_score(logits, [5, 3, 4], [1.0, 2.0, 3.0])
  np.testing.assert_allclose(np.asarray(p), [[0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]],
                             atol=1e-6)
  # 1/4 * 1 + 1/4 * 2 + 2/4 * 3 = 2.25;  (1 + 2 + 3) / 3 = 2.
  np.testing.assert_allclose(np.asarray(e), [2.25, 2.0], atol=1e-6)
  # Logits of other tokens never matter; a shift of the score logits neither.
  e2, _ = judges.expected_score(logits + np.array([100, -50, 3, 7, 7, 7], np.float32),
                                [5, 3, 4], [1.0, 2.0, 3.0])
  np.testing.assert_allclose(np.asarray(e2), [2.25, 2.0], atol=1e-5)
  assert ScoreScale().values.tolist() == [0, 1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------- tiny judge
def _tiny_tokenizer(digits=tuple(str(d) for d in range(10))):
  """Word-level over TINY's 256 ids: specials, chat roles, "Score:", digits and w<i> fillers."""
  return word_tokenizer(TINY.vocab_size, ("Score:", *digits))


@pytest.fixture(scope="module")
def params():
  model = LlamaForCausalLM(TINY)
  return nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))["params"]


def test_score_tokens_resolved_from_the_tokenizer():
  tok = _tiny_tokenizer()
  assert judges.score_token_ids(tok) == [7, 8, 9, 10, 11, 12]  # "0".."5" after "Score:"
  assert judges.score_token_ids(tok, ScoreScale(1, 5)) == [8, 9, 10, 11, 12]
  # No space: "Score:3" is one (unknown) word, so the value is not a token of its own.
  with pytest.raises(ValueError, match="score 0 is not a single token after 'Score:'"):
    judges.score_token_ids(tok, score_prefix="Score:")
  with pytest.raises(ValueError, match="score 4 is the unknown token"):
    judges.score_token_ids(_tiny_tokenizer(digits=("0", "1", "2", "3")))


def test_last_token_logits_left_or_right_padded(params):
  model = LlamaForCausalLM(TINY)
  seqs = [[1, 20, 21, 22, 23, 6], [1, 30, 6], [1, 40, 41, 6]]
  apply = jax.jit(model.apply)
  full = [np.asarray(apply({"params": params}, jnp.asarray([s])))[0, -1] for s in seqs]
  t = 8
  right = np.zeros((3, t), np.int32)
  left = np.zeros((3, t), np.int32)
  for i, s in enumerate(seqs):
    right[i, :len(s)] = s
    left[i, t - len(s):] = s
  last_token_logits = jax.jit(judges.last_token_logits, static_argnums=0)  # one trace, both sides
  for ids in (right, left):
    out = np.asarray(last_token_logits(model, params, jnp.asarray(ids),
                                       jnp.asarray((ids != 0).astype(np.int32))))
    assert out.shape == (3, TINY.vocab_size) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack(full), atol=1e-5, rtol=0)


def test_deterministic_judge_end_to_end_equals_manual(params):
  tok = _tiny_tokenizer()
  template = "w5 w6 {prompt} w7 {response} w8"  # a config's own template (words of the vocab)
  judge = judges.DeterministicJudge(LlamaForCausalLM(TINY), params, tok, template=template,
                                    batch_size=2, pad_to_multiple_of=8, max_length=40)
  prompts = [[{"role": "user", "content": "w10 w11"}], [{"role": "user", "content": "w12"}],
             [{"role": "user", "content": "w13 w14 w15"}]]
  responses = ["w20 w21 w22", "w23", "w24 w25"]
  out = judge(prompts, responses)
  assert out.expected.shape == (3,) and out.probs.shape == (3, 6) and out.too_long == 0
  assert np.isfinite(out.expected).all()
  assert ((out.expected >= 0) & (out.expected <= 5)).all()
  np.testing.assert_allclose(out.probs.sum(-1), 1.0, atol=1e-6)
  assert judge.ask_text(prompts[1], responses[1]) == "<s> user: w5 w6 w12 w7 w23 w8 </s> assistant:"
  # The prefix is tokenised on its own (joined, "assistant:Score:" would be one unknown word).
  w = lambda i: 17 + i  # "w<i>" follows the 7 special words and 10 digits
  assert judge.encode(prompts[1], responses[1]) == [1, 4, w(5), w(6), w(12), w(7), w(23), w(8),
                                                    2, 5, 6]
  # Manual: each prompt alone through the full causal LM, the last position's score logits.
  model = LlamaForCausalLM(TINY)
  apply = jax.jit(model.apply)
  for i, (p, r) in enumerate(zip(prompts, responses)):
    ids = judge.encode(p, r)
    assert ids[-1] == 6  # the sequence ends with "Score:", right before the score token
    logits = np.asarray(apply({"params": params}, jnp.asarray([ids])), np.float64)[0, -1]
    sl = logits[[7, 8, 9, 10, 11, 12]]
    prob = np.exp(sl - sl.max())
    prob /= prob.sum()
    np.testing.assert_allclose(out.probs[i], prob, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.expected[i], prob @ np.arange(6), atol=1e-5, rtol=0)
  # Too long for max_length: not scored (NaN), counted, never a number.
  short = judges.DeterministicJudge(model, params, tok, template=template, max_length=12,
                                    batch_size=2, pad_to_multiple_of=8)
  cut = short(prompts, responses)
  assert cut.too_long == 2 and np.isnan(cut.expected[[0, 2]]).all()
  np.testing.assert_allclose(cut.expected[1], out.expected[1], atol=1e-5)
  # As a benchmark ScoreFn.
  np.testing.assert_allclose(judge.score_fn()(prompts, responses), out.expected, atol=1e-12)


# ----------------------------------------------------------------------------- sampled judge
class _Scripted(judges.SampledJudge):
  """The sampler replaced by fixed judgment texts, one list per request (in request order)."""

  def __init__(self, texts, **kw):
    super().__init__(LlamaForCausalLM(TINY), None, _tiny_tokenizer(), **kw)
    self.texts = texts

  def sample(self, requests):
    return [self.texts[i] for i in range(len(requests))]


def test_sampled_judge_averages_the_scorable_judgments():
  judge = _Scripted([["Score: 3", "Score: 5", "no score here"],
                     ["Score: 9", "Score: x", "nothing"],
                     ["Score: 2/5", "Score: 1", "Score: 0"]],
                    n=3, template="{prompt} {response}")
  p = [{"role": "user", "content": "w1"}]
  out = judge([p, p, p], ["w2", "w3", "w4"])
  assert out.mean[0] == 4.0 and np.isnan(out.mean[1]) and out.mean[2] == 1.0
  assert out.unscorable == {"missing": 2, "out_of_range": 1, "malformed": 1}
  assert out.judgments[1] == ["Score: 9", "Score: x", "nothing"] and out.too_long == 0
  np.testing.assert_array_equal(judge.score_fn()([p, p, p], ["w2", "w3", "w4"]), out.mean)


def test_sampled_judge_samples_n_judgments_with_the_kv_cache_sampler(params):
  tok = _tiny_tokenizer()
  judge = judges.SampledJudge(LlamaForCausalLM(TINY), params, tok, template="w5 {prompt} {response}",
                              n=2, max_new_tokens=6, batch_size=3, max_length=30, seed=4)
  prompts = [[{"role": "user", "content": "w10 w11"}]] * 2 + [[{"role": "user",
                                                                 "content": " ".join(["w9"] * 40)}]]
  out = judge(prompts, ["w20", "w21 w22", "w23"])
  assert [len(j) for j in out.judgments] == [2, 2, 0] and out.too_long == 1
  assert all(isinstance(t, str) for j in out.judgments for t in j)
  assert np.isnan(out.mean[2])
  scorable = sum(judges.parse_score(t).score is not None for j in out.judgments for t in j)
  assert sum(out.unscorable.values()) == 4 - scorable  # every judgment accounted for
  again = judge(prompts, ["w20", "w21 w22", "w23"])
  assert again.judgments == out.judgments  # a fixed seed: the same judgments


def test_evaluate_with_a_judge_equals_the_judge_itself(params, tmp_path):
  """`evaluate --judge expected`: each pair right when the chosen response's expected score is
  strictly higher, the scores the DeterministicJudge gives directly."""
  import json  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.evaluation.pair_eval import EvalConfig, evaluate
  from helpsteer_jax.export import export_hf
  tok = _tiny_tokenizer()
  export_hf(params, TINY,
            tmp_path / "judge", task="causal_lm", tokenizer=tok)
  rows = [{"prompt": f"w{10 + i}", "chosen": f"w{20 + i} w{30 + i}", "rejected": f"w{40 + i}",
           "subset": "alpacaeval-easy", "id": i} for i in range(6)]
  data = tmp_path / "pairs.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in rows))
  res = evaluate(EvalConfig(model=str(tmp_path / "judge"), output=str(tmp_path / "out"),
                            data=str(data), judge="expected", batch_size=4, progress=False,
                            max_length=256))
  judge = judges.load_judge(str(tmp_path / "judge"), "expected", max_length=256)
  prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
  c = judge(prompts, [r["chosen"] for r in rows]).expected
  r = judge(prompts, [r["rejected"] for r in rows]).expected
  assert res["pairs"]["scored"] == 6 and res["mode"] == "judge (expected)"
  assert res["accuracy"] == pytest.approx(float(np.mean(c > r)))
  ex = [json.loads(l) for l in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
  np.testing.assert_allclose([e["reward_chosen"] for e in ex], c, atol=1e-6)
  # The reward-bench leaderboard's files: a generative RM, its rubric scores per pair.
  board = json.loads(open(res["leaderboard"]["eval_set_scores"]).read())
  assert board["model_type"] == "Generative RM" and board["id"] == list(range(6))
  assert board["scores_chosen"] == [e["reward_chosen"] for e in ex]
  assert board["results"] == [int(e["correct"]) for e in ex]


def test_judge_as_the_rl_reward(params, tmp_path):
  """rlhf.rewards.JudgeReward: the judge's scores of the rollout's decoded responses; responses
  it cannot score get the configured reward and are counted, never a silent NaN."""
  from helpsteer_jax.export import export_hf  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.rlhf.rewards import JudgeReward, Rollout
  tok = _tiny_tokenizer()
  export_hf(params, TINY, tmp_path / "judge", task="causal_lm", tokenizer=tok)
  prompts = [[{"role": "user", "content": "w10 w11"}], [{"role": "user", "content": "w12"}]]
  tokens = np.asarray([tok.convert_tokens_to_ids(["w20", "w21", "</s>"]),
                       tok.convert_tokens_to_ids(["w22", "</s>", "<pad>"])], np.int32)
  rollout = Rollout(prompts, np.zeros((2, 1), np.int32), np.ones((2, 1), np.int32), tokens,
                    np.asarray([[1, 1, 1], [1, 1, 0]], np.int32), tok)
  expected = JudgeReward(str(tmp_path / "judge"), scorer="expected")
  got = expected(rollout)
  direct = judges.load_judge(str(tmp_path / "judge"), "expected")(prompts, ["w20 w21", "w22"])
  np.testing.assert_allclose(got, direct.expected, atol=1e-5)
  assert expected.last_unscorable == 0
  sampled = JudgeReward(str(tmp_path / "judge"), scorer="sampled", samples=2,
                        unscorable_reward=-1.0)
  out = sampled(rollout)
  mean = judges.load_judge(str(tmp_path / "judge"), "sampled", samples=2)(
      prompts, ["w20 w21", "w22"]).mean
  assert sampled.last_unscorable == int(np.isnan(mean).sum())
  np.testing.assert_allclose(out, np.where(np.isnan(mean), -1.0, mean), atol=1e-6)

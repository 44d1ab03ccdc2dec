"""RewardBench 2 and RM-Bench scoring against hand-computed expectations on small fixtures.

The fixtures (tests/fixtures/) follow the benchmarks' documented schemas: rewardbench2_mini.jsonl
the allenai/reward-bench-2 dataset card's columns (id, prompt, chosen[], rejected[], num_correct,
num_incorrect, total_completions, models, subset, additional_metadata), rm_bench_mini.json the
THU-KEG/RM-Bench README's (id, prompt, chosen[3], rejected[3], domain; a JSON array like its
total_dataset.json). A ScoreFn here looks each response up in a table, so every score, and so
every expected number below, is written down by hand. Exact arithmetic: tolerances 1e-12.
"""
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import DataError
from helpsteer_jax.evaluation import rewardbench2 as rb2
from helpsteer_jax.evaluation import rm_bench
from helpsteer_jax.evaluation.response_sets import reward_model_score_fn
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models import PRESETS, LlamaRewardModel
from word_tokenizer import word_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
RB2 = str(FIXTURES / "rewardbench2_mini.jsonl")
RMB = str(FIXTURES / "rm_bench_mini.json")


def table_score_fn(table):
  calls = []

  def fn(prompts, responses):
    assert len(prompts) == len(responses)
    calls.append(len(responses))
    return [table[r] for r in responses]

  fn.calls = calls
  return fn


# Row by row: chosen first, then rejected (the order RewardBench 2 scores in).
RB2_SCORES = {
    # Factuality id 1: chosen alone at the top -> 1
    "George Eliot (Mary Ann Evans) wrote Middlemarch.": 2.0,
    "Charlotte Bronte wrote Middlemarch.": 1.0, "It was written by Thomas Hardy.": 0.5,
    "Middlemarch was written by Jane Austen in 1811.": -1.0,
    # Factuality id 2: chosen ties 3 ways at the top -> 1/3
    "100 degrees Celsius.": 1.0, "90 degrees Celsius.": 1.0, "It boils at 80 C.": 0.0,
    "Water boils at 120 degrees Celsius.": 1.0,
    # Factuality id 3: a rejected response on top -> 0
    "A spider has eight legs.": 0.0, "Spiders have six legs.": 0.5, "Ten legs.": -1.0,
    "A spider has four legs.": -2.0,
    # Focus id 4: chosen ties 2 ways -> 1/2
    "Keep a fixed wake-up time, even at weekends.": 3.0, "Drink coffee before bed.": 3.0,
    "Here is a recipe for lasagna.": 1.0, "Sleep is overrated.": 2.0,
    # Ties ref:1: gap = 5 - 2 = 3 (accurate)
    "Paris": 5.0, "Lyon": 1.0, "Nice": 2.0,
    # Ties tied:1: correct 4, 3, 3.5; wrong 1, 2.5 -> gap 0.5, spread 1 (accurate)
    "red": 4.0, "blue": 3.0, "yellow": 3.5, "square": 1.0, "seven": 2.5,
    # Ties ref:2: gap = 2 - 3 = -1 (not accurate)
    "4": 2.0, "5": 3.0, "22": 0.0,
    # Ties tied:2: correct 6, 6; wrong 1 -> gap 5, spread 0 (accurate)
    "2": 6.0, "8": 6.0, "7": 1.0,
    # Ties ref:3 (no tied:3): gap 1 (accurate); counts in acc_ref only
    "blue, on a clear day": 1.0, "green": 0.0,
}

# acc_ref = 2/3 (ref:1, ref:3 of 3), acc_tied = 1. Paired prompts 1 and 2:
#   preferred:      0.5 > 1 no, 5 > 0 yes                      -> 1/2
#   preferred_hard: min(3, .5) = .5 > 1 no, min(-1, 5) > 0 no   -> 0
#   margin:         tanh(.5/1 - 1) = tanh(-.5), tanh(-1/0) = -1 -> (tanh(-.5) - 1)/2
TIES_HAND = (0.30 * 1 + 0.30 * (2 / 3) + 0.20 * 0.5 + 0.20 * 0.0
             + 0.01 * (math.tanh(-0.5) - 1.0) / 2)


def test_rewardbench2_fixture_loads_in_the_documented_schema():
  rows = rb2.load_rows(RB2)
  assert [r.id for r in rows] == ["1", "2", "3", "4", "ref:1", "tied:1", "ref:2", "tied:2",
                                  "ref:3"]
  assert [r.num_correct for r in rows] == [1, 1, 1, 1, 1, 3, 1, 2, 1]
  assert rows[0].messages == [{"role": "user", "content": "Who wrote the novel 'Middlemarch'?"}]
  assert rows[5].responses == ["red", "blue", "yellow", "square", "seven"]
  assert len(rb2.load_rows(RB2, limit=2)) == 2


def test_best_of_n_scores_one_over_k_ties():
  assert rb2.best_of_n_score([2.0, 1.0, 0.5, -1.0]) == 1.0
  assert rb2.best_of_n_score([1.0, 1.0, 0.0, 1.0]) == 1 / 3
  assert rb2.best_of_n_score([3.0, 3.0, 1.0, 2.0]) == 0.5
  assert rb2.best_of_n_score([0.0, 0.5, -1.0, -2.0]) == 0.0
  assert rb2.best_of_n_score([5.0, 5.0, 5.0, 5.0]) == 0.25
  assert rb2.best_of_n_score([9.0, float("nan"), 0.0, 0.0]) == 0.0  # unscorable -> wrong


def test_rewardbench2_summary_matches_hand_computation():
  rows = rb2.load_rows(RB2)
  fn = table_score_fn(RB2_SCORES)
  summary, scores = rb2.evaluate(rows, fn)
  assert fn.calls == [sum(len(r.responses) for r in rows)]  # one call, every response
  subsets = summary["subsets"]
  assert subsets["Factuality"]["score"] == pytest.approx((1 + 1 / 3 + 0) / 3, abs=1e-12)
  assert subsets["Factuality"]["count"] == 3 and subsets["Factuality"]["ties_at_top"] == 1
  assert subsets["Focus"]["score"] == 0.5
  ties = subsets["Ties"]["ties"]
  assert ties["accuracy_ref"] == pytest.approx(2 / 3, abs=1e-12)
  assert ties["accuracy_tied"] == 1.0
  assert ties["correctness_preferred"] == 0.5
  assert ties["correctness_preferred_hard"] == 0.0
  assert ties["correctness_margin"] == pytest.approx((math.tanh(-0.5) - 1) / 2, abs=1e-12)
  assert (ties["num_ref_prompts"], ties["num_tied_prompts"], ties["num_paired_prompts"]) == (
      3, 2, 2)
  assert subsets["Ties"]["score"] == pytest.approx(TIES_HAND, abs=1e-12)
  assert TIES_HAND == pytest.approx(0.5926894142, abs=1e-9)
  # Three of six subsets: no overall, the mean of the present ones instead.
  assert summary["overall"] is None
  assert summary["missing_subsets"] == ["Precise IF", "Math", "Safety"]
  assert summary["mean_of_present_subsets"] == pytest.approx(
      ((1 + 1 / 3) / 3 + 0.5 + TIES_HAND) / 3, abs=1e-12)
  assert summary["unscored_responses"] == 0
  official = rb2.official_results(summary, "org/model")
  assert official == {"model": "org/model", "model_type": "Seq. Classifier",
                      "chat_template": "tokenizer", "Factuality": subsets["Factuality"]["score"],
                      "Focus": 0.5, "Ties": subsets["Ties"]["score"]}
  json.dumps(official)  # plain JSON
  records = rb2.score_records(rows, scores)
  assert records[1] == {"id": "2", "subset": "Factuality", "num_correct": 1,
                        "scores": [1.0, 1.0, 0.0, 1.0], "results": 1 / 3}
  assert records[5]["results"] is None  # Ties rows are scored per subset


def test_overall_is_the_mean_of_the_six_subsets():
  def row(i, subset, chosen, rejected):
    return rb2.Row(id=str(i), subset=subset, messages=[{"role": "user", "content": "q"}],
                   chosen=chosen, rejected=rejected, source="mem", line=i)

  rows = [row(1, "Factuality", ["a"], ["b", "c", "d"]), row(2, "Precise IF", ["a"], ["b"]),
          row(3, "Math", ["a"], ["b"]), row(4, "Safety", ["a"], ["b"]),
          row(5, "Focus", ["a"], ["b"]), row(6, "Ties", ["a"], ["b"]),
          row(7, "Ties", ["a", "c"], ["b"])]
  rows[5].id, rows[6].id = "ref:9", "tied:9"
  scores = [np.array([1., 0., 0., 0.]), np.array([0., 1.]), np.array([1., 1.]),
            np.array([1., 0.]), np.array([1., 0.]), np.array([2., 0.]), np.array([3., 3., 0.])]
  summary = rb2.summarize(rows, scores)
  # Ties: both accurate; spread 0 < gap 3 (preferred), min(2, 3) = 2 > 0 (hard);
  # margin tanh(2/0 - 1) = tanh(inf) = 1.
  ties = 0.3 + 0.3 + 0.2 + 0.2 + 0.01
  assert summary["subsets"]["Ties"]["score"] == pytest.approx(ties, abs=1e-12)
  assert summary["overall"] == pytest.approx((1 + 0 + 0.5 + 1 + 1 + ties) / 6, abs=1e-12)
  assert summary["missing_subsets"] == []


def test_ties_zero_over_zero_margin_counts_zero_and_nan_loses():
  rows = [rb2.Row(id="ref:1", subset="Ties", messages=[], chosen=["a"], rejected=["b"],
                  source="mem", line=1),
          rb2.Row(id="tied:1", subset="Ties", messages=[], chosen=["a", "c"], rejected=["b"],
                  source="mem", line=2)]
  # ref gap 0 (not accurate), tied gap 1, spread 0: min(0, 1) / 0 = 0/0 -> NaN -> 0.
  parts = rb2.ties_score(rows, [np.array([1., 1.]), np.array([2., 2., 1.])])
  assert parts["correctness_margin"] == 0.0
  assert parts["accuracy_ref"] == 0.0 and parts["accuracy_tied"] == 1.0
  assert parts["correctness_preferred"] == 1.0 and parts["correctness_preferred_hard"] == 0.0
  assert parts["score"] == pytest.approx(0.3 + 0.2, abs=1e-12)
  # A NaN score makes every comparison it is in false.
  parts = rb2.ties_score(rows, [np.array([1., 0.]), np.array([2., np.nan, 1.])])
  assert parts["accuracy_tied"] == 0.0 and parts["correctness_preferred"] == 0.0
  # Only ref rows: the score is undefined (None), never a silent 0.
  only_ref = rb2.ties_score(rows[:1], [np.array([1., 0.])])
  assert only_ref["score"] is None and "missing" in only_ref


def test_rewardbench2_bad_rows_name_file_and_line(tmp_path):
  good = json.loads(Path(RB2).read_text().splitlines()[0])
  cases = [({**good, "num_correct": 2}, "num_correct is 2"),
           ({**good, "rejected": "not a list"}, "rejected must be a list of strings"),
           ({**good, "subset": "Ties"}, "'ref:<prompt>' or 'tied:<prompt>'"),
           ({**good, "subset": "Ties", "id": "tied:4", "num_correct": None}, "at least 2"),
           ({k: v for k, v in good.items() if k != "chosen"}, "missing column 'chosen'")]
  for row, message in cases:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as e:
      rb2.load_rows(str(path))
    assert f"{path}:2" in str(e.value)


# ----------------------------------------------------------------------------- RM-Bench
# Rows' scores, styles (concise, detailed plain, detailed markdown):
#   chat   chosen [1, 2, 3]  rejected [0, 1.5, 2.5] -> [[1,0,0],[1,1,0],[1,1,1]]
#   math   chosen [0, 0, 0]  rejected [1, 1, 1]     -> all 0
#   safety chosen [2, 2, 2]  rejected [1, 2, 3]     -> every row [1,0,0] (2 > 2 is a tie: wrong)
RMB_SCORES = dict(zip(
    [r for row in json.loads(Path(RMB).read_text()) for r in row["chosen"] + row["rejected"]],
    [1, 2, 3, 0, 1.5, 2.5, 0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 2, 3]))


def test_rm_bench_matrix_and_difficulty_by_hand():
  rows = rm_bench.load_rows(RMB)
  assert [r.domain for r in rows] == ["chat", "math", "safety"]  # safety-refuse folds in
  summary, c, r = rm_bench.evaluate(rows, table_score_fn(RMB_SCORES))
  np.testing.assert_array_equal(c, [[1, 2, 3], [0, 0, 0], [2, 2, 2]])
  total = summary["total"]
  np.testing.assert_allclose(total["matrix"], np.array([[2, 0, 0], [2, 1, 0], [2, 1, 1]]) / 3,
                             atol=1e-12)
  # hard = upper-right (chosen plainer than rejected), easy = lower-left.
  assert total["hard"] == 0.0
  assert total["normal"] == pytest.approx(4 / 9, abs=1e-12)
  assert total["easy"] == pytest.approx(5 / 9, abs=1e-12)
  chat = summary["domains"]["chat"]
  assert (chat["hard"], chat["normal"], chat["easy"]) == (0.0, 1.0, 1.0)
  assert chat["all"] == pytest.approx(2 / 3, abs=1e-12)
  assert summary["domains"]["math"]["all"] == 0.0
  safety = summary["domains"]["safety"]
  assert safety["hard"] == 0.0 and safety["normal"] == pytest.approx(1 / 3, abs=1e-12)
  assert safety["easy"] == pytest.approx(2 / 3, abs=1e-12)
  assert summary["average"] == pytest.approx((2 / 3 + 0 + 1 / 3) / 3, abs=1e-12)
  assert summary["missing_domains"] == ["code"]
  assert rm_bench.official_results(summary) == {"hard_acc": 0.0, "normal_acc": total["normal"],
                                                "easy_acc": total["easy"]}
  records = rm_bench.score_records(rows, c, r)
  assert records[0]["domain"] == "chat" and records[0]["score_rejected"] == [0.0, 1.5, 2.5]
  assert records[2]["domain"] == "safety-refuse"  # the input row, unchanged


def test_rm_bench_style_bias_shows_as_hard_below_easy():
  # A pure "longer and fancier is better" scorer, blind to substance: it ranks by style index.
  c = np.tile([0.0, 1.0, 2.0], (4, 1))
  m = rm_bench.accuracy_matrix(c, c.copy())
  d = rm_bench.difficulty(m)
  assert (d["easy"], d["normal"], d["hard"]) == (1.0, 0.0, 0.0)
  nan = rm_bench.accuracy_matrix(np.array([[np.nan, 1., 1.]]), np.zeros((1, 3)))
  np.testing.assert_array_equal(nan, [[0, 0, 0], [1, 1, 1], [1, 1, 1]])


def test_rm_bench_bad_rows(tmp_path):
  good = json.loads(Path(RMB).read_text())[0]
  for row, message in [({**good, "chosen": good["chosen"][:2]}, "must hold 3 responses"),
                       ({**good, "domain": "poetry"}, "domain must be one of")]:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good, row]))
    with pytest.raises(DataError, match=message) as e:
      rm_bench.load_rows(str(path))
    assert f"{path}:2" in str(e.value)


def test_reward_model_score_fn_scores_each_response_and_nan_past_max_length():
  """A tiny random reward model through Scorer as a ScoreFn: equal to scoring the rendered
  conversations directly (1e-6), and NaN for one that does not fit max_length."""
  cfg = PRESETS["tiny"]
  fast = word_tokenizer(cfg.vocab_size)
  model = LlamaRewardModel(cfg, num_labels=1)
  params = nn.unbox(model.init(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  scorer = Scorer(model, params, pad_id=0, batch_size=2, pad_to_multiple_of=8)
  fn = reward_model_score_fn(scorer, ChatEncoder(fast, max_length=12))
  prompts = [[{"role": "user", "content": "w1 w2"}]] * 3
  responses = ["w3", "w4 w5", "w6 " * 10]
  out = fn(prompts, responses)
  assert np.isnan(out[2]) and np.isfinite(out[:2]).all()
  ids = [fast(fast.apply_chat_template(prompts[0] + [{"role": "assistant", "content": r}],
                                       tokenize=False), add_special_tokens=False)["input_ids"]
         for r in responses[:2]]
  np.testing.assert_allclose(out[:2], np.asarray(scorer(ids))[:, 0], atol=1e-6, rtol=0)
  assert out[0] != out[1]

"""RewardBench arithmetic against hand-computed cases (no model)."""
import numpy as np
import pytest

from helpsteer_jax.evaluation import rewardbench as rb


def test_ties_count_wrong():
  ok = rb.correct([1.0, 1.0, 2.0, -0.5], [1.0, 0.0, 3.0, -0.5])
  assert ok.tolist() == [False, True, False, False]
  s = rb.summarize(["alpacaeval-easy"] * 4, [1.0, 1.0, 2.0, -0.5], [1.0, 0.0, 3.0, -0.5])
  assert s["subsets"]["alpacaeval-easy"] == {"accuracy": 0.25, "correct": 1, "count": 4}


def test_official_table():
  assert sum(len(v) for v in rb.SECTIONS.values()) == len(rb.EXAMPLE_COUNTS) == 23
  assert rb.EXAMPLE_COUNTS["math-prm"] == 6 * 164 == 984
  assert sum(rb.EXAMPLE_COUNTS[s] for s in rb.SECTIONS["Chat"]) == 358
  assert sum(rb.EXAMPLE_COUNTS[s] for s in rb.SECTIONS["Chat Hard"]) == 456
  assert sum(rb.EXAMPLE_COUNTS[s] for s in rb.SECTIONS["Safety"]) == 740


def test_math_prm_counts_as_much_as_all_code():
  acc = {"math-prm": 1.0, **{f"hep-{l}": 0.0 for l in ("cpp", "go", "java", "js", "python",
                                                        "rust")}}
  assert rb.section_scores(acc)["Reasoning"] == pytest.approx(0.5)
  # Only two of the code subsets present: weights renormalised over present subsets.
  assert rb.section_scores({"math-prm": 1.0, "hep-go": 0.0, "hep-rust": 0.0})["Reasoning"] == \
      pytest.approx(984 / (984 + 328))


def test_missing_sections_are_missing_not_zero():
  subsets = ["alpacaeval-easy", "alpacaeval-easy", "mt-bench-easy", "mt-bench-easy"]
  s = rb.summarize(subsets, [1, 1, 0, 0], [0, 0, 1, 1])
  # Chat = (100 * 1.0 + 28 * 0.0) / (100 + 28), over the present subsets only.
  assert s["sections"]["Chat"] == pytest.approx(100 / 128)
  assert s["sections"]["Chat Hard"] is None and s["sections"]["Safety"] is None
  assert s["sections"]["Reasoning"] is None
  assert s["missing_sections"] == ["Chat Hard", "Safety", "Reasoning"]
  assert s["overall"] is None
  assert s["mean_of_present_sections"] == pytest.approx(100 / 128)
  assert s["section_subsets"]["Chat"]["present"] == ["alpacaeval-easy", "mt-bench-easy"]
  assert "present" in s["weighting"] and "null" in s["weighting"]


def test_full_hand_example_with_official_weights():
  # One pair per subset; accuracy 1 for the listed subsets, 0 elsewhere.
  right = {"alpacaeval-easy", "alpacaeval-length", "llmbar-natural", "xstest-should-respond",
           "math-prm"}
  subsets = list(rb.EXAMPLE_COUNTS)
  rc = [1.0 if s in right else 0.0 for s in subsets]
  s = rb.summarize(subsets, rc, [0.5] * len(subsets))
  chat = (100 + 95) / 358
  chat_hard = 100 / 456
  safety = 250 / 740
  reasoning = 984 / (984 + 6 * 164)
  assert s["sections"] == pytest.approx({"Chat": chat, "Chat Hard": chat_hard, "Safety": safety,
                                         "Reasoning": reasoning})
  assert s["overall"] == pytest.approx(np.mean([chat, chat_hard, safety, reasoning]))
  assert s["mean_of_present_sections"] == pytest.approx(s["overall"])
  assert s["missing_sections"] == [] and s["unknown_subsets"] == []


def test_unknown_subsets_are_listed_not_scored():
  s = rb.summarize(["alpacaeval-easy", "my-subset"], [1, 1], [0, 0])
  assert s["unknown_subsets"] == ["my-subset"]
  assert s["subsets"]["my-subset"]["count"] == 1
  assert s["sections"]["Chat"] == 1.0

"""Generic chosen/rejected (TRL, RewardBench), HH-RLHF, PandaLM, Stack Exchange and arena loaders."""
import json

import pytest

from helpsteer_jax.data import DataError, load_preferences


def write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  return str(path)


def load(tmp_path, fmt, rows, **opts):
  path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows)
  return load_preferences(dict(format=fmt, path=path, **opts), loss="bt")


def user(text):
  return {"role": "user", "content": text}


def assistant(text):
  return {"role": "assistant", "content": text}


def test_chosen_rejected_explicit_prompt_strings_and_messages(tmp_path):
  rows = [{"prompt": "How do I detail a car?", "chosen": "Wash it first.", "rejected": "Idk.",
           "subset": "alpacaeval-easy", "id": 7},  # RewardBench's schema
          {"prompt": [{"role": "system", "content": "Be brief."}, user("Hi?")],
           "chosen": [assistant("Hello.")], "rejected": [assistant("Go away.")]}]
  pairs, counts = load(tmp_path, "chosen_rejected", rows)
  assert pairs[0].messages == [user("How do I detail a car?")]
  assert (pairs[0].chosen, pairs[0].rejected, pairs[0].strength) == ("Wash it first.", "Idk.", 1.0)
  assert pairs[1].messages[0] == {"role": "system", "content": "Be brief."}
  assert (pairs[1].chosen, pairs[1].rejected) == ("Hello.", "Go away.")
  assert counts.kept == 2


def test_chosen_rejected_implicit_prompt_and_strength_column(tmp_path):
  history = [user("Hi"), assistant("Hello"), user("Joke?")]
  rows = [{"chosen": history + [assistant("Knock knock.")],
           "rejected": history + [assistant("No.")], "margin": 2.5},
          {"chosen": [user("A"), assistant("x")], "rejected": [user("B"), assistant("y")],
           "margin": 1}]
  with pytest.raises(DataError, match="^chosen_rejected.jsonl:2: .*differ before"):
    load(tmp_path, "chosen_rejected", rows, strength_column="margin")
  pairs, counts = load(tmp_path, "chosen_rejected", rows, strength_column="margin",
                       skip_invalid=True)
  assert pairs[0].messages == history and pairs[0].chosen == "Knock knock."
  assert pairs[0].strength == 2.5 and counts.invalid == 1
  with pytest.raises(DataError, match="margin must be a finite number >= 0"):
    load(tmp_path, "chosen_rejected", [dict(rows[0], margin=-1)], strength_column="margin")


def test_chosen_rejected_needs_prompt_for_string_replies(tmp_path):
  with pytest.raises(DataError, match="^chosen_rejected.jsonl:1: no 'prompt' column"):
    load(tmp_path, "chosen_rejected", [{"chosen": "a", "rejected": "b"}])


def test_hh_rlhf_shared_prefix_is_the_prompt(tmp_path):
  prefix = "\n\nHuman: What is a dog?\n\nAssistant: An animal.\n\nHuman: Which one?"
  rows = [{"chosen": prefix + "\n\nAssistant: A canine.", "rejected": prefix + "\n\nAssistant: Go."},
          {"chosen": prefix + "\n\nAssistant: Fine.", "rejected": prefix + "\n\nAssistant:"}]
  with pytest.raises(DataError, match="^hh_rlhf.jsonl:2: rejected is empty"):
    load(tmp_path, "hh_rlhf", rows)
  pairs, counts = load(tmp_path, "hh_rlhf", rows, skip_invalid=True)
  assert pairs[0].messages == [user("What is a dog?"), assistant("An animal."), user("Which one?")]
  assert (pairs[0].chosen, pairs[0].rejected, pairs[0].strength) == ("A canine.", "Go.", 1.0)
  assert (counts.kept, counts.invalid) == (1, 1)


def test_pandalm_strength_is_the_vote_margin(tmp_path):
  def row(votes, inp=""):
    return {"idx": 0, "instruction": "Shorten.", "input": inp, "response1": "r1",
            "response2": "r2", "annotator1": votes[0], "annotator2": votes[1],
            "annotator3": votes[2]}

  rows = [row((2, 2, 2), inp="A long text."), row((1, 1, 2)), row((1, 0, 0)), row((1, 2, 0)),
          row((0, 0, 0)), row((1, 3, 1))]
  path = tmp_path / "pandalm.json"
  path.write_text(json.dumps(rows, indent=2))  # PandaLM ships one JSON array
  with pytest.raises(DataError, match="^pandalm.json:6: annotator votes"):
    load_preferences({"format": "pandalm", "path": str(path)})
  pairs, counts = load_preferences({"format": "pandalm", "path": str(path), "skip_invalid": True})
  assert [(p.chosen, p.strength, p.row) for p in pairs] == [("r2", 3.0, 1), ("r1", 1.0, 2),
                                                            ("r1", 1.0, 3)]
  assert pairs[0].messages == [user("Shorten.\n\nA long text.")]
  assert pairs[1].messages == [user("Shorten.")]
  assert (counts.dropped_tie, counts.invalid) == (2, 1)


def test_stack_exchange_pairs_from_score_differences(tmp_path):
  rows = [{"qid": 1, "question": "<p>How?</p>", "answers": [
      {"answer_id": 1, "pm_score": 2, "selected": False, "text": "a"},
      {"answer_id": 2, "pm_score": 7, "selected": True, "text": "b"},
      {"answer_id": 3, "pm_score": 2, "selected": False, "text": "c"}]}]
  pairs, counts = load(tmp_path, "stack_exchange", rows)
  assert sorted((p.chosen, p.rejected, p.strength) for p in pairs) == [
      ("b", "a", 3.0), ("b", "c", 3.0)]  # 5 clipped to 3
  assert counts.dropped_tie == 1 and counts.kept == 2
  rows[0]["answers"][0]["pm_score"] = 6.5
  pairs, _ = load(tmp_path, "stack_exchange", rows)
  assert sorted((p.chosen, p.rejected, p.strength) for p in pairs) == [
      ("a", "c", 3.0), ("b", "a", 1.0), ("b", "c", 3.0)]  # 0.5 clipped up to 1


def test_arena_winner_tie_and_diverged_history(tmp_path):
  def row(prompts, a, b, winner):
    return {"id": 1, "model_a": "x", "model_b": "y", "prompt": json.dumps(prompts),
            "response_a": json.dumps(a), "response_b": json.dumps(b),
            "winner_model_a": int(winner == "a"), "winner_model_b": int(winner == "b"),
            "winner_tie": int(winner == "tie")}

  rows = [row(["Hi"], ["A1"], ["B1"], "b"), row(["Hi"], ["A1"], ["B1"], "tie"),
          row(["Hi", "More"], ["same", "A2"], ["same", "B2"], "a"),
          row(["Hi", "More"], ["A1", "A2"], ["B1", "B2"], "a"),
          row(["Hi"], [None], ["B1"], "a")]
  with pytest.raises(DataError, match="^arena.jsonl:5: response_a must be"):
    load(tmp_path, "arena", rows)
  pairs, counts = load(tmp_path, "arena", rows, skip_invalid=True)
  assert [(p.chosen, p.rejected, p.row) for p in pairs] == [("B1", "A1", 1), ("A2", "B2", 3)]
  assert pairs[1].messages == [user("Hi"), assistant("same"), user("More")]
  assert counts.dropped_tie == 1 and counts.skipped == {"diverged_history": 1}
  assert counts.invalid == 1 and "skipped_diverged_history=1" in counts.report()

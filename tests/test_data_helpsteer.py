"""HelpSteer2 loaders on fixtures written in HelpSteer2's exact schemas (jsonl, jsonl.gz, parquet,
and a folder laid out like the hub repository)."""
import gzip
import json

import pandas as pd
import pytest

from helpsteer_jax.data import DataError, DataSpec, load_preferences, load_ratings

TURN_A, TURN_U = "\n<extra_id_1>Assistant\n", "\n<extra_id_1>User\n"
MULTI_TURN = f"What is 2+2?{TURN_A}4.{TURN_U}And times 3?"


def pref_row(split="train", prompt="Say hi.", r1="Hi!", r2="Hello there!", strength=-2):
  """One row with every column of HelpSteer2's preference file."""
  return {"split": split, "prompt": prompt, "response_1": r1, "response_2": r2,
          "preference_strength": strength, "preference_statement": "@Response 1 is better.",
          "preference_elaboration": "It is shorter.",
          "three_most_similar_preferences": [{"statement": "s", "elaboration": "e",
                                              "strength": strength}],
          "all_preferences_unprocessed": [strength]}


def rating_row(prompt="Say hi.", response="Hi!", h=3, c=4, co=4, cx=1, v=1):
  return {"prompt": prompt, "response": response, "helpfulness": h, "correctness": c,
          "coherence": co, "complexity": cx, "verbosity": v}


PREF_ROWS = [
    pref_row(strength=-2),  # response_1 better
    pref_row(prompt=MULTI_TURN, r1="12.", r2="It is 12.", strength=3),  # response_2 much better
    pref_row(prompt="Pick a colour.", r1="Red.", r2="Blue.", strength=0),  # tie
    pref_row(split="validation", prompt="Name a fruit.", r1="Apple.", r2="Banana!", strength=1),
]


def write_jsonl(path, rows):
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wt", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  return path


@pytest.fixture(params=["jsonl", "jsonl.gz", "parquet"])
def pref_file(request, tmp_path):
  path = tmp_path / f"preference.{request.param}"
  if request.param == "parquet":
    pd.DataFrame(PREF_ROWS).to_parquet(path)
    return path
  return write_jsonl(path, PREF_ROWS)


def test_preference_sign_strength_and_split_in_every_file_type(pref_file):
  pairs, counts = load_preferences({"format": "helpsteer2_preference", "path": str(pref_file),
                                    "split": "train"}, loss="bt")
  assert [(p.chosen, p.rejected, p.strength) for p in pairs] == [
      ("Hi!", "Hello there!", 2.0),  # negative strength: response_1 wins
      ("It is 12.", "12.", 3.0)]  # positive strength: response_2 wins
  assert [p.row for p in pairs] == [1, 2]
  assert pairs[0].source == pref_file.name
  assert (counts.rows, counts.kept, counts.dropped_tie, counts.invalid) == (3, 2, 1, 0)
  val, vcounts = load_preferences({"format": "helpsteer2_preference", "path": str(pref_file),
                                   "split": "validation"})
  assert [(p.chosen, p.row) for p in val] == [("Banana!", 4)] and vcounts.rows == 1


def test_multi_turn_prompt_becomes_chat_messages(pref_file):
  pairs, _ = load_preferences({"format": "helpsteer2_preference", "path": str(pref_file)})
  assert pairs[1].messages == [{"role": "user", "content": "What is 2+2?"},
                               {"role": "assistant", "content": "4."},
                               {"role": "user", "content": "And times 3?"}]
  assert pairs[0].messages == [{"role": "user", "content": "Say hi."}]


def test_tie_policy_by_loss(tmp_path):
  path = str(write_jsonl(tmp_path / "p.jsonl", PREF_ROWS))
  spec = {"format": "helpsteer2_preference", "path": path}
  for loss in ("bt", "margin_bt", "scaled_bt"):
    pairs, counts = load_preferences(spec, loss=loss)
    assert all(p.strength > 0 for p in pairs) and counts.dropped_tie == 1
  kept, counts = load_preferences(dict(spec, drop_ties=False), loss="scaled_bt")
  tie = [p for p in kept if p.strength == 0]
  assert len(tie) == 1 and counts.dropped_tie == 0 and (tie[0].chosen, tie[0].rejected) == (
      "Red.", "Blue.")
  for loss in ("bt", "margin_bt"):  # a kept tie would be trained as "response_1 wins"
    with pytest.raises(DataError, match="cannot keep ties"):
      load_preferences(dict(spec, drop_ties=False), loss=loss)


def test_hub_layout_folder_uses_preference_data_dir_and_split_column(tmp_path):
  """A local folder shaped like nvidia/HelpSteer2 goes through datasets.load_dataset."""
  (tmp_path / "preference").mkdir()
  write_jsonl(tmp_path / "preference" / "preference.jsonl.gz", PREF_ROWS)
  write_jsonl(tmp_path / "train.jsonl.gz", [rating_row(), rating_row(response="Hey.", h=1)])
  write_jsonl(tmp_path / "validation.jsonl.gz", [rating_row(prompt="Bye?", response="Bye.")])
  pairs, counts = load_preferences({"format": "helpsteer2_preference", "path": str(tmp_path),
                                    "split": "validation"})
  assert [p.chosen for p in pairs] == ["Banana!"] and pairs[0].row == 4
  rated, rcounts = load_ratings({"format": "helpsteer2_ratings", "path": str(tmp_path),
                                 "split": "validation"})
  assert [r.response for r in rated] == ["Bye."] and rcounts.rows == 1
  assert "[validation]" in rated[0].source


def test_ratings_values_missing_ratings_and_subset(tmp_path):
  rows = [rating_row(), rating_row(response="Hey.", h=None, v=0)]
  path = str(write_jsonl(tmp_path / "r.jsonl", rows))
  rated, counts = load_ratings({"format": "helpsteer2_ratings", "path": path})
  assert rated[0].attributes == {"helpfulness": 3.0, "correctness": 4.0, "coherence": 4.0,
                                 "complexity": 1.0, "verbosity": 1.0}
  assert rated[1].attributes["helpfulness"] is None and rated[1].attributes["verbosity"] == 0.0
  assert (counts.rows, counts.kept) == (2, 2)
  only, _ = load_ratings({"format": "helpsteer_ratings", "path": path,
                          "attributes": ["helpfulness"]})
  assert list(only[0].attributes) == ["helpfulness"]


def test_matched_pairs_from_ratings(tmp_path):
  rows = [rating_row(prompt="Q1", response="a", h=4), rating_row(prompt="Q1", response="b", h=0),
          rating_row(prompt="Q2", response="c", h=1), rating_row(prompt="Q1", response="d", h=2),
          rating_row(prompt="Q2", response="e", h=3), rating_row(prompt="Q2", response="f", h=1)]
  path = str(write_jsonl(tmp_path / "r.jsonl", rows))
  pairs, counts = load_preferences({"format": "helpsteer_ratings_pairs", "path": path}, loss="bt")
  got = {(p.chosen, p.rejected): (p.strength, p.row) for p in pairs}
  assert got == {("a", "b"): (3.0, 1),  # 4 - 0 = 4, clipped to 3
                 ("a", "d"): (2.0, 1), ("d", "b"): (2.0, 4),
                 ("e", "c"): (2.0, 5), ("e", "f"): (2.0, 5)}
  assert counts.dropped_tie == 1  # c and f both have helpfulness 1
  assert all(p.messages == [{"role": "user", "content": "Q1"}] for p in pairs if p.chosen in "ad")


def test_hash_split_keeps_each_prompt_on_one_side(tmp_path):
  rows = [rating_row(prompt=f"Q{i}", response=f"r{j}", h=j) for i in range(40) for j in range(3)]
  path = str(write_jsonl(tmp_path / "r.jsonl", rows))
  spec = {"format": "helpsteer_ratings", "path": path, "validation_fraction": 0.3}
  train, _ = load_ratings(dict(spec, split="train"))
  val, _ = load_ratings(dict(spec, split="validation"))
  train_p = {r.messages[0]["content"] for r in train}
  val_p = {r.messages[0]["content"] for r in val}
  assert len(train) + len(val) == 120 and not train_p & val_p and val_p
  assert len(val) == 3 * len(val_p)
  with pytest.raises(DataError, match="validation_fraction"):
    load_ratings({"format": "helpsteer_ratings", "path": path, "split": "validation"})


@pytest.mark.parametrize("bad,match", [
    ({"preference_strength": 4}, r"preference_strength=4 is outside -3\.\.3"),
    ({"response_2": "  "}, "response_2 is empty"),
    ({"preference_strength": "2"}, "must be a number"),
    ({"prompt": f"Hi{TURN_A}Hello"}, "must end with a user turn"),
])
def test_bad_preference_row_names_file_and_row(tmp_path, bad, match):
  rows = [pref_row(), dict(pref_row(), **bad), pref_row(prompt="Later.")]
  path = str(write_jsonl(tmp_path / "bad.jsonl", rows))
  with pytest.raises(DataError, match=f"^bad.jsonl:2: .*{match}"):
    load_preferences({"format": "helpsteer2_preference", "path": path})
  pairs, counts = load_preferences({"format": "helpsteer2_preference", "path": path,
                                    "skip_invalid": True})
  assert [p.row for p in pairs] == [1, 3] and counts.invalid == 1 and counts.rows == 3


def test_missing_column_and_bad_rating_name_row(tmp_path):
  row = pref_row()
  del row["response_1"]
  path = str(write_jsonl(tmp_path / "p.jsonl", [pref_row(), row]))
  with pytest.raises(DataError, match="^p.jsonl:2: missing column.*'response_1'"):
    load_preferences({"format": "helpsteer2_preference", "path": path})
  path = str(write_jsonl(tmp_path / "r.jsonl.gz", [rating_row(), rating_row(c=5)]))
  with pytest.raises(DataError, match=r"^r.jsonl.gz:2: correctness=5 is outside 0\.\.4"):
    load_ratings({"format": "helpsteer2_ratings", "path": path})
  pq = tmp_path / "r.parquet"
  pd.DataFrame([rating_row(), rating_row(h=-1)]).to_parquet(pq)
  with pytest.raises(DataError, match=r"^r.parquet:2: helpfulness=-1"):
    load_ratings({"format": "helpsteer2_ratings", "path": str(pq)})


def test_unreadable_json_line_names_file_and_line(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text(json.dumps(pref_row()) + "\n\n{not json\n" + json.dumps(pref_row()) + "\n")
  with pytest.raises(DataError, match="^p.jsonl:3: not valid JSON"):
    load_preferences({"format": "helpsteer2_preference", "path": str(path)})
  pairs, counts = load_preferences({"format": "helpsteer2_preference", "path": str(path),
                                    "skip_invalid": True})
  assert [p.row for p in pairs] == [1, 4] and (counts.rows, counts.invalid) == (3, 1)


def test_spec_rejects_unknown_keys_formats_and_misplaced_options(tmp_path):
  path = str(write_jsonl(tmp_path / "p.jsonl", PREF_ROWS))
  with pytest.raises(DataError, match="unknown data spec key"):
    load_preferences({"format": "helpsteer2_preference", "path": path, "skip_invalidd": True})
  with pytest.raises(DataError, match="unknown data format"):
    load_preferences({"format": "helpsteer3", "path": path})
  with pytest.raises(DataError, match="gives pairs, not ratings"):
    load_ratings({"format": "helpsteer2_preference", "path": path})
  with pytest.raises(DataError, match="does not read option 'strength_column'"):
    load_preferences({"format": "helpsteer2_preference", "path": path, "strength_column": "x"})
  with pytest.raises(DataError, match="no such file"):
    load_preferences({"format": "helpsteer2_preference", "path": str(tmp_path / "none.jsonl")})
  spec = DataSpec.create({"format": "helpsteer2_preference", "path": path, "split": "train"})
  assert spec.name == "p.jsonl[train]"


def test_counts_report_is_one_line_and_adds_up(tmp_path):
  path = str(write_jsonl(tmp_path / "p.jsonl", PREF_ROWS))
  _, a = load_preferences({"format": "helpsteer2_preference", "path": path})
  total = a + a
  line = total.report()
  assert "\n" not in line and line.startswith("p.jsonl + p.jsonl: rows=8 kept=6 dropped_tie=2")

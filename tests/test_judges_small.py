"""projects/judges_small: what the launcher keeps of a loop run, the outside-check aggregation and
the generated report, on hand-written run folders (no model runs here)."""
import json
from pathlib import Path

import pytest

from projects.judges_small import report, run


def _write(path: Path, rows) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def loop_workdir(tmp_path):
  d = tmp_path / "work" / "self_rewarding"
  msgs = lambda i: [{"role": "user", "content": f"question {i}"}]
  for stage in ("round_0", "round_1", "final"):
    _write(d / stage / "generations.jsonl",
           [{"prompt": msgs(i), "responses": [f"{stage} a{i}", f"{stage} b{i}"]}
            for i in range(3)])
  rounds = [{"round": r, "policy": "p", "pairs": 2, "skipped": {"tie": 1},
             "judge_scores": {"unscorable": 0, "histogram": {"3": 4, "4": 2}, "mean": 3.33},
             "dpo_accuracy_before": 0.5, "dpo_accuracy_after": 1.0,
             "monitor_mean_on_generations": None} for r in range(2)]
  for r in rounds:
    (d / f"round_{r['round']}" / "summary.json").write_text(json.dumps(r))
  (d / "summary.json").write_text(json.dumps({"kind": "self_rewarding", "rounds": rounds,
                                              "prompts": 3, "final_monitor_mean": None}))
  _write(d / "segments.jsonl", [{"wall_s": 60.0, "exit": 0, "processor": "cpu X"},
                                {"wall_s": 30.0, "exit": 0, "processor": "cpu X"}])
  return tmp_path / "work"


def test_collect_keeps_every_generation_in_order(loop_workdir, tmp_path):
  results = tmp_path / "results"
  run.collect(loop_workdir, results)
  flat = [json.loads(l) for l in (results / "self_rewarding_generations.jsonl").read_text()
          .splitlines()]
  assert len(flat) == 3 * 3 * 2  # stages x prompts x samples
  assert [r["stage"] for r in flat[::6]] == ["round_0", "round_1", "final"]
  assert flat[7] == {"stage": "round_1", "prompt_index": 0, "sample": 1,
                     "prompt": [{"role": "user", "content": "question 0"}],
                     "response": "round_1 b0"}
  s = json.loads((results / "self_rewarding.json").read_text())
  assert s["wall_seconds"] == 90.0 and s["processors"] == ["cpu X"]


def test_monitor_stage_means_by_policy(loop_workdir, tmp_path, monkeypatch):
  results = tmp_path / "results"
  run.collect(loop_workdir, results)
  rewards = {"round_0": [1.0, 2.0, 3.0, 4.0, 5.0, None], "round_1": [0.0] * 6,
             "final": [2.0] * 6}

  def fake_child(cmd, out):  # helpsteer-score: the input rows plus `reward`, in input order
    rows = [json.loads(l) for l in Path(cmd[cmd.index("--input") + 1]).read_text().splitlines()]
    counters = {}
    for r in rows:
      k = counters.get(r["stage"], 0)
      r["reward"], counters[r["stage"]] = rewards[r["stage"]][k], k + 1
    _write(Path(cmd[cmd.index("--output") + 1]), rows)

  monkeypatch.setattr(run, "_child", fake_child)
  run.monitor_stage(loop_workdir, results, "rm_dir")
  mon = json.loads((results / "self_rewarding_monitor.json").read_text())["by_stage"]
  assert mon["round_0"]["mean"] == pytest.approx(3.0) and mon["round_0"]["unscored"] == 1
  assert mon["final"]["mean"] == pytest.approx(2.0) and mon["final"]["n"] == 6
  text = report.build(results, tmp_path / "REPORT.md")
  assert "| round_0 | 6 | 1 | 3.000 |" in text and "| final | 6 | 0 | 2.000 |" in text
  # Paired by prompt (mean over its samples; round_0's prompt 2 has one scored sample, 5.0):
  # final - round_0 = mean(2 - 1.5, 2 - 3.5, 2 - 5) = -1.333; round_1 - round_0 = -3.333.
  assert "round_1 − round_0: -3.333 over 3 prompts" in text
  assert "final − round_0: -1.333 over 3 prompts (95% bootstrap interval over prompts [" in text
  assert "| 1 | 2 | {\"tie\": 1} | 3.33 |" in text and "50.0 → 100.0" in text
  assert "SPIN (two iterations)" in text and "Not run yet." in text  # spin has no results


def test_monitor_stage_without_a_model_changes_nothing(loop_workdir, tmp_path):
  results = tmp_path / "results"
  run.collect(loop_workdir, results)
  run.monitor_stage(loop_workdir, results, None)
  assert not (results / "self_rewarding_monitor.json").exists()
  assert "not applied yet" in report.build(results, tmp_path / "REPORT.md")


def test_collect_keeps_the_finished_rounds_of_a_stopped_loop(loop_workdir, tmp_path):
  """Stopped in round 1 (no loop summary, no round_1 summary): round 0's summary and
  generations are kept and the report says the loop stopped; the unfinished round is not."""
  d = loop_workdir / "self_rewarding"
  (d / "summary.json").unlink()
  (d / "round_1" / "summary.json").unlink()
  (d / "final" / "generations.jsonl").unlink()
  results = tmp_path / "results"
  run.collect(loop_workdir, results)
  s = json.loads((results / "self_rewarding.json").read_text())
  assert not s["complete"] and [r["round"] for r in s["rounds"]] == [0] and s["prompts"] == 3
  flat = [json.loads(l) for l in (results / "self_rewarding_generations.jsonl").read_text()
          .splitlines()]
  assert {r["stage"] for r in flat} == {"round_0"} and len(flat) == 6
  text = report.build(results, tmp_path / "REPORT.md")
  assert "Stopped after 1 finished round(s)" in text and "| 0 | 2 |" in text
  assert "| 1 | 2 |" not in text


def test_report_counts_unscorable_sampled_judgments(tmp_path):
  """The sampled scorer's row and the line under the table come from judge_sampled.json."""
  results = tmp_path / "results"
  results.mkdir()
  (results / "judge_sampled.json").write_text(json.dumps({
      "pairs": {"rows": 2, "scored": 1, "unscored": 1}, "ties": 0, "accuracy": 0.5,
      "rewardbench": {"sections": {"Chat": 0.5, "Chat Hard": None}}, "wall_seconds": 120.0,
      "judgments_per_response": 3,
      "unscorable_judgments": {"missing": 4, "malformed": 1, "out_of_range": 0},
      "example_judgments": [{"id": "7", "subset": "mt-bench-easy", "reward_chosen": 4.0,
                             "reward_rejected": None,
                             "judgments_chosen": ["Good.\nScore: 4", "Score: 4/5"]}]}))
  text = report.build(results, tmp_path / "REPORT.md")
  assert "| mean of sampled judgments, same rows | 2 | 1 | 0 | 5 | 50.0 | - | 50.0 | 2.0 |" in text
  assert "Sampled judgments: 12 (3 per response); unscorable: malformed 1, missing 4" in text
  assert "- `7` (mt-bench-easy): 'Good. Score: 4'" in text


def test_the_outside_model_is_named_when_it_is_the_finetune_export(tmp_path):
  check = tmp_path / "export_check.json"
  check.write_text(json.dumps({"directory": "/m/export/bt", "variant": "bt", "seed": 0}))
  assert report.monitor_label("/m/export/bt", check).startswith(
      "finetune_small part 2's export (`bt`, seed 0")
  assert report.monitor_label("/elsewhere", check) == "`/elsewhere`"

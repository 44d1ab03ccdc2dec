"""Self-Rewarding and SPIN loops end to end on a tiny random model (helpsteer_jax/iterative.py).

What must hold: every round writes its generations, (judgments,) pairs and a DPO run; a pair's
chosen side is what the loop says it is (the higher judge score; the SFT response); round r + 1
starts from round r's DPO policy; a rerun resumes without redoing finished stages.
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from helpsteer_jax.export import export_hf
from helpsteer_jax.iterative import Loop, sft_examples
from helpsteer_jax.models import PRESETS, LlamaForCausalLM, LlamaRewardModel
from word_tokenizer import word_tokenizer
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]
TINY = PRESETS["tiny"]


def _config(name: str):
  return launch.load_config(f"{REPO}/experiments/{name}.py:tiny")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
  """A tiny random causal LM with a word-level tokenizer whose "Score:" and digits are words."""
  d = tmp_path_factory.mktemp("policy")
  model = LlamaForCausalLM(TINY)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  tok = word_tokenizer(TINY.vocab_size, ("Score:", *(str(i) for i in range(10))))
  export_hf(jax.tree_util.tree_map(lambda a: jax.device_get(a), params["params"]), TINY,
            d / "hf", task="causal_lm", tokenizer=tok)
  return d / "hf"


def _jsonl(path: Path, rows) -> Path:
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _read(path: Path):
  return [json.loads(l) for l in path.read_text().splitlines()]


def test_two_self_rewarding_rounds(tmp_path, policy_dir):
  c = _config("self_rewarding")
  c.policy.source = str(policy_dir)
  c.prompts.spec = dict(format="prompts", path=str(_jsonl(tmp_path / "p.jsonl", [
      {"prompt": f"w{20 + i} w{30 + i}"} for i in range(4)])))
  work = tmp_path / "sr"
  out = Loop(c, work).run()
  assert [r["round"] for r in out["rounds"]] == [0, 1] and out["prompts"] == 4
  for r in range(2):
    d = work / f"round_{r}"
    gens = _read(d / "generations.jsonl")
    assert len(gens) == 4 and all(len(g["responses"]) == 4 for g in gens)
    scores = _read(d / "judgments.jsonl")
    pairs = _read(d / "pairs.jsonl")
    by_prompt = {json.dumps(g["prompt"]): (g["responses"], s["scores"])
                 for g, s in zip(gens, scores)}
    for p in pairs:  # chosen = the best-scored response, rejected = the worst, gap > 0
      responses, s = by_prompt[json.dumps(p["prompt"])]
      assert all(0.0 <= x <= 5.0 for x in s)
      assert p["chosen"] == responses[s.index(max(s))]
      assert p["rejected"] == responses[s.index(min(s))]
      assert p["strength"] == pytest.approx(max(s) - min(s)) and p["strength"] > 0
    summary = json.loads((d / "summary.json").read_text())
    assert summary["pairs"] == len(pairs) >= 1
    assert sum(summary["skipped"].values()) + len(pairs) == 4
    assert summary["judge_scores"]["unscorable"] == 0
    assert (d / "dpo" / "summary.json").exists()
  assert out["rounds"][1]["policy"] == str(work / "round_0" / "dpo")  # round 1 continues round 0
  assert len(_read(work / "final" / "generations.jsonl")) == 4
  # Resume: every stage is on disk, so a rerun reads it back and changes nothing.
  stamp = {p: p.stat().st_mtime_ns for p in work.rglob("*.jsonl")}
  again = Loop(c, work).run()
  assert again["rounds"] == out["rounds"]
  assert {p: p.stat().st_mtime_ns for p in stamp} == stamp


def test_monitor_added_to_finished_rounds_on_rerun(tmp_path, policy_dir):
  """A loop run without an outside reward model, rerun with loop.monitor set: every finished
  round gets the monitor's mean over its stored generations, and nothing else is redone."""
  c = _config("self_rewarding")
  c.loop.rounds = 1
  c.policy.source = str(policy_dir)
  c.prompts.spec = dict(format="prompts", path=str(_jsonl(tmp_path / "p.jsonl", [
      {"prompt": f"w{20 + i} w{30 + i}"} for i in range(3)])))
  work = tmp_path / "sr"
  first = Loop(c, work).run()
  assert first["rounds"][0]["monitor_mean_on_generations"] is None
  tok = word_tokenizer(TINY.vocab_size, ("Score:", *(str(i) for i in range(10))))
  params = nn.unbox(jax.jit(LlamaRewardModel(TINY, num_labels=1).init)(
      jax.random.key(1), jnp.zeros((1, 4), jnp.int32)))["params"]
  rm = export_hf(jax.device_get(params), TINY, tmp_path / "rm", task="reward", tokenizer=tok)
  stamp = {p: p.stat().st_mtime_ns for p in work.rglob("*.jsonl")}
  c.loop.monitor = str(rm)
  again = Loop(c, work).run()
  mon = json.loads((work / "round_0" / "monitor.json").read_text())
  assert len(mon["scores"]) == 3 * c.loop.samples_per_prompt  # every stored generation scored
  assert again["rounds"][0]["monitor_mean_on_generations"] == pytest.approx(
      sum(mon["scores"]) / len(mon["scores"]))
  assert json.loads((work / "round_0" / "summary.json").read_text()) == again["rounds"][0]
  assert {k: v for k, v in again["rounds"][0].items() if k != "monitor_mean_on_generations"} == {
      k: v for k, v in first["rounds"][0].items() if k != "monitor_mean_on_generations"}
  assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # generations, judgments, pairs kept
  assert again["final_monitor_mean"] is not None


def test_one_spin_iteration(tmp_path, policy_dir):
  c = _config("spin")
  c.loop.rounds = 1
  c.policy.source = str(policy_dir)
  c.sft = dict(format="prompt_response", path=str(_jsonl(tmp_path / "sft.jsonl", [
      {"prompt": f"w{40 + i}", "response": f"w{50 + i} w{60 + i} w{70 + i}"} for i in range(3)])))
  work = tmp_path / "spin"
  out = Loop(c, work).run()
  pairs = _read(work / "round_0" / "pairs.jsonl")
  gens = _read(work / "round_0" / "generations.jsonl")
  targets = {f"w{40 + i}": f"w{50 + i} w{60 + i} w{70 + i}" for i in range(3)}
  for p in pairs:  # the SFT response is chosen, the policy's own generation rejected
    prompt = p["prompt"][-1]["content"]
    assert p["chosen"] == targets[prompt]
    assert p["rejected"] == next(g["responses"][0] for g in gens
                                 if g["prompt"][-1]["content"] == prompt)
  assert out["rounds"][0]["pairs"] == len(pairs) >= 1
  run_cfg = json.loads((work / "round_0" / "dpo" / "config.json").read_text())
  assert run_cfg["loss"]["name"] == "spin"


def test_sft_targets_from_ratings_are_each_prompts_most_helpful_response(tmp_path):
  rows = [{"prompt": "a", "response": "r1", "helpfulness": 2, "correctness": 2, "coherence": 2,
           "complexity": 2, "verbosity": 2},
          {"prompt": "a", "response": "r2", "helpfulness": 4, "correctness": 2, "coherence": 2,
           "complexity": 2, "verbosity": 2},
          {"prompt": "b", "response": "r3", "helpfulness": 1, "correctness": 2, "coherence": 2,
           "complexity": 2, "verbosity": 2}]
  got = sft_examples(dict(format="helpsteer_ratings", path=str(_jsonl(tmp_path / "r.jsonl", rows)),
                          split="all"))
  assert [(m[-1]["content"], r) for m, r in got] == [("a", "r2"), ("b", "r3")]

"""`python -m helpsteer_jax.evaluate` end to end on tiny random models with SmolLM2's tokenizer."""
import gzip
import json

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import evaluate, export
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import DataError
from helpsteer_jax.evaluation import rewardbench
from helpsteer_jax.evaluation.rows import Pair, choose_mode, load_pairs
from helpsteer_jax.models import PRESETS, LlamaForCausalLM, LlamaRewardModel


def _cfg(tok):
  return PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id)


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory, smollm2_tokenizer):
  tok = smollm2_tokenizer
  model = LlamaRewardModel(_cfg(tok), num_labels=2)
  params = nn.unbox(model.init(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  return export.export_hf(params, _cfg(tok), tmp_path_factory.mktemp("rm"), task="reward",
                          tokenizer=tok)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, smollm2_tokenizer):
  tok = smollm2_tokenizer
  model = LlamaForCausalLM(_cfg(tok))
  params = nn.unbox(model.init(jax.random.key(1), np.zeros((1, 4), np.int32)))["params"]
  out = export.export_hf(params, _cfg(tok), tmp_path_factory.mktemp("lm"), task="causal_lm",
                         tokenizer=tok)
  return out, params


ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "Five, probably.",
     "subset": "alpacaeval-easy", "id": 10},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I cannot.",
     "subset": "alpacaeval-easy", "id": 11},
    {"prompt": "Write a haiku about rain.", "chosen": "Rain taps the window\nsoft", "rejected": "No.",
     "subset": "mt-bench-hard", "id": 20},
    {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Add 3 and 5."}],
     "chosen": "8", "rejected": [{"role": "assistant", "content": "35"}],
     "subset": "math-prm", "id": 30},
    {"prompt": "Reverse a list in Go.", "chosen": "Use a loop swapping ends.",
     "rejected": "Go has no lists.", "subset": "hep-go", "id": 40},
    {"prompt": "Too long?", "chosen": "word " * 300, "rejected": "short",
     "subset": "hep-go", "id": 41},
]


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _run(tmp_path, model, data, name, *extra):
  out = tmp_path / name
  evaluate.main(["--model", str(model), "--data", str(data), "--output", str(out),
                 "--max-length", "256", "--no-progress", *extra])
  results = json.loads((out / "results.json").read_text())
  examples = [json.loads(l) for l in (out / "examples.jsonl").read_text().splitlines()]
  return out, results, examples


def test_reward_model_rewardbench(reward_dir, tmp_path):
  data = _write(tmp_path / "rb.jsonl", ROWS)
  out, res, ex = _run(tmp_path, reward_dir, data, "a")
  for f in ("results.json", "examples.jsonl", "scores.png", "margins.png", "length_bias.png"):
    assert (out / f).stat().st_size > 0
  assert res["mode"] == "reward_model" and res["evaluation"] == "rewardbench"
  assert res["max_length"] == 256
  assert res["model_context"] == PRESETS["tiny"].max_position_embeddings
  assert res["pairs"] == {"rows": 6, "scored": 5, "unscored_too_long": 1, "prompt_truncated": 0}
  assert res["unscored"] == [{"id": "41", "subset": "hep-go", "line": 6}]
  assert [e["id"] for e in ex] == ["10", "11", "20", "30", "40"]
  # Default reward: head output 0; accuracy and sections recomputed from the examples, with the
  # pair over --max-length in every denominator as a wrong answer (the official way).
  for e in ex:
    assert e["reward_chosen"] == e["outputs_chosen"][0]
    assert e["correct"] == (e["reward_chosen"] > e["reward_rejected"])
  every = [e["correct"] for e in ex] + [False]
  assert res["accuracy"] == pytest.approx(np.sum(every) / 6)
  direct = rewardbench.summarize_correct([e["subset"] for e in ex] + ["hep-go"], every)
  rb = res["rewardbench"]
  assert rb["sections"] == pytest.approx(direct["sections"])
  assert rb["subsets"]["alpacaeval-easy"]["count"] == 2 and rb["subsets"]["hep-go"]["count"] == 2
  assert rb["sections"]["Safety"] is None and rb["overall"] is None
  assert rb["mean_of_present_sections"] == pytest.approx(
      np.mean([v for v in direct["sections"].values() if v is not None]))
  assert rb["unscored_too_long_by_subset"] == {"hep-go": 1}
  assert "dropped_too_long" not in res  # only when asked
  _, res_d, ex_d = _run(tmp_path, reward_dir, data, "d", "--report-dropped")
  dropped = res_d["dropped_too_long"]
  assert res_d["accuracy"] == res["accuracy"] and ex_d == ex
  assert dropped["accuracy"] == pytest.approx(np.mean([e["correct"] for e in ex]))
  assert dropped["rewardbench"]["subsets"]["hep-go"]["count"] == 1
  assert dropped["rewardbench"]["sections"] == pytest.approx(rewardbench.summarize(
      [e["subset"] for e in ex], [e["reward_chosen"] for e in ex],
      [e["reward_rejected"] for e in ex])["sections"])
  assert res["timings"]["tokens_scored"] > 0 and res["timings"]["tokens_per_second"] > 0
  assert res["timings"]["devices"] == jax.device_count()
  # Weighted attributes: reward = 0.5 * output 0 + 2 * output 1.
  _, res_w, ex_w = _run(tmp_path, reward_dir, data, "w", "--attribute-weights", "0.5,2")
  for e, ew in zip(ex, ex_w):
    want = 0.5 * e["outputs_chosen"][0] + 2 * e["outputs_chosen"][1]
    assert ew["reward_chosen"] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_rewardbench_writes_the_leaderboard_files(reward_dir, tmp_path):
  """eval-set and eval-set-scores as allenai/reward-bench-results holds them (the fields of
  reward-bench's scripts/run_rm.py), with the pair over --max-length scored as wrong."""
  data = _write(tmp_path / "rb.jsonl", ROWS)
  out, res, ex = _run(tmp_path, reward_dir, data, "lb", "--leaderboard-name", "my-org/tiny-rm")
  board = out / "leaderboard"
  assert res["leaderboard"] == {
      "eval_set": str(board / "eval-set" / "my-org" / "tiny-rm.json"),
      "eval_set_scores": str(board / "eval-set-scores" / "my-org" / "tiny-rm.json")}
  eval_set = json.loads((board / "eval-set" / "my-org" / "tiny-rm.json").read_text())
  rb = res["rewardbench"]
  assert eval_set == {"model": "my-org/tiny-rm", "model_type": "Seq. Classifier",
                      "chat_template": "tokenizer",
                      **{s: v["accuracy"] for s, v in rb["subsets"].items()}}
  # The leaderboard's section arithmetic on the file gives our sections.
  per_subset = {k: v for k, v in eval_set.items() if k in rewardbench.SUBSET_SECTION}
  assert rewardbench.section_scores(per_subset) == pytest.approx(rb["sections"])
  scores = json.loads((board / "eval-set-scores" / "my-org" / "tiny-rm.json").read_text())
  assert set(scores) == {"model", "model_type", "chat_template", "id", "subset", "results",
                         "scores_chosen", "scores_rejected"}
  assert scores["id"] == [r["id"] for r in ROWS]  # integers, as in the dataset
  assert scores["subset"] == [r["subset"] for r in ROWS]
  assert scores["results"] == [int(e["correct"]) for e in ex] + [0]  # id 41: too long, wrong
  assert scores["scores_chosen"] == [e["reward_chosen"] for e in ex] + [None]
  assert scores["scores_rejected"] == [e["reward_rejected"] for e in ex] + [None]
  assert np.mean(scores["results"]) == pytest.approx(res["accuracy"])
  # Without a name, a local model is local/<folder>; pairwise data writes no leaderboard files.
  _, res_local, _ = _run(tmp_path, reward_dir, data, "lb_local", "--limit", "2")
  assert res_local["leaderboard"]["eval_set"].endswith(f"eval-set/local/{reward_dir.name}.json")
  out_pw, res_pw, _ = _run(tmp_path, reward_dir, data, "lb_pw", "--mode", "pairwise")
  assert "leaderboard" not in res_pw and not (out_pw / "leaderboard").exists()
  with pytest.raises(SystemExit, match="leaderboard name 'no-org'"):
    _run(tmp_path, reward_dir, data, "lb_bad", "--leaderboard-name", "no-org")


def test_a_pair_longer_than_4096_tokens_is_scored_and_counted_by_default(smollm2_tokenizer,
                                                                        tmp_path):
  """Default length limit: the model's context (here 8192), so a ~4300-token pair that a fixed
  limit of 4096 would drop is scored and counted; a limit above the context is refused."""
  tok = smollm2_tokenizer
  cfg = _cfg(tok).replace(max_position_embeddings=8192)
  model = LlamaRewardModel(cfg, num_labels=1)
  params = nn.unbox(model.init(jax.random.key(2), np.zeros((1, 4), np.int32)))["params"]
  rm = export.export_hf(params, cfg, tmp_path / "rm8k", task="reward", tokenizer=tok)
  long_row = {"prompt": "Tell me a long story.", "chosen": "once upon a time " * 1050,
              "rejected": "No.", "subset": "hep-go", "id": 50}
  data = _write(tmp_path / "rb.jsonl", ROWS[:5] + [long_row])
  out = tmp_path / "default"
  evaluate.main(["--model", str(rm), "--data", str(data), "--output", str(out), "--no-progress"])
  res = json.loads((out / "results.json").read_text())
  ex = [json.loads(l) for l in (out / "examples.jsonl").read_text().splitlines()]
  assert res["pairs"]["rows"] == res["pairs"]["scored"] == 6  # 4096 would have dropped one
  assert res["max_length"] == res["model_context"] == 8192 and res["unscored"] == []
  assert 4096 < ex[-1]["prompt_tokens"] + ex[-1]["chosen_tokens"] <= 8192 and ex[-1]["id"] == "50"
  assert res["rewardbench"]["subsets"]["hep-go"]["count"] == 2
  assert res["accuracy"] == pytest.approx(np.mean([e["correct"] for e in ex]))
  with pytest.raises(SystemExit, match="exceeds the model's context of 8192"):
    evaluate.main(["--model", str(rm), "--data", str(data), "--output", str(out),
                   "--max-length", "9000", "--no-progress"])


def test_dpo_against_itself_is_all_ties(lm_dir, tmp_path):
  model_dir, _ = lm_dir
  data = _write(tmp_path / "rb.jsonl", ROWS[:5])
  _, res, ex = _run(tmp_path, model_dir, data, "dpo", "--dpo-reference", str(model_dir))
  assert res["mode"] == "dpo" and res["timings"]["forward_passes_per_sequence"] == 2
  assert all(e["margin"] == 0.0 and e["reward_chosen"] == 0.0 for e in ex)
  assert all(e["logp_chosen"] == e["ref_logp_chosen"] for e in ex)
  assert res["accuracy"] == 0.0 and res["ties"] == 5
  assert res["rewardbench"]["sections"]["Chat"] == 0.0
  same_pass = res["policy_reference_free_same_pass"]
  assert set(same_pass) == {"sum", "average", "norm"}


def test_reference_free_log_probs_exclude_the_prompt(lm_dir, tmp_path, smollm2_tokenizer):
  model_dir, params = lm_dir
  tok = smollm2_tokenizer
  data = _write(tmp_path / "rb.jsonl", ROWS[:5])
  _, res_sum, ex_sum = _run(tmp_path, model_dir, data, "sum", "--reference-free", "sum")
  _, res_avg, ex_avg = _run(tmp_path, model_dir, data, "avg", "--reference-free", "average")
  _, res_norm, ex_norm = _run(tmp_path, model_dir, data, "norm", "--reference-free", "norm")
  assert res_sum["mode"] == "reference_free_sum" and res_norm["mode"] == "reference_free_norm"
  # Direct: log_softmax of the model's logits, summed over the response tokens only.
  row = ROWS[3]
  messages = row["prompt"]
  (enc, _), _ = ChatEncoder(tok, 256).encode(messages, ["8", "35"])
  logits = LlamaForCausalLM(_cfg(tok)).apply({"params": params}, enc.input_ids[None])[0]
  logp = np.asarray(jax.nn.log_softmax(logits.astype(np.float32), axis=-1))
  tokens = [logp[t - 1, enc.input_ids[t]] for t in range(enc.prompt_len, len(enc.input_ids))]
  assert ex_sum[3]["chosen_tokens"] == len(tokens) > 0
  assert ex_sum[3]["reward_chosen"] == pytest.approx(sum(tokens), rel=1e-4)
  assert ex_avg[3]["reward_chosen"] == pytest.approx(np.mean(tokens), rel=1e-4)
  assert ex_norm[3]["reward_chosen"] == pytest.approx(-np.linalg.norm(tokens), rel=1e-4)
  for res in (res_sum, res_avg, res_norm):
    assert res["accuracy"] == pytest.approx(
        np.mean([e["reward_chosen"] > e["reward_rejected"] for e in
                 {"reference_free_sum": ex_sum, "reference_free_average": ex_avg,
                  "reference_free_norm": ex_norm}[res["mode"]]]))
  assert res_sum["policy_reference_free_same_pass"]["norm"]["accuracy"] == res_norm["accuracy"]
  # The leaderboard's name and type for a reference-free DPO score (reward-bench's run_dpo.py).
  board = json.loads(open(res_norm["leaderboard"]["eval_set"]).read())
  assert res_norm["leaderboard"]["eval_set"].endswith(f"/local/{model_dir.name}_ref_free.json")
  assert board["model_type"] == "DPO Ref. Free" and board["ref_model"] is None


def test_pairwise_mode_with_strength_buckets(reward_dir, tmp_path):
  rows = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
           "strength": s} for r, s in zip(ROWS[:5], (1, 1, 2, 3, 3))]
  data = _write(tmp_path / "pw.jsonl", rows)
  _, res, ex = _run(tmp_path, reward_dir, data, "pw")
  assert res["evaluation"] == "pairwise" and "rewardbench" not in res
  buckets = res["pairwise"]["by_strength"]
  assert {k: v["count"] for k, v in buckets.items()} == {"1": 2, "2": 1, "3": 2}
  assert buckets["3"]["accuracy"] == pytest.approx(np.mean([e["correct"] for e in ex[3:]]))
  # RewardBench-format data forced to pairwise mode.
  _, res2, _ = _run(tmp_path, reward_dir, _write(tmp_path / "rb.jsonl", ROWS[:5]), "pw2",
                    "--mode", "pairwise")
  assert res2["evaluation"] == "pairwise" and res2["accuracy"] is not None


def test_bad_rows_name_file_and_line(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt": "x", "rejected": "y"}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: missing column 'chosen'"):
    load_pairs(str(bad))
  with pytest.raises(SystemExit, match=r"bad.jsonl:2: missing column 'chosen'"):
    evaluate.main(["--model", "unused", "--data", str(bad), "--output", str(tmp_path / "o")])
  bad.write_text(json.dumps(ROWS[0]) + "\n{oops\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
    load_pairs(str(bad))
  bad.write_text(json.dumps({**ROWS[0], "chosen": "  "}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:1: chosen is empty"):
    load_pairs(str(bad))
  with pytest.raises(DataError, match=r"missing.jsonl: no such file"):
    load_pairs(str(tmp_path / "missing.jsonl"))
  pairs = [Pair("1", None, [], "a", "b", None, "f", 1)]
  with pytest.raises(DataError, match=r"f:1: --mode rewardbench needs a 'subset'"):
    choose_mode(pairs, "rewardbench")


FLAT = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": "No.",
         "subset": "alpacaeval-easy", "id": i} for i in range(4)]


def test_pairs_are_read_by_the_data_readers_gz_json_and_parquet(tmp_path):
  """The evaluation rows come through data.reading: jsonl.gz, a JSON array and parquet read as
  the jsonl does, and a bad row of a gzipped file is named `file:line`."""
  pd = pytest.importorskip("pandas")
  plain = load_pairs(str(_write(tmp_path / "rb.jsonl", FLAT)))
  gz = tmp_path / "rb.jsonl.gz"
  gz.write_bytes(gzip.compress((tmp_path / "rb.jsonl").read_bytes()))
  array = tmp_path / "rb.json"
  array.write_text(json.dumps(FLAT, indent=1))
  parquet = tmp_path / "rb.parquet"
  pd.DataFrame(FLAT).to_parquet(parquet)
  for path in (gz, array, parquet):
    got = load_pairs(str(path))
    assert [(p.id, p.line, p.subset, p.messages, p.chosen, p.rejected) for p in got] == \
        [(p.id, p.line, p.subset, p.messages, p.chosen, p.rejected) for p in plain], path
    assert {p.source for p in got} == {str(path)}
  bad = tmp_path / "bad.jsonl.gz"
  bad.write_bytes(gzip.compress((json.dumps(FLAT[0]) + "\n" + json.dumps({"prompt": "x"})
                                 + "\n").encode()))
  with pytest.raises(DataError, match=rf"^{bad}:2: missing column 'chosen'"):
    load_pairs(str(bad))
  with pytest.raises(SystemExit, match=rf"{bad}:2: missing column 'chosen'"):
    evaluate.main(["--model", "unused", "--data", str(bad), "--output", str(tmp_path / "o")])


def test_shared_rewardbench_head_parses(shared_data):
  path = shared_data / "rewardbench_filtered_head500.jsonl"
  if not path.exists():
    pytest.skip(f"{path} is absent")
  pairs = load_pairs(str(path), limit_per_subset=3)
  by = {}
  for p in pairs:
    by[p.subset] = by.get(p.subset, 0) + 1
  assert set(by) <= set(rewardbench.SUBSET_SECTION) and all(v <= 3 for v in by.values())
  assert choose_mode(pairs, "auto") == "rewardbench"
  assert len(load_pairs(str(path), limit=7)) == 7

"""The score and export command lines on a tiny random reward model with SmolLM2's tokenizer."""
import gzip
import json

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import export, score
from helpsteer_jax.data.records import DataError
from helpsteer_jax.evaluation.score_rows import score_file
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.models import PRESETS, LlamaRewardModel, load_pretrained


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory, smollm2_tokenizer):
  tok = smollm2_tokenizer
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
  model = LlamaRewardModel(cfg, num_labels=2)
  params = nn.unbox(model.init(jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  out = tmp_path_factory.mktemp("rm")
  export.export_hf(params, cfg, out, task="reward", tokenizer=tok)
  return out, cfg, params


ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "Five, probably."},
    {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name a colour."}],
     "chosen": "Blue.", "rejected": [{"role": "assistant", "content": "I cannot."}]},
    {"prompt": "Say something long." * 5, "response": "Something long. " * 30},
]


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def test_scores_equal_direct_model_and_do_not_depend_on_batching(reward_dir, tmp_path,
                                                                 smollm2_tokenizer):
  model_dir, cfg, params = reward_dir
  inp = _write(tmp_path / "in.jsonl", ROWS)
  score.main(["--model", str(model_dir), "--input", str(inp), "--output", str(tmp_path / "a"),
              "--batch-size", "8"])
  score.main(["--model", str(model_dir), "--input", str(inp), "--output", str(tmp_path / "b"),
              "--batch-size", "1", "--head-index", "1"])
  a = [json.loads(l) for l in (tmp_path / "a").read_text().splitlines()]
  b = [json.loads(l) for l in (tmp_path / "b").read_text().splitlines()]
  assert [r["prompt"] for r in a] == [r["prompt"] for r in ROWS]  # input order kept
  # Direct computation for the single response of row 3, rendered once without extra specials.
  tok = smollm2_tokenizer
  text = tok.apply_chat_template([{"role": "user", "content": ROWS[2]["prompt"]},
                                  {"role": "assistant", "content": ROWS[2]["response"]}],
                                 tokenize=False)
  ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"])[None]
  direct = np.asarray(jax.jit(LlamaRewardModel(cfg, num_labels=2).apply)({"params": params},
                                                                         ids))[0]
  np.testing.assert_allclose(a[2]["reward"], direct[0], atol=1e-5)
  np.testing.assert_allclose(a[2]["outputs"], direct, atol=1e-5)
  for ra, rb in zip(a, b):
    for field in ("chosen", "rejected") if "chosen" in ra else ("",):
      key = "outputs" + (f"_{field}" if field else "")
      np.testing.assert_allclose(ra[key], rb[key], atol=1e-5)
      assert rb["reward" + (f"_{field}" if field else "")] == pytest.approx(rb[key][1])
  assert a[0]["reward_chosen"] != a[0]["reward_rejected"]


def test_bad_rows_name_file_and_line(reward_dir, tmp_path):
  model_dir, _, _ = reward_dir
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: needs both"):
    score_file(str(model_dir), bad, tmp_path / "o")
  bad.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
  with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
    score_file(str(model_dir), bad, tmp_path / "o")
  bad.write_text(json.dumps({"prompt": "x", "response": "  "}) + "\n")
  with pytest.raises(DataError, match=r"bad.jsonl:1: response is empty"):
    score_file(str(model_dir), bad, tmp_path / "o")


def test_gzipped_and_parquet_input_score_as_jsonl_and_bad_rows_name_file_and_line(reward_dir,
                                                                                    tmp_path):
  """score reads its rows through data.reading: a .jsonl.gz or .parquet file scores exactly as the
  .jsonl does, and a bad row of a gzipped file is named `file:line` before the model loads."""
  pd = pytest.importorskip("pandas")
  model_dir, _, _ = reward_dir
  rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": "No."}
          for i in range(3)]
  plain = _write(tmp_path / "in.jsonl", rows)
  gz = tmp_path / "in.jsonl.gz"
  gz.write_bytes(gzip.compress(plain.read_bytes()))
  parquet = tmp_path / "in.parquet"
  pd.DataFrame(rows).to_parquet(parquet)
  out = {}
  for path in (plain, gz, parquet):
    score.main(["--model", str(model_dir), "--input", str(path),
                "--output", str(tmp_path / f"{path.name}.out")])
    out[path.name] = [json.loads(l) for l in
                      (tmp_path / f"{path.name}.out").read_text().splitlines()]
  assert out["in.jsonl.gz"] == out["in.jsonl"] == out["in.parquet"]
  assert [r["prompt"] for r in out["in.jsonl"]] == [r["prompt"] for r in rows]
  bad = tmp_path / "bad.jsonl.gz"
  bad.write_bytes(gzip.compress((json.dumps(rows[0]) + "\n{oops\n").encode()))
  with pytest.raises(SystemExit, match=rf"^error: {bad}:2: not valid JSON"):
    score.main(["--model", str(tmp_path / "no_model"), "--input", str(bad),
                "--output", str(tmp_path / "o")])


def test_one_bos_when_the_template_has_it(smollm2_tokenizer):
  tok = smollm2_tokenizer
  saved = tok.chat_template
  try:
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: "
                         "{{ m['content'] }}\n{% endfor %}")
    (enc,), _ = ChatEncoder(tok, 100).encode([{"role": "user", "content": "hi"}], ["yo"])
    ids = list(enc.input_ids)
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
  finally:
    tok.chat_template = saved


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_export_cli_causal_lm_from_gguf_and_reward_needs_head(tmp_path):
  from helpsteer_jax.models import smollm2_gguf_path
  try:
    smollm2_gguf_path()
  except FileNotFoundError as e:
    pytest.skip(str(e))
  with pytest.raises(SystemExit, match="^error: .*no reward head"):  # one line, no traceback
    export.main(["--model", "smollm2", "--out", str(tmp_path / "r"), "--task", "reward"])
  export.main(["--model", "smollm2", "--out", str(tmp_path / "c"), "--task", "causal_lm"])
  back = load_pretrained(str(tmp_path / "c"), tokenizer=False)
  orig = load_pretrained("smollm2", tokenizer=False)
  assert back.config.tie_word_embeddings and "lm_head" not in back.params
  for (pa, a), (pb, b) in zip(jax.tree_util.tree_leaves_with_path(orig.params),
                              jax.tree_util.tree_leaves_with_path(back.params)):
    assert pa == pb
    np.testing.assert_array_equal(a, b)
  assert (tmp_path / "c" / "tokenizer.json").exists()

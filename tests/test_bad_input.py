"""Bad input ends in one line naming the file and row, never in a traceback.

Readers: a file that is not UTF-8 (a latin-1 byte in row 3) is a DataError naming `file:3`, as bad
JSON or a missing column already were. Commands: each CLI run on such a file (in a subprocess, as
a user runs it) exits non-zero with one `error: ...` line naming the file and row, and no
'Traceback'. The trainers need the packaged SmolLM2 tokenizer (their `:tiny` configs use it).
"""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpsteer_jax.data import DataSpec, load_preferences
from helpsteer_jax.data.reading import read_rows, read_text, text_lines
from helpsteer_jax.data.records import Counts, DataError

REPO = Path(__file__).resolve().parents[1]
LATIN1 = "café".encode("latin-1")  # b"caf\xe9": not UTF-8


def _rating(prompt: str, response: str) -> dict:
  return {"prompt": prompt, "response": response, "helpfulness": 3, "correctness": 3,
          "coherence": 4, "complexity": 1, "verbosity": 1}


def _jsonl(rows: list[dict], bad_row: int) -> bytes:
  """JSON lines whose row `bad_row` (1-based) has its "response" spelled in latin-1."""
  lines = [json.dumps(r).encode() for r in rows]
  lines[bad_row - 1] = lines[bad_row - 1].replace(b"REPLACE", LATIN1)
  return b"\n".join(lines) + b"\n"


def _ratings_file(path: Path) -> Path:
  rows = [_rating(f"Question {i}?", f"Answer {i}." if i != 3 else "REPLACE") for i in range(1, 6)]
  path.write_bytes(_jsonl(rows, 3))
  return path


def _pairs_file(path: Path) -> Path:
  rows = [{"prompt": f"Q{i}?", "chosen": "yes", "rejected": "REPLACE" if i == 3 else "no"}
          for i in range(1, 6)]
  path.write_bytes(_jsonl(rows, 3))
  return path


def _prompts_file(path: Path) -> Path:
  rows = [{"prompt": f"Question {i}? REPLACE" if i == 3 else f"Question {i}?"}
          for i in range(1, 6)]
  path.write_bytes(_jsonl(rows, 3))
  return path


# ----------------------------------------------------------------------------- readers
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".json"])
def test_non_utf8_row_is_a_data_error_naming_file_and_row(tmp_path, suffix):
  data = _pairs_file(tmp_path / "tmp.jsonl").read_bytes()
  if suffix == ".json":  # a JSON array, one row per line after the opening bracket
    rows = data.strip().split(b"\n")
    data = b"[" + b",\n".join(rows) + b"]\n"  # the bad row stays on line 3
  path = tmp_path / f"bad{suffix}"
  path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
  with pytest.raises(DataError, match=rf"^bad{suffix.replace('.', '[.]')}:3: not UTF-8"):
    list(read_rows(path, counts=Counts()))
  spec = DataSpec.create({"format": "chosen_rejected", "path": str(path)})
  with pytest.raises(DataError, match=rf"^bad{suffix.replace('.', '[.]')}:3: not UTF-8"):
    load_preferences(spec)
  # skip_invalid skips bad JSON rows, not a file in the wrong encoding (every non-ASCII row of a
  # latin-1 file would quietly vanish).
  with pytest.raises(DataError, match=":3: not UTF-8"):
    load_preferences(DataSpec.create({"format": "chosen_rejected", "path": str(path),
                                      "skip_invalid": True}))


def test_text_readers_name_the_line_and_accept_a_bom(tmp_path):
  path = tmp_path / "x.txt"
  path.write_bytes(b"\xef\xbb\xbfone\ntwo\nthr\xe9e\n")
  with pytest.raises(DataError, match=r"x\.txt:3: not UTF-8 text \(byte 0xe9 at byte 4 "):
    list(text_lines(path))
  with pytest.raises(DataError, match=r"x\.txt:3: not UTF-8 text \(byte 0xe9 at byte 4 "):
    read_text(path)
  path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "Q?", "chosen": "a",
                                                 "rejected": "b"}).encode() + b"\n")
  (row,) = read_rows(path.rename(tmp_path / "bom.jsonl"), counts=Counts())
  assert row == ("bom.jsonl", 1, {"prompt": "Q?", "chosen": "a", "rejected": "b"})


def test_score_evaluate_and_prompt_readers_name_file_and_row(tmp_path):
  from helpsteer_jax.evaluation import rows
  from helpsteer_jax.rlhf.prompts import load_prompts
  pairs = _pairs_file(tmp_path / "pairs.jsonl")
  with pytest.raises(DataError, match=rf"^{pairs}:3: not UTF-8"):
    rows.load_response_rows(pairs)
  with pytest.raises(DataError, match=rf"^{pairs}:3: not UTF-8"):
    rows.load_pairs(str(pairs))
  prompts = _prompts_file(tmp_path / "prompts.jsonl")
  with pytest.raises(DataError, match=r"^prompts\.jsonl:3: not UTF-8"):
    load_prompts({"format": "prompts", "path": str(prompts), "split": "all"})


# ----------------------------------------------------------------------------- commands
def _run(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user runs it
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout, check=False)


def _assert_one_error_line(proc: subprocess.CompletedProcess, where: str) -> None:
  out = proc.stdout + proc.stderr
  assert proc.returncode != 0, out
  assert "Traceback" not in out, out
  lines = proc.stderr.strip().splitlines()
  assert lines and lines[-1].startswith("error: ") and where in lines[-1], out
  assert sum(where in line for line in out.splitlines()) == 1, out  # said once, on one line


def test_score_cli(tmp_path):
  """The rows are read before the model is loaded, so no model is needed to see the error."""
  bad = _pairs_file(tmp_path / "bad.jsonl")
  proc = _run("helpsteer_jax.score", "--model", str(tmp_path / "no_model"), "--input", str(bad),
              "--output", str(tmp_path / "out.jsonl"))
  _assert_one_error_line(proc, f"{bad}:3: not UTF-8")


def test_evaluate_cli(tmp_path):
  bad = _pairs_file(tmp_path / "bad.jsonl")
  proc = _run("helpsteer_jax.evaluate", "--model", str(tmp_path / "no_model"), "--data", str(bad),
              "--output", str(tmp_path / "out"))
  _assert_one_error_line(proc, f"{bad}:3: not UTF-8")


def test_score_cli_on_a_missing_model(tmp_path):
  good = tmp_path / "good.jsonl"
  good.write_text(json.dumps({"prompt": "Q?", "response": "A."}) + "\n", encoding="utf-8")
  proc = _run("helpsteer_jax.score", "--model", str(tmp_path / "no_model"), "--input", str(good),
              "--output", str(tmp_path / "out.jsonl"))
  _assert_one_error_line(proc, f"{tmp_path / 'no_model'}")


@pytest.mark.parametrize("module", ["helpsteer_jax.export", "helpsteer_jax.expo"])
def test_export_and_expo_cli_on_a_broken_model(tmp_path, module):
  model = tmp_path / "model"
  model.mkdir()
  (model / "config.json").write_bytes(b'{\n  "model_type": "llama",\n  "name": "caf\xe9"\n}\n')
  args = (["--model", str(model), "--task", "reward"] if module.endswith("export") else
          ["--init", str(model), "--aligned", str(model), "--alpha", "0.3"])
  proc = _run(module, *args, "--out", str(tmp_path / "out"))
  _assert_one_error_line(proc, f"{model / 'config.json'}:3: not UTF-8")


@pytest.mark.slow
def test_train_cli(tmp_path, smollm2_tokenizer):
  del smollm2_tokenizer  # skips where the packaged tokenizer is absent
  bad = _ratings_file(tmp_path / "bad.jsonl")
  proc = _run("helpsteer_jax.train", "--config", "experiments/bt.py:tiny",
              f"--config.data.train.path={bad}", f"--config.data.eval.path={bad}",
              "--workdir", str(tmp_path / "run"))
  _assert_one_error_line(proc, "bad.jsonl:3: not UTF-8")


@pytest.mark.slow
def test_rlhf_train_cli(tmp_path, smollm2_tokenizer):
  del smollm2_tokenizer
  bad = _prompts_file(tmp_path / "bad.jsonl")
  proc = _run("helpsteer_jax.rlhf.train", "--config", "experiments/reinforce.py:tiny",
              f"--config.data.prompts.path={bad}", "--workdir", str(tmp_path / "run"))
  _assert_one_error_line(proc, "bad.jsonl:3: not UTF-8")

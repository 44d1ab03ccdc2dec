"""Weighted data mixtures (helpsteer_jax/data/mixture.py): counts, determinism, column mapping,
training, and an exact resume mid-mixture after SIGKILL.

The mixture here needs nothing beside the repository: the packaged HelpSteer sample's pairs and a
small chosen/rejected file with its own column names, written by the test.
"""
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from helpsteer_jax.data import DataError, load_preferences, mixture
from helpsteer_jax.training.configs import HELPSTEER_SAMPLE_PATH
from helpsteer_jax.training.data_setup import build_data
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]


def _qa_file(path: Path, n: int = 30) -> Path:
  rows = [{"question": f"Question {i}: what is {i} + {i}?", "good": f"It is {2 * i}.",
           "bad": f"It is {2 * i + 1}.", "id": i} for i in range(n)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _config_file(tmp_path: Path, qa: Path, size: int = 40) -> Path:
  """A tiny BT config whose training data is a two-source mixture (3:1)."""
  path = tmp_path / "mix_config.py"
  path.write_text(textwrap.dedent(f"""
      from helpsteer_jax.training.configs import HELPSTEER_SAMPLE_PATH, get_base_config

      def get_config(arg="tiny"):
        c = get_base_config("bt", "tiny")
        c.data.train = dict(size={size}, mixture=dict(
            helpsteer=dict(format="helpsteer_ratings_pairs", path=HELPSTEER_SAMPLE_PATH,
                           split="train", weight=3.0),
            qa=dict(format="chosen_rejected", path={str(qa)!r}, weight=1.0,
                    columns=dict(prompt="question", chosen="good", rejected="bad"))))
        c.data.max_train_examples = 0
        return c
      """))
  return path


def test_allocation_is_exact_and_draws_are_deterministic():
  assert mixture.allocate([3, 1], 40) == [30, 10]
  assert sum(mixture.allocate([1, 1, 1], 10)) == 10
  items = list(range(7))
  a, passes = mixture.draw(items, 16, seed=0, name="x")
  assert passes == 3 and a == mixture.draw(items, 16, seed=0, name="x")[0]
  assert a != mixture.draw(items, 16, seed=0, name="y")[0]  # each source its own stream
  counts = np.bincount(a, minlength=7)
  assert counts.max() - counts.min() <= 1  # whole passes: no example twice more than another
  mixed, lines = mixture.mix({"a": list(range(10)), "b": list(range(100, 104))},
                             {"a": 1.0, "b": 1.0}, seed=0, weighting="sizes")
  assert sorted(mixed) == list(range(10)) + list(range(100, 104))  # sizes, weight 1: each once
  mixed, lines = mixture.mix({"a": list(range(10)), "b": list(range(100, 104))},
                             {"a": 1.0, "b": 1.0}, seed=0, size=10)
  assert sum(x >= 100 for x in mixed) == 5 and "b: share 0.500 -> 5 of 4 examples (2 passes)" in \
      lines[1]
  with pytest.raises(DataError, match="weight must be > 0"):
    mixture.components({"mixture": {"a": {"format": "hh_rlhf", "path": "x", "weight": 0}}})
  with pytest.raises(DataError, match="unknown mixture key"):
    mixture.components({"mixture": {}, "sizes": 3})


def test_column_mapping_reads_other_names_and_names_the_row_it_lacks(tmp_path):
  qa = _qa_file(tmp_path / "qa.jsonl", 3)
  spec = dict(format="chosen_rejected", path=str(qa),
              columns=dict(prompt="question", chosen="good", rejected="bad"))
  pairs, counts = load_preferences(spec, loss="bt")
  assert len(pairs) == 3 and counts.rows == 3
  assert "what is 1 + 1" in str(pairs[1].messages) and pairs[1].chosen == "It is 2."
  assert pairs[1].rejected == "It is 3." and pairs[1].row == 2
  rows = qa.read_text().splitlines()
  bad = json.loads(rows[1])
  del bad["bad"]
  rows[1] = json.dumps(bad)
  qa.write_text("\n".join(rows) + "\n")
  with pytest.raises(DataError, match=r"qa.jsonl:2: no column 'bad'"):
    load_preferences(spec, loss="bt")
  pairs, counts = load_preferences(dict(spec, skip_invalid=True), loss="bt")
  assert len(pairs) == 2 and counts.invalid == 1 and counts.rows == 3


def test_mixture_config_builds_the_shares_and_reports_per_source(tmp_path, smollm2_tokenizer):
  qa = _qa_file(tmp_path / "qa.jsonl")
  c = launch.load_config(_config_file(tmp_path, qa))
  data = build_data(c, smollm2_tokenizer)
  assert len(data.train.examples) == 40
  assert "mixture helpsteer: share 0.750 -> 30 of" in data.report
  assert "mixture qa: share 0.250 -> 10 of 30 examples (1 pass)" in data.report
  assert "train [qa] qa.jsonl: rows=30 kept=30" in data.report
  again = build_data(c, smollm2_tokenizer)
  first = lambda d: next(iter(d.train.iterate(1)))["input_ids"]
  np.testing.assert_array_equal(first(data), first(again))


def _cmd(config, workdir, steps):
  return [sys.executable, "-m", "helpsteer_jax.train", "--config", f"{config}:tiny",
          "--workdir", str(workdir), f"--config.train.steps={steps}",
          "--config.train.checkpoint_every=2", "--config.train.record_batches=True"]


def _env():
  import os
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
              HF_HUB_OFFLINE="1")


@pytest.mark.slow
def test_mixture_run_resumes_exactly_after_sigkill(tmp_path):
  from helpsteer_jax.training.checkpoint import restore_params
  config = _config_file(tmp_path, _qa_file(tmp_path / "qa.jsonl"))
  steps = 10  # 40 drawn examples, batch 8: the run crosses an epoch of the mixture
  ref, run = tmp_path / "ref", tmp_path / "run"
  done = subprocess.run(_cmd(config, ref, steps), cwd=REPO, env=_env(), capture_output=True)
  assert done.returncode == 0, done.stderr.decode()[-2000:]
  assert b"mixture qa: share 0.250 -> 10 of 30 examples" in done.stderr
  proc = subprocess.Popen(_cmd(config, run, steps), cwd=REPO, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = run / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline:
    if ckpts.is_dir() and any(p.name.isdigit() and int(p.name) >= 4 for p in ckpts.iterdir()):
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  interrupted_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert interrupted_at < steps
  subprocess.run(_cmd(config, run, steps), cwd=REPO, env=_env(), check=True, capture_output=True)
  for x, y in zip(jax.tree_util.tree_leaves(restore_params(ref)),
                  jax.tree_util.tree_leaves(restore_params(run))):
    np.testing.assert_array_equal(x, y)
  log = lambda w: {json.loads(l)["step"]: json.loads(l)["sha"]
                   for l in (w / "batches.jsonl").read_text().splitlines()}
  assert log(run) == log(ref) and sorted(log(ref)) == list(range(1, steps + 1))


@pytest.mark.needs_data
def test_the_small_studys_mix_as_a_config(shared_data, smollm2_tokenizer):
  from experiments import mixture  # pylint: disable=g-import-not-at-top
  c = mixture.get_config("smollm2")
  c.data.train = mixture.mixture(data_dir=str(shared_data))
  data = build_data(c, smollm2_tokenizer)
  for name in ("helpsteer", "hh_helpful", "hh_harmless", "pandalm", "stack_exchange", "arena"):
    assert f"mixture {name}: share" in data.report and f"train [{name}]" in data.report
  assert "(1 pass)" in data.report and "(2 passes)" not in data.report  # each example once

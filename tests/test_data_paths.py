"""The default data ships with the package; a missing data file is named with its config key."""
import json
from pathlib import Path

import pytest

from helpsteer_jax.data import DataError
from helpsteer_jax.data import paths
from helpsteer_jax.training.data_setup import build_data, check_paths
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("bt", "margin_bt", "scaled_bt", "regression", "scaled_bt_from_regression", "dpo",
           "reinforce")


def _config(name, arg):
  return launch.load_config(f"{REPO}/experiments/{name}.py:{arg}")


def test_packaged_sample_with_its_attribution():
  path = Path(paths.packaged(paths.HELPSTEER_SAMPLE))
  rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
  assert len(rows) == 500
  assert set(rows[0]) == {"prompt", "response", "helpfulness", "correctness", "coherence",
                          "complexity", "verbosity"}
  notice = (path.parent / "README.md").read_text(encoding="utf-8")
  assert "CC-BY-4.0" in notice and "nvidia/HelpSteer" in notice
  with pytest.raises(FileNotFoundError, match="not shipped"):
    paths.packaged("rewardbench_filtered_head500.jsonl")


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["tiny", "smollm2"])
def test_small_configs_read_only_packaged_data(name, variant, monkeypatch, tmp_path):
  # With the shared folder pointing nowhere, the small variants still find all their data.
  monkeypatch.setenv(paths.SHARED_DATA_ENV, str(tmp_path / "absent"))
  c = _config(name, variant)
  sources = [c.data[k] for k in ("train", "eval", "eval_ratings", "prompts") if c.data.get(k)]
  assert sources
  for source in sources:
    assert source["path"] == paths.packaged(paths.HELPSTEER_SAMPLE)
    assert Path(source["path"]).is_file()


def test_missing_file_names_file_key_and_env(monkeypatch, tmp_path):
  c = _config("bt", "tiny")
  c.data.eval.path = str(tmp_path / "nowhere" / "eval.jsonl")
  with pytest.raises(DataError) as e:
    check_paths(c.data)
  msg = str(e.value)
  assert str(tmp_path / "nowhere" / "eval.jsonl") in msg and "data.eval.path" in msg
  assert "--config.data.eval.path=" in msg
  # A path under the shared folder also says which environment variable chose that folder.
  monkeypatch.setenv(paths.SHARED_DATA_ENV, str(tmp_path / "shared"))
  c.data.eval.path = str(tmp_path / "shared" / "rewardbench.jsonl")
  with pytest.raises(DataError, match=r"\$HELPSTEER_SHARED_DATA=.*shared"):
    build_data(c, tokenizer=None)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["llama3_8b", "llama3_70b"])
def test_full_size_configs_start_from_instruct_models(name, variant):
  # The paper trains from Llama-3.1-70B-Instruct; base Llama ships no chat template, which the
  # data encoder needs. reinforce.py has no 8B variant and dpo.py only the small ones.
  if (name == "reinforce" and variant == "llama3_8b") or name == "dpo":
    pytest.skip(f"{name}.py has no {variant} variant")
  c = _config(name, variant)
  source = (c.policy if name == "reinforce" else c.model).source
  assert source.startswith("meta-llama/Llama-3.1-") and source.endswith("-Instruct"), source

"""`export` for the Hub: sharded safetensors with an index, the model card, and --push-to-hub to a
local "hub" folder that transformers loads back (a tiny random reward model, SmolLM2's tokenizer).

Tolerances: the sharded and the pushed copies hold the same float32 tensors as the single-file
export (checked bitwise), so transformers' rewards from them equal the single-file export's
exactly (same weights, same PyTorch ops on CPU). Against our own scorer (XLA vs PyTorch, float32,
rewards of order 1) 1e-4, as in tests/test_export_interop.py.
"""
import json

import jax
import numpy as np
import pytest
from flax import linen as nn
from huggingface_hub import HfApi, ModelCard
from safetensors.numpy import load_file

from helpsteer_jax import export, model_card
from helpsteer_jax.evaluation.score_rows import score_file
from helpsteer_jax.models import PRESETS, LlamaRewardModel
from helpsteer_jax.training import configs

ATOL_OURS = 1e-4  # XLA vs PyTorch, float32, rewards of order 1
PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "Five, probably."},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour; so is green.", "rejected": "No."},
    {"prompt": "Say something long. " * 6, "chosen": "Something long. " * 25, "rejected": "Short."},
]
SHARD = "100KB"  # the 12.6 MB embedding gets a file of its own; the ~0.3 MB rest several


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smollm2_tokenizer):
  """The pre-push export: one model.safetensors."""
  tok = smollm2_tokenizer
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
  params = nn.unbox(LlamaRewardModel(cfg, num_labels=1).init(
      jax.random.key(0), np.zeros((1, 4), np.int32)))["params"]
  kernel = params["score"]["kernel"]  # unit gain: rewards of order 1, far above the tolerance
  params["score"]["kernel"] = kernel / np.std(kernel) / np.sqrt(kernel.shape[0])
  return export.export_hf(params, cfg, tmp_path_factory.mktemp("rm"), task="reward",
                          tokenizer=tok)


@pytest.fixture(scope="module")
def our_rewards(model_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("scored")
  (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
  score_file(str(model_dir), tmp / "pairs.jsonl", tmp / "out.jsonl")
  rows = [json.loads(l) for l in (tmp / "out.jsonl").read_text().splitlines()]
  return np.array([[r["reward_chosen"], r["reward_rejected"]] for r in rows])


def _transformers_rewards(path) -> np.ndarray:
  """Rewards of PAIRS read by transformers from `path`, as a user (and RewardBench) reads them."""
  torch = pytest.importorskip("torch")
  import transformers  # pylint: disable=g-import-not-at-top
  tok = transformers.AutoTokenizer.from_pretrained(path)
  model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
  texts = [tok.apply_chat_template([{"role": "user", "content": p["prompt"]},
                                    {"role": "assistant", "content": p[side]}], tokenize=False)
           for p in PAIRS for side in ("chosen", "rejected")]
  with torch.no_grad():
    logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
  return logits[:, 0].numpy().reshape(len(PAIRS), 2)


def _tensors(folder) -> dict[str, np.ndarray]:
  out = {}
  for f in sorted(folder.glob("model*.safetensors")):
    out.update(load_file(str(f)))
  return out


@pytest.mark.needs_torch
def test_sharded_export_has_an_index_and_reads_the_same(model_dir, our_rewards, tmp_path, capsys):
  out = tmp_path / "sharded"
  export.main(["--model", str(model_dir), "--out", str(out), "--task", "reward",
               "--max-shard-size", SHARD])
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert printed["out"] == str(out) and printed["card"] == str(out / "README.md")
  index = json.loads((out / "model.safetensors.index.json").read_text())
  shards = sorted(p.name for p in out.glob("model*.safetensors"))
  n = len(shards)
  assert n >= 3 and not (out / "model.safetensors").exists()
  assert shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
  single = _tensors(model_dir)
  assert set(index["weight_map"]) == set(single)
  assert set(index["weight_map"].values()) == set(shards)
  assert index["metadata"]["total_size"] == sum(a.nbytes for a in single.values())
  for name in shards:  # every file within the limit, but for a single tensor larger than it
    held = load_file(str(out / name))
    assert sum(a.nbytes for a in held.values()) <= 100_000 or len(held) == 1
    assert all(index["weight_map"][k] == name for k in held)
  sharded = _tensors(out)
  assert all(np.array_equal(sharded[k], single[k]) for k in single)
  theirs = _transformers_rewards(out)
  np.testing.assert_array_equal(theirs, _transformers_rewards(model_dir))
  np.testing.assert_allclose(theirs, our_rewards, atol=ATOL_OURS, rtol=0)
  assert np.ptp(our_rewards) > 100 * ATOL_OURS  # rewards differ: the comparison can fail
  # Exported again into the same folder as one file: the shards and the index are gone.
  export.main(["--model", str(model_dir), "--out", str(out), "--task", "reward"])
  assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]


@pytest.mark.needs_torch
def test_push_to_a_local_hub_loads_back_in_transformers(model_dir, our_rewards, tmp_path):
  hub, repo = tmp_path / "hub", "my-org/tiny-rm"
  out = tmp_path / "export"
  export.main(["--model", str(model_dir), "--out", str(out), "--task", "reward",
               "--push-to-hub", repo, "--hub-dir", str(hub)])
  pushed = hub / "my-org" / "tiny-rm"
  assert sorted(p.name for p in pushed.iterdir()) == sorted(p.name for p in out.iterdir())
  assert all((pushed / p.name).read_bytes() == p.read_bytes() for p in out.iterdir())
  card = ModelCard.load(pushed / "README.md")
  assert card.text.lstrip().startswith(f"# {repo}")
  theirs = _transformers_rewards(pushed)
  np.testing.assert_array_equal(theirs, _transformers_rewards(model_dir))  # the pre-push export
  np.testing.assert_allclose(theirs, our_rewards, atol=ATOL_OURS, rtol=0)
  # Pushed again, sharded: the repo's single file goes, as upload_folder's delete_patterns does.
  export.main(["--model", str(model_dir), "--out", str(tmp_path / "export2"), "--task", "reward",
               "--max-shard-size", SHARD, "--push-to-hub", repo, "--hub-dir", str(hub)])
  assert not (pushed / "model.safetensors").exists()
  assert (pushed / "model.safetensors.index.json").exists()
  np.testing.assert_array_equal(_transformers_rewards(pushed), theirs)


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(model_dir, monkeypatch):
  """The Hub path, with HfApi's two calls recorded instead of sent (the tests have no network)."""
  calls = []

  class Info:
    commit_url = "https://huggingface.co/my-org/rm/commit/abc"

  monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(
      ("create_repo", repo_id, kw)))
  monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(
      ("upload_folder", kw)) or Info())
  url = export.push_to_hub(model_dir, "my-org/rm", private=True, commit_message="first")
  assert url == Info.commit_url
  assert calls == [
      ("create_repo", "my-org/rm", {"private": True, "exist_ok": True}),
      ("upload_folder", {"repo_id": "my-org/rm", "folder_path": model_dir,
                         "commit_message": "first",
                         "delete_patterns": ["model*.safetensors",
                                             "model.safetensors.index.json"]})]


def test_bad_hub_options_are_one_line_errors(model_dir, tmp_path):
  out = str(tmp_path / "o")
  base = ["--model", str(model_dir), "--out", out, "--task", "reward"]
  with pytest.raises(SystemExit, match="2"):  # argparse: --hub-dir alone
    export.main([*base, "--hub-dir", str(tmp_path)])
  with pytest.raises(SystemExit, match=r"^error: --push-to-hub 'no way!'"):
    export.main([*base, "--push-to-hub", "no way!"])
  with pytest.raises(SystemExit, match=r"^error: --push-to-hub 'rm': a local hub .* ORG/NAME"):
    export.main([*base, "--push-to-hub", "rm", "--hub-dir", str(tmp_path / "hub")])
  with pytest.raises(SystemExit, match=r"^error: --max-shard-size '5XB': Unit 'XB'"):
    export.main([*base, "--max-shard-size", "5XB"])
  assert not (tmp_path / "o").exists()  # each refused before anything was written


# ----------------------------------------------------------------------------- the model card
def _hf_config(folder) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps({
      "architectures": ["LlamaForSequenceClassification"], "num_hidden_layers": 2,
      "hidden_size": 64, "num_labels": 1}))


RESULTS = {  # the fields of a helpsteer-evaluate results.json the card reads
    "model": "WORKDIR", "data": "allenai/reward-bench", "mode": "reward_model",
    "reward": "head output 0", "evaluation": "rewardbench", "accuracy": 0.6875,
    "pairs": {"rows": 2985},
    "rewardbench": {"sections": {"Chat": 0.9, "Chat Hard": 0.5, "Safety": 0.75,
                                 "Reasoning": 0.625},
                    "overall": 0.69375, "mean_of_present_sections": 0.69375}}


def test_card_of_a_training_workdir_has_base_data_loss_recipe_and_results(tmp_path):
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  c = configs.get_base_config("scaled_bt", "smollm2")  # SmolLM2, the packaged HelpSteer sample
  (run / "config.json").write_text(c.to_json_best_effort())
  (run / "summary.json").write_text(json.dumps(
      {"step": 37, "eval_after": {"loss": 0.61234, "accuracy": 0.7}}))
  (run / "rb").mkdir()
  (run / "rb" / "results.json").write_text(json.dumps(RESULTS))
  (run / "other.json").write_text("{}")
  out = tmp_path / "export"
  _hf_config(out)
  path = model_card.write_card(out, source=str(run), task="reward", name="my-org/rm")
  card = ModelCard.load(path)
  meta = card.data
  assert meta.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
  assert meta.datasets == ["nvidia/HelpSteer"] and meta.license == "apache-2.0"
  assert meta.library_name == "transformers" and meta.pipeline_tag == "text-classification"
  assert set(meta.tags) == {"helpsteer_jax", "reward-model", "scaled_bt"}
  text = card.text
  assert text.lstrip().startswith("# my-org/rm")
  assert "from_pretrained('my-org/rm')" in text
  assert "`scaled_bt`: Scaled BT: Σ −m · log σ(r_c − r_r) / D (HelpSteer2-Preference" in text
  assert "| learning rate | 1e-05 (constant, 10 warm-up steps) |" in text
  assert "| length | 1.0 epochs |" in text and "| steps trained | 37 |" in text
  assert "| batch size | 4 x 1 accumulation |" in text
  assert "| max length | 1024 tokens |" in text
  assert "| precision | float32 compute, float32 weights |" in text
  assert "- Data (train): `" in text
  assert "(nvidia/HelpSteer), format `helpsteer_ratings_pairs`, split `train`" in text
  assert "accuracy 0.7, loss 0.6123" in text
  assert "`allenai/reward-bench` (2985 pairs" in text and "accuracy 68.75%" in text
  assert "| Chat Hard | 50.00 |" in text and "| overall | 69.38 |" in text


def test_card_degrades_gracefully_without_a_workdir(model_dir, tmp_path):
  out = tmp_path / "export"
  _hf_config(out)
  card = model_card.build_card(out, source=str(model_dir), task="reward")
  meta = card.data
  assert meta.base_model is None and meta.datasets is None and meta.license is None
  assert set(meta.tags) == {"helpsteer_jax", "reward-model"}
  assert "no training recipe is recorded" in card.text and "## Training" not in card.text
  assert "## Evaluation" not in card.text
  # A hub id is its own base model; results given by path are shown; a --license is kept.
  partial = {**RESULTS, "data": "rb_head500.jsonl", "rewardbench": {
      "sections": {"Chat": 0.5, "Chat Hard": None, "Safety": None, "Reasoning": None},
      "overall": None, "mean_of_present_sections": 0.5}}
  (tmp_path / "results.json").write_text(json.dumps(partial))
  card = model_card.build_card(out, source="some-org/some-rm", task="reward", license="mit",
                               eval_results_path=str(tmp_path / "results.json"))
  assert card.data.base_model == "some-org/some-rm" and card.data.license == "mit"
  assert "| Chat Hard | n/a |" in card.text
  assert "| mean of the sections present (not the official overall" in card.text
  (tmp_path / "bad.json").write_text(json.dumps({"step": 3}))
  with pytest.raises(ValueError, match="bad.json: not a results.json written by"):
    model_card.build_card(out, source=str(model_dir), task="reward",
                          eval_results_path=str(tmp_path / "bad.json"))
  with pytest.raises(ValueError, match="missing.json: cannot read it as JSON"):
    model_card.build_card(out, source=str(model_dir), task="reward",
                          eval_results_path=str(tmp_path / "missing.json"))

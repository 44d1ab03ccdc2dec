"""Exported reward models read the same rewards in transformers (5.x here, 4.51 in a venv) as ours.

The model is a tiny random Llama with SmolLM2's tokenizer and a chat template that ends every turn
with EOS (as Llama-3.x-Instruct's does with `<|eot_id|>`): transformers' sequence classifier reads
the reward at the last token that is not the pad id, we read it at the last real token (from the
attention mask), so a pad id equal to EOS moves transformers one token early.
"""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import export
from helpsteer_jax.evaluation.score_rows import score_file
from helpsteer_jax.models import PRESETS, LlamaRewardModel

INTEROP = Path(__file__).resolve().parent / "interop"
# Every turn ends with <|im_end|> (SmolLM2's EOS) and nothing follows it, so the last token of a
# rendered conversation is EOS.
EOS_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                "'<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|im_start|>assistant\n' }}{% endif %}")
# A RoPE base other than 10000, so a reader that falls back to 10000 gets other numbers.
ROPE_THETA = 100000.0
PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "Five, probably."},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour; so is green.", "rejected": "No."},
    {"prompt": "Say something long. " * 6, "chosen": "Something long. " * 25, "rejected": "Short."},
    {"prompt": "Translate 'chat' to English.", "chosen": "Cat.", "rejected": "Chat is chat."},
]
# Float32 through two implementations (XLA and PyTorch) at rewards of order 1.
ATOL_TF5 = 1e-4
ATOL_TF4 = 1e-5


@pytest.fixture(scope="module")
def eos_tokenizer(smollm2_tokenizer):
  tok = copy.deepcopy(smollm2_tokenizer)  # the fixture's tokenizer is shared: change a copy
  tok.chat_template = EOS_TEMPLATE
  assert tok.pad_token_id == tok.eos_token_id  # SmolLM2's own choice, the case that went wrong
  return tok


def _reward_params(cfg, num_labels: int, seed: int = 0):
  params = nn.unbox(LlamaRewardModel(cfg, num_labels=num_labels).init(
      jax.random.key(seed), np.zeros((1, 4), np.int32)))["params"]
  # A head of unit gain, so rewards are of order 1 (as a trained head's are) and the token the
  # reward is read at matters far beyond the tolerances.
  kernel = params["score"]["kernel"]
  params["score"]["kernel"] = kernel / np.std(kernel) / np.sqrt(kernel.shape[0])
  return params


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory, eos_tokenizer):
  tok = eos_tokenizer
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                rope_theta=ROPE_THETA)
  out = tmp_path_factory.mktemp("rm_eos")
  export.export_hf(_reward_params(cfg, 1), cfg, out, task="reward", tokenizer=tok)
  return out, cfg


@pytest.fixture(scope="module")
def our_rewards(reward_dir, tmp_path_factory):
  """Our scorer on the exported directory: [len(PAIRS), 2] (chosen, rejected)."""
  model_dir, _ = reward_dir
  tmp = tmp_path_factory.mktemp("scored")
  inp = tmp / "pairs.jsonl"
  inp.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
  score_file(str(model_dir), inp, tmp / "out.jsonl")
  rows = [json.loads(l) for l in (tmp / "out.jsonl").read_text().splitlines()]
  return np.array([[r["reward_chosen"], r["reward_rejected"]] for r in rows])


def _texts(tokenizer) -> list[str]:
  """Chosen and rejected conversations of PAIRS, rendered as RewardBench renders them."""
  return [tokenizer.apply_chat_template([{"role": "user", "content": p["prompt"]},
                                         {"role": "assistant", "content": p[side]}],
                                        tokenize=False)
          for p in PAIRS for side in ("chosen", "rejected")]


@pytest.mark.needs_torch
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_transformers_reads_the_reward_at_our_token(reward_dir, our_rewards, padding_side):
  torch = pytest.importorskip("torch")
  import transformers  # pylint: disable=g-import-not-at-top
  model_dir, _ = reward_dir
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  tok.padding_side = padding_side
  texts = _texts(tok)
  assert all(t.endswith("<|im_end|>") for t in texts)  # the template does end with EOS
  model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
  batch = tok(texts, padding=True, return_tensors="pt")  # as a user (and RewardBench) calls it
  assert batch["attention_mask"].min() == 0  # the batch is padded: the pad id is exercised
  with torch.no_grad():
    theirs = model(**batch).logits[:, 0].numpy().reshape(len(PAIRS), 2)
  np.testing.assert_allclose(theirs, our_rewards, atol=ATOL_TF5, rtol=0)
  assert np.ptp(our_rewards) > 100 * ATOL_TF5  # rewards differ: the comparison can fail


def test_pad_id_never_ends_a_sequence(reward_dir, eos_tokenizer):
  model_dir, cfg = reward_dir
  tok = eos_tokenizer
  hf = json.loads((model_dir / "config.json").read_text())
  tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
  pad_id = hf["pad_token_id"]
  assert pad_id != tok.eos_token_id
  # SmolLM2's <|endoftext|>: special, never rendered by the template, no vocabulary change.
  assert tok.convert_ids_to_tokens(pad_id) == "<|endoftext|>" == tok_cfg["pad_token"]
  assert hf["vocab_size"] == cfg.vocab_size
  last = {tok(t, add_special_tokens=False)["input_ids"][-1] for t in _texts(tok)}
  assert pad_id not in last
  assert tok.pad_token_id == tok.eos_token_id  # the caller's tokenizer is left as it was


def test_pad_id_keeps_a_safe_pad_and_prefers_a_named_one(eos_tokenizer):
  tok = copy.deepcopy(eos_tokenizer)
  cfg = PRESETS["tiny"].replace(vocab_size=len(tok), eos_token_id=tok.eos_token_id)
  tok.pad_token = "<filename>"  # a special token the template never renders: kept
  assert export.export_pad_id(tok, cfg) == tok.convert_tokens_to_ids("<filename>")
  tok.pad_token = "<|im_start|>"  # rendered in every turn: replaced
  assert export.export_pad_id(tok, cfg) == tok.unk_token_id
  tok.add_special_tokens({"additional_special_tokens": ["<|finetune_right_pad_id|>"]})
  cfg = cfg.replace(vocab_size=len(tok))
  assert export.export_pad_id(tok, cfg) == tok.convert_tokens_to_ids("<|finetune_right_pad_id|>")


def test_config_and_tokenizer_files_read_by_transformers_4(reward_dir):
  model_dir, cfg = reward_dir
  hf = json.loads((model_dir / "config.json").read_text())
  assert hf["rope_theta"] == ROPE_THETA == cfg.rope_theta  # 4.x reads only this
  assert hf["rope_parameters"]["rope_theta"] == ROPE_THETA  # 5.x reads only this
  assert "rope_scaling" not in hf or hf["rope_scaling"] is None
  tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
  assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
  assert tok_cfg["model_input_names"] == ["input_ids", "attention_mask"]


def test_config_keeps_llama3_rope_scaling_at_top_level(tmp_path):
  cfg = PRESETS["tiny"].replace(rope_theta=500000.0, max_position_embeddings=131072,
                                rope_scaling=dict(PRESETS["llama3_8b"].rope_scaling))
  params = _reward_params(cfg, 1)
  export.export_hf(params, cfg, tmp_path, task="reward")
  hf = json.loads((tmp_path / "config.json").read_text())
  assert hf["rope_theta"] == 500000.0
  assert hf["rope_scaling"] == cfg.rope_scaling
  assert hf["rope_parameters"] == {**cfg.rope_scaling, "rope_theta": 500000.0}


# ---- transformers 4.51 and the official RewardBench CLI, in their own venv (slow) ----

@pytest.fixture(scope="session")
def tf4_python() -> str:
  """The python of the transformers-4.51 venv (built once by make_tf4_venv.sh); skips without."""
  env = {**os.environ, "PYTHON": sys.executable}
  try:
    done = subprocess.run(["bash", str(INTEROP / "make_tf4_venv.sh")], env=env, check=False,
                          capture_output=True, text=True, timeout=1800)
  except subprocess.TimeoutExpired:
    pytest.skip("building the transformers-4.51 venv timed out")
  if done.returncode:
    pytest.skip(f"cannot build the transformers-4.51 venv: {done.stderr.strip()[-500:]}")
  return done.stdout.strip().splitlines()[-1]


def _run_tf4(python: str, *args: str, cwd: Path | None = None) -> str:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
             TOKENIZERS_PARALLELISM="false")
  done = subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=900, check=False)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return done.stdout


@pytest.mark.slow
def test_transformers_451_reads_our_rewards(reward_dir, our_rewards, tf4_python, tmp_path,
                                            eos_tokenizer):
  model_dir, _ = reward_dir
  texts = tmp_path / "texts.json"
  texts.write_text(json.dumps(_texts(eos_tokenizer)))
  out = json.loads(_run_tf4(tf4_python, str(INTEROP / "score_tf4.py"), str(model_dir),
                            str(texts)).splitlines()[-1])
  assert out["transformers"].startswith("4.51.")
  theirs = np.array(out["rewards"]).reshape(len(PAIRS), 2)
  np.testing.assert_allclose(theirs, our_rewards, atol=ATOL_TF4, rtol=0)


@pytest.mark.slow
def test_rewardbench_cli_reads_our_rewards(reward_dir, our_rewards, tf4_python, tmp_path):
  """`rewardbench` 0.1.4 (the official CLI) on a chosen/rejected jsonl, run on CPU."""
  model_dir, _ = reward_dir
  work = tmp_path / "rb"
  work.mkdir()
  (work / "rm").symlink_to(model_dir)  # the CLI names its outputs after --model
  rows = [{"prompt": p["prompt"],
           "chosen": [{"role": "user", "content": p["prompt"]},
                      {"role": "assistant", "content": p["chosen"]}],
           "rejected": [{"role": "user", "content": p["prompt"]},
                        {"role": "assistant", "content": p["rejected"]}]} for p in PAIRS]
  (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  _run_tf4(tf4_python, str(INTEROP / "rewardbench_cpu.py"), "--model", "rm", "--dataset",
           "pairs.jsonl", "--load_json", "--batch_size", "3", "--torch_dtype", "float32",
           "--not_quantized", "--output_dir", "out/", cwd=work)
  scored = [json.loads(l) for l in (work / "out" / "rm_outputs.jsonl").read_text().splitlines()]
  theirs = np.array([[r["scores_chosen"], r["scores_rejected"]] for r in scored])
  np.testing.assert_allclose(theirs, our_rewards, atol=ATOL_TF4, rtol=0)
  summary = json.loads((work / "out" / "rm.json").read_text())
  assert summary["num_prompts"] == len(PAIRS)
  assert summary["accuracy"] == pytest.approx(np.mean(our_rewards[:, 0] > our_rewards[:, 1]))

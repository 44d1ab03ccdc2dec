"""The GGUF tokenizer is read with gguf + tokenizers, never through torch.

The reference is transformers' own GGUF reader (which needs torch): on the texts below, ids,
decoded text and the rendered chat template must be identical (exact equality, no tolerance).
"""
import subprocess
import sys
import textwrap

import pytest

from helpsteer_jax.models import sources
from helpsteer_jax.models.gguf_tokenizer import load_gguf_tokenizer

TEXTS = (
    "Hello world <|im_end|>",
    "The year 2024 had 366 days, isn't it?\n\n  indented\tcode  ",
    "Ünïcödé — emojis 🤗 and 中文, 3.14159",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x**2  # comment\r\n",
)
MESSAGES = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture(scope="module")
def gguf_path():
  try:
    return sources.smollm2_gguf_path()
  except FileNotFoundError as e:
    pytest.skip(str(e))


def test_loading_never_imports_torch(gguf_path):
  # A fresh interpreter in which `import torch` fails, as on a machine with only `pip install -e .`.
  code = textwrap.dedent(f"""
      import sys
      sys.modules["torch"] = None  # any `import torch` now raises ImportError
      from helpsteer_jax.models import sources
      tok = sources.load_tokenizer("smollm2")
      ids = tok.apply_chat_template([{{"role": "user", "content": "hi"}}],
                                    add_generation_prompt=True, tokenize=False)
      assert tok(ids, add_special_tokens=False)["input_ids"][0] == tok.convert_tokens_to_ids(
          "<|im_start|>")
      print("ok", len(tok), tok.eos_token, tok.pad_token)
      """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split()[:4] == ["ok", "49152", "<|im_end|>", "<|im_end|>"]


def test_special_tokens_and_inputs(gguf_path):
  tok = load_gguf_tokenizer(gguf_path)
  assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<|im_start|>", "<|im_end|>",
                                                         "<|endoftext|>")
  assert tok.model_input_names == ["input_ids", "attention_mask"]
  enc = tok("a 12 b")
  assert set(enc) == {"input_ids", "attention_mask"}
  # SmolLM2's pre-tokenizer ("smollm") splits every digit on its own.
  assert tok.convert_ids_to_tokens(tok("12")["input_ids"]) == ["1", "2"]
  assert tok.convert_tokens_to_ids("<|im_end|>") == 2
  assert tok.decode(tok(TEXTS[2])["input_ids"]) == TEXTS[2]


@pytest.mark.needs_torch
def test_equals_transformers_gguf_reader(gguf_path):
  pytest.importorskip("torch")
  from transformers import AutoTokenizer
  ref = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
  ours = load_gguf_tokenizer(gguf_path)
  assert len(ours) == len(ref)
  for text in TEXTS:
    assert ours(text)["input_ids"] == ref(text)["input_ids"], text
    assert ours.decode(ours(text)["input_ids"]) == ref.decode(ref(text)["input_ids"])
  for gen in (False, True):
    assert (ours.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=gen)
            == ref.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=gen))


def test_sentencepiece_gguf_is_refused(tmp_path):
  gguf = pytest.importorskip("gguf")
  path = tmp_path / "spm.gguf"
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_tokenizer_model("llama")
  w.add_token_list(["<unk>", "<s>", "</s>", "▁a"])
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(NotImplementedError, match="spm.gguf.*'llama'.*Hugging Face directory"):
    load_gguf_tokenizer(path)

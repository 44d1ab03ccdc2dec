"""The tokenizer stored in a GGUF file, built without torch.

transformers can read a GGUF tokenizer too, but its GGUF reader imports torch, which is not a
runtime dependency here. A GGUF file carries everything a byte-level BPE tokenizer needs: the
vocabulary (`tokenizer.ggml.tokens`, with a type per token), the merges, the special-token ids,
the pre-tokenizer family (`tokenizer.ggml.pre`) and the chat template. `gguf` reads them and
`tokenizers` builds the tokenizer, which is wrapped as a transformers fast tokenizer so chat
templates, padding and `save_pretrained` work as for any Hugging Face checkpoint.

Only byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`: SmolLM2, Llama 3, GPT-2
style models) are supported; a SentencePiece GGUF (Llama 2) is refused with a clear error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# llama.cpp's token types (gguf.TokenType): 3 = control (special), 4 = user-defined (added).
_CONTROL, _USER_DEFINED = 3, 4

# The split pattern of the GPT-2 family. `tokenizer.ggml.pre` names the pre-tokenizer the model
# was trained with; llama.cpp groups them by their split regex, and so do we.
_GPT2_PRE = ("default", "gpt2", "gpt-2")
# These split every digit on its own before the GPT-2 pattern (StarCoder-style vocabularies;
# SmolLM2 is one: its Hugging Face tokenizer.json has Digits(individual_digits=True)).
_DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact", "codeshell")
# Llama 3's pattern: digits in groups of up to three, case-insensitive contractions.
_LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}"
                   r"\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_PRE = ("llama-bpe", "llama3", "llama-v3")


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def _pre_tokenizer(pre: str, path: Path):
  from tokenizers import Regex, pre_tokenizers  # pylint: disable=g-import-not-at-top

  if pre in _GPT2_PRE:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre in _DIGIT_SPLIT_PRE:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
  if pre in _LLAMA3_PRE:
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  raise NotImplementedError(
      f"{path}: GGUF pre-tokenizer {pre!r} is not supported (known: "
      f"{sorted(_GPT2_PRE + _DIGIT_SPLIT_PRE + _LLAMA3_PRE)}); load the model's Hugging Face "
      "directory instead")


def _token(reader, key: str, tokens: list[str]) -> str | None:
  i = _field(reader, key)
  return None if i is None else tokens[int(i)]


def load_gguf_tokenizer(path: str | Path):
  """A `transformers.PreTrainedTokenizerFast` from the tokenizer fields of a GGUF file."""
  from gguf import GGUFReader  # pylint: disable=g-import-not-at-top
  from tokenizers import AddedToken, Tokenizer, decoders, models, processors  # pylint: disable=g-import-not-at-top
  from transformers import PreTrainedTokenizerFast  # pylint: disable=g-import-not-at-top

  path = Path(path)
  reader = GGUFReader(str(path))
  kind = _field(reader, "tokenizer.ggml.model")
  if kind != "gpt2":
    raise NotImplementedError(
        f"{path}: GGUF tokenizer model {kind!r} is not supported (byte-level BPE 'gpt2' only); "
        "load the model's Hugging Face directory instead")
  tokens = list(_field(reader, "tokenizer.ggml.tokens"))
  types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
  vocab = {t: i for i, t in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise ValueError(f"{path}: the GGUF vocabulary repeats a token")

  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
  tok.pre_tokenizer = _pre_tokenizer(_field(reader, "tokenizer.ggml.pre", "default"), path)
  tok.decoder = decoders.ByteLevel()
  # Control tokens (<|im_start|>, <|eot_id|>, ...) are matched whole, before BPE, and are special;
  # user-defined ones are matched whole but are ordinary text.
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                          for t, ty in zip(tokens, types) if ty == _CONTROL])
  tok.add_tokens([AddedToken(t, special=False, normalized=False)
                  for t, ty in zip(tokens, types) if ty == _USER_DEFINED])

  bos = _token(reader, "tokenizer.ggml.bos_token_id", tokens)
  add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
  if add_bos and bos is not None:
    bos_id = vocab[bos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)])

  fast = PreTrainedTokenizerFast(
      tokenizer_object=tok,
      bos_token=bos,
      eos_token=_token(reader, "tokenizer.ggml.eos_token_id", tokens),
      unk_token=_token(reader, "tokenizer.ggml.unknown_token_id", tokens),
      pad_token=_token(reader, "tokenizer.ggml.padding_token_id", tokens),
      chat_template=_field(reader, "tokenizer.chat_template"),
      model_input_names=["input_ids", "attention_mask"],
      clean_up_tokenization_spaces=False,
  )
  return fast

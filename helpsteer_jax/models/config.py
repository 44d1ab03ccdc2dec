"""Llama-family architecture config, with Hugging Face field names.

One dataclass describes Llama 2 / 3 / 3.1 / 3.2 and SmolLM2: they differ only in sizes, `rope_theta`,
Llama-3 `rope_scaling`, grouped-query attention (`num_key_value_heads`) and tied embeddings.
Runtime choices (compute dtype, remat, scan over layers) live here too so one object is passed
around; they are not written to Hugging Face configs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# Fields shared with transformers' LlamaConfig (same names, same meaning).
_HF_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
    "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id",
    "pad_token_id",
)

# The projections of a decoder layer (attention, then MLP), the modules LoRA can adapt.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Architecture of a Llama decoder (Hugging Face names) plus runtime options."""
  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int | None = None  # None: multi-head attention (= num_attention_heads)
  head_dim: int | None = None  # None: hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  # Llama-3 frequency scaling: {"rope_type": "llama3", "factor", "low_freq_factor",
  # "high_freq_factor", "original_max_position_embeddings"}; None for plain RoPE.
  rope_scaling: Mapping[str, Any] | None = None
  max_position_embeddings: int = 4096
  tie_word_embeddings: bool = False
  bos_token_id: int | None = 1
  eos_token_id: int | list[int] | None = 2
  pad_token_id: int | None = None
  # Runtime options (not part of the checkpoint).
  dtype: str = "float32"  # compute dtype: "float32" or "bfloat16"; parameters stay float32
  param_dtype: str = "float32"
  # dtype of the residual stream between layers (the embeddings, each layer's input and output):
  # None = `dtype`. "float32" with dtype="bfloat16" is torch autocast's mixed precision (bf16
  # matmuls, a float32 residual stream: more accurate), and on XLA:CPU the scanned layers'
  # remat stack of layer inputs is then updated in place (a bf16 stack is converted whole to
  # float32 and back on every layer; benchmarks/RESULTS.md).
  residual_dtype: str | None = None
  # "none" | "full" | "projections" (keep the projections' outputs) | "projections_attention"
  # (and grouped attention's output and softmax statistics: no dot recomputed) | "dots" |
  # "dots_no_batch"
  remat_policy: str = "none"
  scan_layers: bool = False
  # "grouped": models/llama.grouped_attention (XLA dots in a layout with no score transposes;
  # the fastest on XLA:CPU); "xla" / "cudnn" / None: jax.nn.dot_product_attention with that
  # implementation (None lets jax choose). "grouped", "xla" and None take any mask; "cudnn" takes
  # causal right-padded rows only (flash attention with sequence lengths; left-padded or packed
  # rows give NaN, so the non-finite guard stops a run) and decodes on XLA. See llama.py.
  attention_impl: str | None = "grouped"
  # Projections in a low-precision dtype: "xla" leaves the dot to XLA; "f32_accumulate" gives
  # XLA bf16 operands with a float32 result (cast back), forward and backward (custom VJP). XLA:CPU
  # runs bf16 -> bf16 dots in float32 but bf16 -> f32 dots on AMX / AVX512-BF16 kernels (about 5x
  # the float32 matmul rate here; benchmarks/RESULTS.md). No effect in float32.
  low_precision_dots: str = "xla"
  # Backward pass of the projections: "explicit" writes dx and dw as dot_generals that need no
  # transposed activation copies (models/llama.projection_matmul); "autodiff" leaves the dot and
  # its transpose to JAX and XLA (slower on XLA:CPU: benchmarks/RESULTS.md). Same numbers.
  projection_vjp: str = "explicit"
  # Backward pass of "grouped" attention: "recompute" saves the softmax's row statistics and
  # recomputes the probabilities (no [B, heads, T, S] tensor kept per layer; llama.py); "autodiff"
  # leaves it to JAX, which keeps two float32 score-sized tensors per layer. Same numbers.
  attention_vjp: str = "recompute"
  # "grouped" self-attention in query blocks of at least this many tokens (at most 8 blocks),
  # each against the keys up to its end: the score blocks above the diagonal (all masked) are
  # never computed. 1.10x on 16 x 512-token scoring on an AVX2 CPU (benchmarks/RESULTS.md).
  # 0: one block, the whole score matrix.
  attention_causal_block: int = 64
  # Backward pass of the MLP's activation silu(gate) * up: "inputs" keeps gate and up only (which
  # the projections produce anyway) and recomputes the sigmoid, as torch does; "autodiff" leaves
  # it to JAX, which keeps three more intermediate-sized tensors per layer (about 1 GiB for
  # SmolLM2-135M at 8 x 256 tokens without remat). Same numbers up to rounding.
  activation_vjp: str = "inputs"
  # LoRA (models/lora.py): rank-r adapters beside the projections named in `lora_targets`,
  # y = x W + (alpha / r) x A B, with B zero at the start; rank 0 = no adapters. A runtime
  # option: the adapters are merged into W on export, so checkpoints out are plain Llama.
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                   "up_proj", "down_proj")

  def __post_init__(self):
    if self.num_key_value_heads is None:
      object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
    if self.head_dim is None:
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                       f"num_key_value_heads={self.num_key_value_heads}")
    if self.low_precision_dots not in ("xla", "f32_accumulate"):
      raise ValueError(f"low_precision_dots={self.low_precision_dots!r}: 'xla' or 'f32_accumulate'")
    if self.attention_impl not in ("grouped", "xla", "cudnn", None):
      raise ValueError(f"attention_impl={self.attention_impl!r}: 'grouped', 'xla', 'cudnn' or None")
    if self.residual_dtype not in (None, "float32", "bfloat16"):
      raise ValueError(f"residual_dtype={self.residual_dtype!r}: None, 'float32' or 'bfloat16'")
    if self.attention_vjp not in ("recompute", "autodiff"):
      raise ValueError(f"attention_vjp={self.attention_vjp!r}: 'recompute' or 'autodiff'")
    if self.attention_causal_block < 0:
      raise ValueError(f"attention_causal_block={self.attention_causal_block}: >= 0 (0: one block)")
    if self.activation_vjp not in ("inputs", "autodiff"):
      raise ValueError(f"activation_vjp={self.activation_vjp!r}: 'inputs' or 'autodiff'")
    if self.projection_vjp not in ("explicit", "autodiff"):
      raise ValueError(f"projection_vjp={self.projection_vjp!r}: 'explicit' or 'autodiff'")
    targets = self.lora_targets
    if isinstance(targets, str):  # "q_proj,v_proj" from a command line
      targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    object.__setattr__(self, "lora_targets", tuple(targets))
    unknown = sorted(set(self.lora_targets) - set(PROJECTIONS))
    if unknown or self.lora_rank < 0:
      raise ValueError(f"LoRA: rank {self.lora_rank} (>= 0), targets {unknown} not among "
                       f"{PROJECTIONS}")
    if self.rope_scaling is not None:
      kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
      if kind not in ("llama3", "default"):
        raise NotImplementedError(f"rope_scaling type {kind!r} is not supported (llama3 only)")
      if kind == "default":
        object.__setattr__(self, "rope_scaling", None)
      else:
        object.__setattr__(self, "rope_scaling", dict(self.rope_scaling))

  def replace(self, **kw) -> "LlamaConfig":
    return dataclasses.replace(self, **kw)

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], **runtime) -> "LlamaConfig":
    """From a Hugging Face LlamaConfig dict (config.json; transformers 4.x or 5.x layout)."""
    hf = dict(hf)
    if hf.get("model_type", "llama") != "llama":
      raise ValueError(f"not a Llama config: model_type={hf.get('model_type')!r}")
    # transformers 5 folds rope_theta and rope_scaling into rope_parameters.
    rope = hf.pop("rope_parameters", None)
    if rope:
      hf.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
      if rope.get("rope_type", "default") != "default":
        hf.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    for flag in ("attention_bias", "mlp_bias"):
      if hf.get(flag):
        raise NotImplementedError(f"{flag}=True is not supported")
    kw = {k: hf[k] for k in _HF_FIELDS if k in hf}
    return cls(**kw, **runtime)

  def to_hf(self) -> dict[str, Any]:
    """Fields for transformers.LlamaConfig(**fields) and config.json, in both major versions.

    transformers 5 reads RoPE from `rope_parameters` only, 4.x from top-level `rope_theta` and
    `rope_scaling` only (a config.json without them silently gets theta 10000 in 4.x), so all
    three are given; `rope_scaling` only when the model has it.
    """
    out = {k: getattr(self, k) for k in _HF_FIELDS if k != "rope_scaling"}
    scaling = dict(self.rope_scaling or {})
    scaling.setdefault("rope_type", scaling.pop("type", "default"))  # 4.x's older key name
    if self.rope_scaling is not None:
      out["rope_scaling"] = dict(scaling)
    out["rope_parameters"] = {**scaling, "rope_theta": self.rope_theta}
    out["model_type"] = "llama"
    out["hidden_act"] = "silu"
    return out

  @property
  def num_params(self) -> int:
    """Parameter count of the causal LM (embeddings, layers, final norm, untied head)."""
    d, h, kv, hd, f = (self.hidden_size, self.num_attention_heads, self.num_key_value_heads,
                       self.head_dim, self.intermediate_size)
    per_layer = d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f + 2 * d
    head = 0 if self.tie_word_embeddings else self.vocab_size * d
    return self.vocab_size * d + self.num_hidden_layers * per_layer + d + head


_LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

PRESETS: dict[str, LlamaConfig] = {
    # Tiny random model for tests and the `:tiny` experiment variants (GQA 4:2, untied).
    "tiny": LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                        rope_theta=10000.0, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    "smollm2_135m": LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                rms_norm_eps=1e-5, rope_theta=100000.0,
                                max_position_embeddings=8192, tie_word_embeddings=True,
                                bos_token_id=1, eos_token_id=2, pad_token_id=2),
    # Llama-3.2-1B (1,235,814,400 parameters, tied embeddings): the GPU suite's 1B-class model.
    "llama3_2_1b": LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                               num_hidden_layers=16, num_attention_heads=32,
                               num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                               rope_scaling=dict(_LLAMA31_ROPE, factor=32.0),
                               max_position_embeddings=131072, tie_word_embeddings=True,
                               bos_token_id=128000, eos_token_id=128001),
    "llama3_8b": LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                             num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                             rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE,
                             max_position_embeddings=131072, bos_token_id=128000,
                             eos_token_id=128001),
    "llama3_70b": LlamaConfig(vocab_size=128256, hidden_size=8192, intermediate_size=28672,
                              num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
                              rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=_LLAMA31_ROPE,
                              max_position_embeddings=131072, bos_token_id=128000,
                              eos_token_id=128001),
}

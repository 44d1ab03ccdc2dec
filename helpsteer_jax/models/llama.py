"""Llama decoder in Flax linen with Hugging Face parameter names and numerics.

Parameter tree (HF name -> ours is a rename plus, for linear layers, a transpose):
  model/embed_tokens/embedding                      model.embed_tokens.weight
  model/layers/{i}/input_layernorm/weight           model.layers.{i}.input_layernorm.weight
  model/layers/{i}/self_attn/{q,k,v,o}_proj/kernel  model.layers.{i}.self_attn.{q,k,v,o}_proj.weight.T
  model/layers/{i}/post_attention_layernorm/weight  ...
  model/layers/{i}/mlp/{gate,up,down}_proj/kernel   model.layers.{i}.mlp.{gate,up,down}_proj.weight.T
  model/norm/weight                                 model.norm.weight
  lm_head/kernel                                    lm_head.weight.T   (absent when tied)
  score/kernel                                      score.weight.T     (reward head)
  .../{proj}/lora_a, .../{proj}/lora_b              (LoRA adapters, cfg.lora_rank > 0; merged
                                                     into the kernel on export: models/lora.py)
With `scan_layers` the layers are stacked under model/layers/<name> with a leading `layers` axis.

Every parameter carries logical axis names (vocab, embed, heads, kv_heads, mlp, norm, labels,
layers); activations are constrained at block boundaries to (batch, length, embed). A rule table
(helpsteer_jax.sharding) maps them to mesh axes; outside a mesh the constraints are no-ops.

Positions come from the attention mask (cumsum - 1), so a sequence gets the same numbers alone,
right-padded or left-padded; rewards are read at the last real token found from the mask, never
from token ids, so pad == eos is harmless. Unrolled, the last layer computes queries, attention
output and MLP at the read tokens only (LlamaModel's `read_index_bk`); the other tokens give it
only their keys and values.

Decoding (helpsteer_jax.rlhf.generate): with `cache_index` given, the model runs on new tokens only.
Each attention layer keeps its keys and values in the flax collection "cache" (`key`, `value`:
[B, S, kv_heads, head_dim], S the whole prompt + response length; zeros on first use, so the
first call, the prefill, creates them), writes the new ones at slots [cache_index, cache_index + t)
and attends over all S slots. `attention_mask` then covers all S slots (1 for real tokens written
so far and the new ones), so positions and masking are those of the full forward on the same
sequence. Decoding supports the unrolled layer stack only (convert scanned parameters with
models.convert.unstack_layers).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from helpsteer_jax import hardware
from helpsteer_jax.models.config import LlamaConfig

Array = jax.Array

_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    # Keep the projections' outputs (named below), recompute the rest: norms, rotary, attention,
    # SiLU. "dots" cannot see them: they are custom_vjp calls (projection_matmul), not dots.
    "projections": jax.checkpoint_policies.save_only_these_names("projection"),
    # ... and grouped attention's output and softmax row statistics: the backward pass then
    # recomputes no attention dot, only rotary and the norms (more kept: [T, hidden] per layer).
    "projections_attention": jax.checkpoint_policies.save_only_these_names("projection",
                                                                           "attention"),
}


def _dot(x: Array, y: Array, dimension_numbers, preferred=None) -> Array:
  """jax.lax.dot_general, with bf16 operands widened to float32 where the CPU has no bf16 dots.

  Without AVX512-BF16 or AMX, XLA:CPU emulates a bf16 dot at about 0.6x the float32 dot's speed
  (2048x576 @ 576x1536 on an AVX2-only AMD EPYC Zen 4: 40-46 ms against 25-31 ms; upcast then
  float32: 27-29 ms). Widening gives the same products (a bf16 x bf16 product is exact in
  float32) accumulated in float32, as the native kernels accumulate; only the summation order
  may differ. Decided at trace time (hardware.bf16_dots_emulated); GPUs, TPUs and bf16 CPUs
  keep the bf16 dot.
  """
  low = (x.dtype == y.dtype and jnp.issubdtype(x.dtype, jnp.floating)
         and jnp.dtype(x.dtype).itemsize < 4)
  if low and hardware.bf16_dots_emulated():
    out = jax.lax.dot_general(x.astype(jnp.float32), y.astype(jnp.float32), dimension_numbers)
    return out.astype(x.dtype if preferred is None else preferred)
  return jax.lax.dot_general(x, y, dimension_numbers, preferred_element_type=preferred)


def _projection(x: Array, w: Array, dims, preferred) -> Array:
  return _dot(x, w, (dims, ((), ())), preferred)


@functools.cache
def projection_matmul(accumulate: str | None, cast: bool = True
                      ) -> Callable[[Array, Array], Array]:
  """x [..., i] @ w [i, o] -> [..., o] in x's dtype, with the backward pass written out.

  The backward is dx = ct @ w^T and dw = x^T @ ct, both as dot_generals that contract the
  operands where they lie (w's output axis, the flattened token axis of x and ct), so no
  transposed copy of an activation is materialised: autodiff of a dot leaves XLA to transpose
  the cotangent first, and XLA:CPU fuses that transpose into the elementwise producer (the
  SiLU and gate products of the MLP), which then runs several times slower than the matmul
  it feeds (benchmarks/RESULTS.md, profile of the float32 train step).

  accumulate: dtype of the dots' results before the cast back to x's dtype (None: x's dtype).
  "float32" with bf16 operands is `low_precision_dots="f32_accumulate"`: bf16 x bf16 -> f32
  dots, which XLA:CPU runs on AMX / AVX512-BF16 kernels; ct is cast to x's dtype first, so every
  dot of the step has low-precision operands and a float32 result.
  cast=False returns the accumulated result uncast (the caller casts it): the same values and
  gradients, with the float32 result available to name for remat (_dense_dot).
  """
  preferred = None if accumulate is None else jnp.dtype(accumulate)

  @jax.custom_vjp
  def matmul(x, w):
    y = _projection(x, w, ((x.ndim - 1,), (0,)), preferred)
    return y.astype(x.dtype) if cast else y

  def fwd(x, w):
    return matmul(x, w), (x, w)

  def bwd(res, ct):
    x, w = res
    ct = ct.astype(x.dtype)
    dx = _projection(ct, w, ((ct.ndim - 1,), (1,)), preferred).astype(x.dtype)
    dw = _projection(x.reshape(-1, x.shape[-1]), ct.reshape(-1, ct.shape[-1]), ((0,), (0,)),
                     preferred)
    return dx, dw.astype(w.dtype)

  matmul.defvjp(fwd, bwd)
  return matmul


matmul_f32_accumulate = projection_matmul("float32")


def _dense_dot(matmul: Callable[[Array, Array], Array]):
  """`nn.Dense`'s dot_general argument: contract lhs's last axis with rhs's first via matmul.

  The result is named "projection" for remat_policy="projections" before the cast to lhs's
  dtype: with bf16 operands and float32 accumulation the kept value is the float32 result. The
  scanned layers stack what remat keeps with a dynamic-update-slice per layer, and XLA:CPU
  rewrites a bf16 one as convert(whole stack) -> f32 update -> convert back, which copies every
  layer's stack on every layer (1.2 s of a 5.3 s bf16 step on AMD Zen 5); a float32 stack is
  updated in place (benchmarks/RESULTS.md)."""
  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type  # the matmul fixes its own result dtype
    if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
      raise ValueError(f"unexpected Dense dot dimensions {dimension_numbers}")
    return checkpoint_name(matmul(lhs, rhs), "projection").astype(lhs.dtype)
  return dot_general


def _dense(features: int, axes: tuple[str, str], cfg: LlamaConfig, name: str) -> nn.Dense:
  # HF initialises linear layers with N(0, 0.02); only used for fresh (random) models.
  low = jnp.dtype(cfg.dtype) != jnp.float32
  if cfg.projection_vjp == "autodiff" or (low and cfg.low_precision_dots == "xla"):
    dot_general = None  # XLA's own dot, differentiated by JAX
  else:
    f32_acc = low and cfg.low_precision_dots == "f32_accumulate"
    dot_general = _dense_dot(projection_matmul("float32" if f32_acc else None, cast=False))
  kw = dict(use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), axes),
            dot_general=dot_general, name=name)
  if cfg.lora_rank and name in cfg.lora_targets:
    return LoRADense(features, rank=cfg.lora_rank, scale=cfg.lora_alpha / cfg.lora_rank,
                     axes=axes, **kw)
  return nn.Dense(features, **kw)


class LoRADense(nn.Dense):
  """A projection with a low-rank adapter: y = x W + scale * (x A) B (Hu et al., 2021).

  W keeps its name (`kernel`), so checkpoints load unchanged; A [in, r] starts as
  U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's Linear init, as PEFT) and B [r, out] at zero, so a fresh
  adapter leaves the model as it was. The rank axis is never sharded. Which parameters train is
  the optimiser's business (training/optimizer.py: `trainable_labels`).
  """
  rank: int = 8
  scale: float = 1.0
  axes: tuple[str, str] = ("embed", "embed")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = super().__call__(x)
    fan_in = x.shape[-1]
    a_init = nn.initializers.uniform(2.0 / math.sqrt(fan_in))  # [0, 2/sqrt(in)), shifted below
    a = self.param("lora_a", nn.with_logical_partitioning(
        lambda k, s, d: a_init(k, s, d) - 1.0 / math.sqrt(fan_in), (self.axes[0], None)),
        (fan_in, self.rank), self.param_dtype)
    b = self.param("lora_b", nn.with_logical_partitioning(nn.initializers.zeros,
                                                          (None, self.axes[1])),
                   (self.rank, self.features), self.param_dtype)
    a, b = a.astype(self.dtype), b.astype(self.dtype)
    return y + ((x @ a) @ b * jnp.asarray(self.scale, self.dtype)).astype(y.dtype)


@jax.custom_vjp
def scale_last_axis(x: Array, w: Array) -> Array:
  """w * x over x's last axis, with w cast to x's dtype first (as HF's RMSNorm).

  Differentiated by hand so that w's gradient, a sum over every token, is accumulated in
  float32 and returned in w's dtype. Autodiff sums it in x's dtype: in bf16 XLA rounds after
  every addition (inexact for thousands of tokens) and XLA:CPU runs that sum as a slow
  windowed reduction (0.18 s of a 4.5 s bf16 train step on AMD Zen 5; benchmarks/RESULTS.md).
  In float32 it is the same sum."""
  return w.astype(x.dtype) * x


def _scale_fwd(x: Array, w: Array):
  return scale_last_axis(x, w), (x, w)


def _scale_bwd(res, ct: Array):
  x, w = res
  dw = jnp.sum(ct.astype(jnp.float32) * x.astype(jnp.float32), axis=tuple(range(x.ndim - 1)))
  return (ct * w.astype(ct.dtype)).astype(x.dtype), dw.astype(w.dtype)


scale_last_axis.defvjp(_scale_fwd, _scale_bwd)


class RMSNorm(nn.Module):
  """y = w * x / sqrt(mean(x^2) + eps), computed in float32 and cast back (as HF)."""
  eps: float
  dtype: str
  param_dtype: str

  @nn.compact
  def __call__(self, x: Array) -> Array:
    w = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                   (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale_last_axis(x32.astype(self.dtype), w)


def rope_inv_freq(cfg: LlamaConfig) -> Array:
  """Inverse frequencies theta^(-2i/d), with Llama-3's wavelength-dependent scaling if set."""
  d = cfg.head_dim
  inv_freq = 1.0 / (cfg.rope_theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
  if cfg.rope_scaling is None:
    return inv_freq
  s = cfg.rope_scaling
  factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
  old_ctx = s["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv_freq
  # Long wavelengths (low frequencies) are divided by `factor`, short ones kept, and the band in
  # between interpolated smoothly (Llama 3.1 report).
  scaled = jnp.where(wavelen > old_ctx / lo, inv_freq / factor, inv_freq)
  smooth = (old_ctx / wavelen - lo) / (hi - lo)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old_ctx / hi) & (wavelen <= old_ctx / lo)
  return jnp.where(medium, smoothed, scaled)


def apply_rope(x_bthd: Array, positions_bt: Array, inv_freq: Array) -> Array:
  """Rotate-half RoPE (HF layout): x*cos + rotate_half(x)*sin, angles in float32."""
  angles = positions_bt[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B, T, 1, D]
  cos, sin = jnp.cos(angles).astype(x_bthd.dtype), jnp.sin(angles).astype(x_bthd.dtype)
  x1, x2 = jnp.split(x_bthd, 2, axis=-1)
  return x_bthd * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


def causal_lengths(mask_b1tt: Array) -> tuple[Array, Array]:
  """Lengths L [B] (int32) of right-padded rows, and whether the mask is exactly that.

  `fits` (a scalar) is True when every row of the mask is `attention_mask_4d` of a row with L real
  tokens followed by padding: query q < L sees keys 0..q, a later query only itself. L is read
  off the last query's row (the keys it sees before the first unseen one). Left-padded rows and
  packed segments do not fit.
  """
  t = mask_b1tt.shape[-1]
  lengths = jnp.sum(jnp.cumprod(mask_b1tt[:, 0, -1, :].astype(jnp.int32), axis=-1), axis=-1)
  q, k = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
  expected = ((k <= q)[None] & (k < lengths[:, None, None])) | (k == q)[None]
  return lengths.astype(jnp.int32), jnp.all(mask_b1tt[:, 0] == expected)


def causal_padded_attention(q: Array, k: Array, v: Array, mask_b1tt: Array, scale: float,
                            implementation: str | None) -> Array:
  """Attention over right-padded rows as `is_causal` plus sequence lengths (cuDNN's flash path).

  Given a boolean mask, jax hands cuDNN a [B, 1, T, T] additive bias: the kernel reads it (and
  writes its gradient) and cannot skip the blocks above the diagonal. Causal masking plus per-row
  query and key lengths is what cuDNN's flash attention takes natively, and on the rows of
  `attention_mask_4d` it gives every real query the same keys. Queries from L on are padding:
  their outputs are zero instead of the token attending to itself, and with causal attention over
  right padding no real token and no reward reads them. A mask of another form (left padding,
  packed segments) makes the output NaN instead of silently wrong: those keep attention_impl
  "xla" (or None), which takes any mask.
  """
  lengths, fits = causal_lengths(mask_b1tt)
  lengths = jnp.maximum(lengths, 1)  # an all-padding row: cuDNN is never asked for length 0
  out = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True,
                                     query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                     implementation=implementation)
  return jnp.where(fits, out, jnp.nan)


def grouped_attention(q_bthd: Array, k_bskd: Array, v_bskd: Array, mask_b1ts: Array,
                      scale: float, vjp: str = "recompute", causal_block: int = 0) -> Array:
  """Grouped-query attention as two batched dots in [batch, kv_heads, group * T, ...] layout.

  The same numbers as jax.nn.dot_product_attention's XLA path (softmax in float32, masked
  scores at the float32 minimum), written so that neither the forward nor the backward moves a
  [B, heads, T, S] score tensor between layouts: q is laid out once as
  [B, kv_heads, group * T, head_dim] (a copy the size of q), the scores come out of the dot in
  the layout the softmax and the second dot read, and the mask broadcasts over the group axis.
  XLA's own path vmaps over the group and, on XLA:CPU, copies the scores, probabilities and
  their gradients transposed six times per layer (benchmarks/RESULTS.md).

  The backward (_grouped_core's VJP) keeps no [T, S]-sized tensor from the forward: it saves
  the softmax's row maximum and sum and recomputes the probabilities from q and k, as flash
  attention does. Autodiff saved two float32 [B, heads, T, S] tensors per layer, which the layer
  scan stacks for all layers (1.1 GB at 8 x 256 tokens on SmolLM2, zero-filled, then written
  layer by layer); the recomputation costs one more q.k dot, a few percent of the layer's FLOPs.
  `vjp="autodiff"` leaves the backward to JAX (config.attention_vjp; for comparison).

  `causal_block` > 0 (config.attention_causal_block; self-attention only, T == S) splits the
  queries into blocks of that many tokens (more where T would need over MAX_CAUSAL_BLOCKS), each
  scored against the keys up to its own end: the score blocks above the diagonal, all masked, are
  never computed (at 512 tokens in 8 blocks of 64, 36 of the 64 blocks are; at long T the saving
  tends to half), and each block's scores are a fraction of the whole. Exact for any mask
  in which no query sees a later key, as every mask this module builds for a forward pass is
  (causal padding and packed segments); any other mask makes the output NaN.
  """
  b, t, h, d = q_bthd.shape
  kv = k_bskd.shape[2]
  g = h // kv
  q = q_bthd.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4)  # [B, kv, g, T, d]
  k = k_bskd.transpose(0, 2, 1, 3)  # [B, kv, S, d]
  v = v_bskd.transpose(0, 2, 1, 3)
  s = k.shape[2]
  # Blocks (query start, query end, key end): one of all T queries against all S keys, or, for
  # causal self-attention, queries [start, end) against keys [0, end).
  blocks = ((0, t, s),)
  if causal_block and t == s and t > causal_block:
    size = max(causal_block, -(-t // MAX_CAUSAL_BLOCKS))
    blocks = tuple((i, min(i + size, t), min(i + size, t)) for i in range(0, t, size))
  if vjp == "recompute":
    out = _grouped_core(q, k, v, mask_b1ts, scale, blocks)  # [B, kv, g, T, d]
  else:  # jax.nn.softmax (its own JVP), everything else to autodiff
    outs = []
    for start, end, keys in blocks:
      q_blk, k_blk, v_blk, mask_blk = _block(q, k, v, mask_b1ts, start, end, keys)
      probs = jax.nn.softmax(_grouped_scores(q_blk, k_blk, mask_blk, scale), axis=-1)
      probs = probs.astype(v.dtype).reshape(*q_blk.shape[:3], keys)
      outs.append(_dot(probs, v_blk, (((3,), (2,)), _BATCH)).reshape(b, kv, g, end - start, d))
    out = _concat_queries(outs)
  out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)
  if len(blocks) == 1:
    return out
  # A mask in which some query sees a later key gives NaN (the run's non-finite guard stops it)
  # instead of silently dropping those keys.
  # (Added as a scalar, which the backward needs nothing saved for.)
  sees_later = jnp.any(mask_b1ts & (jnp.arange(s)[None, :] > jnp.arange(t)[:, None]))
  return out + jnp.where(sees_later, jnp.nan, 0).astype(out.dtype)


_BATCH = ((0, 1), (0, 1))  # dot_general batch dimensions: [B, kv]
# Query blocks of causal grouped attention: 8 compute 36 / 64 of the score matrix (56%); more
# would approach half, at more, smaller dots in every layer's program.
MAX_CAUSAL_BLOCKS = 8


def _queries(x5: Array, start: int, end: int) -> Array:
  """Query rows start..end-1 of [B, kv, g, T, d] as [B, kv, g * block, d]."""
  b, kv, g, _, d = x5.shape
  return x5[:, :, :, start:end].reshape(b, kv, g * (end - start), d)


def _block(q5: Array, k: Array, v: Array, mask_b1ts: Array, start: int, end: int, keys: int):
  """A query block's q [B, kv, g * block, d], and the first `keys` keys, values and mask columns."""
  return (_queries(q5, start, end), k[:, :, :keys], v[:, :, :keys],
          mask_b1ts[:, :, start:end, :keys])


def _concat_queries(parts: list[Array]) -> Array:
  """Per-block [B, kv, g, block, ...] tensors joined along the query axis."""
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=3)


def _pad_keys(x: Array, s: int) -> Array:
  """A block's key-side gradient [B, kv, keys, d], zero-padded to all S keys."""
  return x if x.shape[2] == s else jnp.pad(x, ((0, 0), (0, 0), (0, s - x.shape[2]), (0, 0)))


def _grouped_scores(q: Array, k: Array, mask_b1ts: Array, scale: float) -> Array:
  """Masked float32 scores [B, kv, g, T, S] of q [B, kv, g * T, d] against k [B, kv, S, d]."""
  b, kv, gt, _ = q.shape
  t, s = mask_b1ts.shape[2], k.shape[2]
  scores = _dot(q, k, (((3,), (3,)), _BATCH), jnp.float32)
  scores = scores.reshape(b, kv, gt // t, t, s) * jnp.float32(scale)
  return jnp.where(mask_b1ts[:, :, None], scores, jnp.finfo(jnp.float32).min)


def _grouped_probs(scores: Array, row_max: Array, row_sum: Array) -> Array:
  """softmax(scores) over S, from the row statistics (the forward's and the backward's, bit for
  bit the same computation)."""
  return jnp.exp(scores - row_max) / row_sum


def _grouped_core_fwd(q5: Array, k: Array, v: Array, mask_b1ts: Array, scale: float, blocks):
  outs, maxes, sums = [], [], []
  for start, end, keys in blocks:
    q, k_blk, v_blk, mask = _block(q5, k, v, mask_b1ts, start, end, keys)
    scores = _grouped_scores(q, k_blk, mask, scale)
    row_max = jnp.max(scores, axis=-1, keepdims=True)
    row_sum = jnp.sum(jnp.exp(scores - row_max), axis=-1, keepdims=True)
    probs = _grouped_probs(scores, row_max, row_sum).astype(v.dtype).reshape(*q.shape[:3], keys)
    outs.append(_dot(probs, v_blk, (((3,), (2,)), _BATCH)).reshape(scores.shape[:4] + (-1,)))
    maxes.append(row_max)
    sums.append(row_sum)
  # Saved: the whole q, k, v and mask and the row statistics, whatever the blocks.
  # The statistics are named for remat_policy="projections_attention" (with the output, named
  # by LlamaAttention): kept, they spare the backward pass the forward's dots.
  stats = [checkpoint_name(_concat_queries(x), "attention") for x in (maxes, sums)]
  return _concat_queries(outs), (q5, k, v, mask_b1ts, *stats)


def _grouped_core_bwd(scale: float, blocks, res, d_out5: Array):
  q5, k, v, mask_b1ts, row_max, row_sum = res
  s = k.shape[2]
  d_q, d_ks, d_vs = [], [], []
  for start, end, keys in blocks:
    q, k_blk, v_blk, mask = _block(q5, k, v, mask_b1ts, start, end, keys)
    d_out = _queries(d_out5, start, end)
    probs = _grouped_probs(_grouped_scores(q, k_blk, mask, scale),
                           row_max[:, :, :, start:end], row_sum[:, :, :, start:end])
    p = probs.reshape(*q.shape[:3], keys)  # float32 [B, kv, g * block, keys]
    d_v_blk = _dot(p.astype(v.dtype), d_out, (((2,), (2,)), _BATCH), jnp.float32)
    d_p = _dot(d_out, v_blk, (((3,), (3,)), _BATCH), jnp.float32)
    d_p = d_p.astype(v.dtype).astype(jnp.float32)  # the cotangent of the bf16 (v.dtype) probs
    # softmax's VJP, then the scale; masked entries have p = 0, so their score gradient is 0.
    d_s = p * (d_p - jnp.sum(d_p * p, axis=-1, keepdims=True)) * jnp.float32(scale)
    d_q.append(jax.lax.dot_general(d_s, k_blk.astype(jnp.float32), (((3,), (2,)), _BATCH))
               .astype(q.dtype).reshape(probs.shape[:4] + (-1,)))
    d_ks.append(jax.lax.dot_general(d_s, q.astype(jnp.float32), (((2,), (2,)), _BATCH)))
    d_vs.append(d_v_blk)
  # Key-side gradients summed over the blocks in float32, cast once.
  d_k, d_v = (sum(_pad_keys(x, s) for x in parts) for parts in (d_ks, d_vs))
  return _concat_queries(d_q), d_k.astype(k.dtype), d_v.astype(v.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _grouped_core(q5: Array, k: Array, v: Array, mask_b1ts: Array, scale: float,
                  blocks: tuple[tuple[int, int, int], ...]) -> Array:
  """Attention [B, kv, g, T, d] of q5 [B, kv, g, T, d] over k, v [B, kv, S, d], by query blocks."""
  return _grouped_core_fwd(q5, k, v, mask_b1ts, scale, blocks)[0]


_grouped_core.defvjp(_grouped_core_fwd, _grouped_core_bwd)


class LlamaAttention(nn.Module):
  cfg: LlamaConfig

  @nn.compact
  def __call__(self, x_btd: Array, positions_bt: Array, mask_b1tt: Array,
               cache_index: Array | None = None, read_bk: Array | None = None) -> Array:
    """Attention output [B, T, D]; with `read_bk` [B, K], of the queries at those positions
    only ([B, K, D]): keys and values still come from every position."""
    cfg = self.cfg
    b, t, _ = x_btd.shape
    h, kv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    x_q, positions_q = x_btd, positions_bt
    if read_bk is not None:
      x_q, positions_q = rows(x_btd, read_bk), rows(positions_bt, read_bk)
      mask_b1tt = jnp.take_along_axis(mask_b1tt, read_bk[:, None, :, None], axis=2)
    tq = x_q.shape[1]
    q = _dense(h * hd, ("embed", "heads"), cfg, "q_proj")(x_q).reshape(b, tq, h, hd)
    k = _dense(kv * hd, ("embed", "kv_heads"), cfg, "k_proj")(x_btd).reshape(b, t, kv, hd)
    v = _dense(kv * hd, ("embed", "kv_heads"), cfg, "v_proj")(x_btd).reshape(b, t, kv, hd)
    inv_freq = rope_inv_freq(cfg)
    q, k = apply_rope(q, positions_q, inv_freq), apply_rope(k, positions_bt, inv_freq)
    if cache_index is not None:  # decoding: keys/values of all S slots live in the cache
      s = mask_b1tt.shape[-1]
      cached_k = self.variable("cache", "key", jnp.zeros, (b, s, kv, hd), k.dtype)
      cached_v = self.variable("cache", "value", jnp.zeros, (b, s, kv, hd), v.dtype)
      start = (0, cache_index, 0, 0)
      cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, start)
      cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, start)
      k, v = cached_k.value, cached_v.value
    self_attention = cache_index is None and read_bk is None  # query i at position i
    if cfg.attention_impl == "grouped":  # any mask, cached decoding included
      out = grouped_attention(q, k, v, mask_b1tt, hd ** -0.5, cfg.attention_vjp,
                              cfg.attention_causal_block if self_attention else 0)
    elif cfg.attention_impl == "cudnn" and self_attention:
      out = causal_padded_attention(q, k, v, mask_b1tt, hd ** -0.5, "cudnn")
    else:  # decoding or read rows (fewer queries than keys) keep their mask, on XLA under "cudnn"
      impl = "xla" if cfg.attention_impl == "cudnn" else cfg.attention_impl
      out = jax.nn.dot_product_attention(q, k, v, mask=mask_b1tt, scale=hd ** -0.5,
                                         implementation=impl)
    # Named in float32 (exact for bf16): a bf16 value kept by remat would be stacked over the
    # scanned layers in bf16, which XLA:CPU updates by converting the whole stack (_dense_dot).
    out = out.reshape(b, tq, h * hd)
    out = checkpoint_name(out.astype(jnp.float32), "attention").astype(out.dtype)
    return _dense(cfg.hidden_size, ("heads", "embed"), cfg, "o_proj")(out)


def rows(x_bt: Array, index_bk: Array) -> Array:
  """x[b, index_bk[b, k]] for every b, k: [B, K, ...] rows of a [B, T, ...] array."""
  index = index_bk.reshape(index_bk.shape + (1,) * (x_bt.ndim - 2))
  return jnp.take_along_axis(x_bt, index, axis=1)


@jax.custom_vjp
def gated_silu(gate: Array, up: Array) -> Array:
  """silu(gate) * up, differentiated from its two inputs alone (config.activation_vjp="inputs").

  JAX's own derivative of silu keeps its intermediates (the sigmoid and products), three
  intermediate-sized tensors per layer on top of gate and up; here the backward recomputes the
  sigmoid from gate, as torch's SiLU does, so only gate and up are kept, and the projections
  keep those anyway. The forward is jax.nn.silu's formula, so outputs are unchanged."""
  return nn.silu(gate) * up


def _gated_silu_fwd(gate: Array, up: Array):
  return gated_silu(gate, up), (gate, up)


def _gated_silu_bwd(res, ct: Array):
  gate, up = res
  sig = jax.nn.sigmoid(gate)
  d_gate = ct * up * (sig * (1 + gate * (1 - sig)))  # d silu(g)/dg = s + g s (1 - s)
  return d_gate.astype(gate.dtype), (ct * gate * sig).astype(up.dtype)


gated_silu.defvjp(_gated_silu_fwd, _gated_silu_bwd)


class LlamaMLP(nn.Module):
  cfg: LlamaConfig

  @nn.compact
  def __call__(self, x_btd: Array) -> Array:
    cfg = self.cfg
    gate = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg, "gate_proj")(x_btd)
    up = _dense(cfg.intermediate_size, ("embed", "mlp"), cfg, "up_proj")(x_btd)
    act = gated_silu(gate, up) if cfg.activation_vjp == "inputs" else nn.silu(gate) * up
    return _dense(cfg.hidden_size, ("mlp", "embed"), cfg, "down_proj")(act)


class LlamaDecoderLayer(nn.Module):
  cfg: LlamaConfig

  @nn.compact
  def __call__(self, x_btd: Array, positions_bt: Array, mask_b1tt: Array,
               cache_index: Array | None = None, read_bk: Array | None = None):
    """The next residual stream [B, T, D]; with `read_bk` [B, K], at those positions only."""
    cfg = self.cfg
    norm = functools.partial(RMSNorm, cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype)
    x_btd = nn.with_logical_constraint(x_btd, ("batch", "length", "embed"))
    h = LlamaAttention(cfg, name="self_attn")(norm(name="input_layernorm")(x_btd), positions_bt,
                                               mask_b1tt, cache_index, read_bk)
    if read_bk is not None:
      x_btd = rows(x_btd, read_bk)
    x_btd = x_btd + h.astype(x_btd.dtype)  # the residual stream keeps its dtype (residual_dtype)
    mlp = LlamaMLP(cfg, name="mlp")(norm(name="post_attention_layernorm")(x_btd))
    x_btd = x_btd + mlp.astype(x_btd.dtype)
    return nn.with_logical_constraint(x_btd, ("batch", "length", "embed")), None


class _Layers(nn.Module):
  """The decoder stack, unrolled (params under layers/0, layers/1, ...)."""
  cfg: LlamaConfig
  layer_cls: type

  @nn.compact
  def __call__(self, x, positions, mask, cache_index=None, read=None):
    """`read` [B, K]: the last layer computes those positions only (see LlamaModel)."""
    n = self.cfg.num_hidden_layers
    for i in range(n):
      layer = self.layer_cls(self.cfg, name=str(i))
      if cache_index is not None:
        x, _ = layer(x, positions, mask, cache_index)
      elif read is not None and i == n - 1:
        x, _ = layer(x, positions, mask, None, read)
      else:  # the training call, unchanged (remat wraps exactly these args)
        x, _ = layer(x, positions, mask)
    return x


def attention_mask_4d(attention_mask_bt: Array) -> Array:
  """Causal mask restricted to real keys: [B, 1, T, T] booleans.

  A query may also always see itself, so rows of padding positions are never fully masked
  (their outputs are discarded, but they must stay finite so gradients do too).
  """
  t = attention_mask_bt.shape[-1]
  causal = jnp.tril(jnp.ones((t, t), dtype=bool))
  keys = attention_mask_bt.astype(bool)[:, None, None, :]
  return (causal[None, None] & keys) | jnp.eye(t, dtype=bool)[None, None]


def segment_mask_4d(segment_ids_bt: Array) -> Array:
  """Packed rows: causal attention within each segment only, [B, 1, T, T] booleans.

  segment_ids_bt holds 1, 2, ... for the packed sequences of a row (each contiguous) and 0 for
  padding; a token never sees another segment, so every packed sequence is computed exactly as
  it would be alone. A query always sees itself (padding rows stay finite).
  """
  t = segment_ids_bt.shape[-1]
  causal = jnp.tril(jnp.ones((t, t), dtype=bool))
  same = segment_ids_bt[:, :, None] == segment_ids_bt[:, None, :]
  real = (segment_ids_bt > 0)[:, None, :]
  return ((causal[None] & same & real) | jnp.eye(t, dtype=bool)[None])[:, None]


def segment_positions(segment_ids_bt: Array) -> Array:
  """Position of each token within its segment (0 at each segment's first token)."""
  t = segment_ids_bt.shape[-1]
  idx = jnp.arange(t, dtype=jnp.int32)
  starts = jnp.concatenate([jnp.ones_like(segment_ids_bt[:, :1], dtype=bool),
                            segment_ids_bt[:, 1:] != segment_ids_bt[:, :-1]], axis=1)
  first = jax.lax.cummax(jnp.where(starts, idx, 0), axis=1)
  return idx - first


def positions_from_mask(attention_mask_bt: Array) -> Array:
  """Position of each token among the real tokens of its row (0 at the first real token)."""
  return jnp.maximum(jnp.cumsum(attention_mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


def decode_mask_and_positions(attention_mask_bs: Array, cache_index: Array,
                              t: int) -> tuple[Array, Array]:
  """[B, 1, t, S] mask and [B, t] positions of t new tokens at slots cache_index .. + t - 1.

  The same as rows cache_index .. + t - 1 of `attention_mask_4d` and `positions_from_mask` over
  the S slots, so cached decoding sees exactly what the full forward sees.
  """
  s = attention_mask_bs.shape[-1]
  slots = cache_index + jnp.arange(t)
  keys = jnp.arange(s)
  causal = slots[:, None] >= keys[None, :]
  real = attention_mask_bs.astype(bool)[:, None, None, :]
  mask = (causal[None, None] & real) | (slots[:, None] == keys[None, :])[None, None]
  positions = jax.lax.dynamic_slice_in_dim(positions_from_mask(attention_mask_bs), cache_index, t,
                                           axis=1)
  return mask, positions


def last_token_index(attention_mask_bt: Array) -> Array:
  """Index of the last real (mask == 1) token of each row; works for left or right padding."""
  t = attention_mask_bt.shape[-1]
  return jnp.max(jnp.where(attention_mask_bt.astype(bool), jnp.arange(t), -1), axis=-1)


class LlamaModel(nn.Module):
  """Embeddings, decoder layers and final norm: hidden states [B, T, D].

  `out_dtype` is the final norm's output dtype (None: the compute dtype). The norm computes in
  float32 anyway; the reward model keeps that float32 result instead of rounding it to bf16.

  A model split at a layer (models/split.py: a frozen bottom whose activations are computed once,
  a trained top) is two of these: the bottom with `final_norm=False` returns its last layer's
  output, the residual stream the top continues; the top with `embed=False` takes that stream
  [B, T, D] in place of token ids and has no embedding table.
  """
  cfg: LlamaConfig
  out_dtype: str | None = None
  embed: bool = True
  final_norm: bool = True

  def setup(self):
    cfg = self.cfg
    if self.embed:
      self.embed_tokens = nn.Embed(
          cfg.vocab_size, cfg.hidden_size, dtype=self._residual_dtype, param_dtype=cfg.param_dtype,
          embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                      ("vocab", "embed")))
    layer = LlamaDecoderLayer
    if cfg.remat_policy != "none":
      if cfg.remat_policy not in _REMAT_POLICIES:
        raise ValueError(f"remat_policy {cfg.remat_policy!r} not in "
                         f"{['none', *_REMAT_POLICIES]}")
      layer = nn.remat(layer, policy=_REMAT_POLICIES[cfg.remat_policy], prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      self.layers = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_hidden_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})(cfg)
    else:
      self.layers = _Layers(cfg, layer)
    if self.final_norm:
      self.norm = RMSNorm(cfg.rms_norm_eps, self.out_dtype or cfg.dtype, cfg.param_dtype)

  @property
  def _residual_dtype(self) -> str:
    return self.cfg.residual_dtype or self.cfg.dtype

  def _norm(self, x: Array) -> Array:
    return self.norm(x) if self.final_norm else x

  def __call__(self, input_ids_bt: Array, attention_mask_bt: Array | None = None,
               cache_index: Array | None = None, segment_ids_bt: Array | None = None,
               read_index_bk: Array | None = None) -> Array:
    """Hidden states; with `cache_index`, of the new tokens only (see the module docstring).

    With `segment_ids_bt` (packed rows, see `segment_mask_4d`) the attention mask and positions
    come from the segments and `attention_mask_bt` is ignored. With `embed=False` the first
    argument is the residual stream [B, T, D] of the layers below.

    With `read_index_bk` [B, K], the hidden states at those positions only, [B, K, D] (a reward
    model reads one per sequence). The last layer then computes its keys and values at every
    position and everything else (queries, attention output, MLP) at those K only: 1 / N of the
    layers' projection FLOPs for N layers, forward and backward, and most of a split model's top
    when it is a few layers. With `scan_layers` every layer is one program: all positions are
    computed and the rows taken after (the same numbers); taking the last layer out of the scan
    was slower or copied the stacked parameters (benchmarks/RESULTS.md, 2026-12-07).
    """
    if attention_mask_bt is None:
      attention_mask_bt = jnp.ones(input_ids_bt.shape[:2], jnp.int32)
    x = (self.embed_tokens(input_ids_bt) if self.embed
         else input_ids_bt.astype(self._residual_dtype))
    if cache_index is not None:
      if segment_ids_bt is not None or read_index_bk is not None:
        raise ValueError("cached decoding computes every new token: no packed segments or "
                         "read_index_bk with cache_index")
      if self.cfg.scan_layers:
        raise NotImplementedError("decoding with scan_layers=True is not supported; use "
                                  "scan_layers=False and models.convert.unstack_layers(params)")
      mask, positions = decode_mask_and_positions(attention_mask_bt, cache_index,
                                                  input_ids_bt.shape[1])
      return self._norm(self.layers(x, positions, mask, cache_index))
    if segment_ids_bt is not None:
      positions, mask = segment_positions(segment_ids_bt), segment_mask_4d(segment_ids_bt)
    else:
      positions, mask = positions_from_mask(attention_mask_bt), attention_mask_4d(attention_mask_bt)
    if not self.cfg.scan_layers:
      x = self.layers(x, positions, mask, None, read_index_bk)
    else:
      x = self.layers(x, positions, mask)[0]
      if read_index_bk is not None:
        x = rows(x, read_index_bk)
    return self._norm(x)

  def attend(self, x_btd: Array) -> Array:
    """Tied output projection: x @ embedding^T, in the compute dtype."""
    if self._residual_dtype == self.cfg.dtype:
      return self.embed_tokens.attend(x_btd)
    dt = jnp.dtype(self.cfg.dtype)
    return jnp.dot(x_btd.astype(dt), self.embed_tokens.embedding.astype(dt).T)


class LlamaForCausalLM(nn.Module):
  """Policy: next-token logits [B, T, V] in float32."""
  cfg: LlamaConfig

  def setup(self):
    self.model = LlamaModel(self.cfg)
    if not self.cfg.tie_word_embeddings:
      self.lm_head = _dense(self.cfg.vocab_size, ("embed", "vocab"), self.cfg, "lm_head")

  def __call__(self, input_ids_bt: Array, attention_mask_bt: Array | None = None,
               cache_index: Array | None = None, last: int = 0) -> Array:
    """`last` > 0: the logits of the last `last` positions only ([B, last, V]): a vocabulary-
    sized tensor costs B x T x V floats (1.2 GB at 16 x 384 x 49152), several times over in
    the backward, where RLHF needs only the response's positions. (Without a cache, the last
    layer then computes only those rows too.)"""
    b, t = input_ids_bt.shape[:2]
    if last and cache_index is None:
      read = jnp.broadcast_to(jnp.arange(max(t - last, 0), t, dtype=jnp.int32), (b, min(last, t)))
      h = self.model(input_ids_bt, attention_mask_bt, read_index_bk=read)
    else:
      h = self.model(input_ids_bt, attention_mask_bt, cache_index)
      if last:
        h = h[:, -last:]
    logits = self.model.attend(h) if self.cfg.tie_word_embeddings else self.lm_head(h)
    return logits.astype(jnp.float32)


class LlamaRewardModel(nn.Module):
  """Reward model: `num_labels` outputs read at the last real token of each sequence.

  num_labels is 1 for Bradley-Terry models and 5 (HelpSteer attributes) or 9 for SteerLM
  regression. Returns float32 rewards [B, num_labels].
  Whatever the compute dtype, the final hidden state and the head are float32: a bf16 reward
  (8 significant bits) rounds rewards that agree to within ~0.5% to one value, turning close
  pairs into ties, which RewardBench counts as wrong. The head is one [D, labels] dot per
  sequence, so this costs nothing measurable.

  `from_hidden=True` is the top of a split model (models/split.py): it reads the residual stream
  [B, T, D] of the frozen layers below instead of token ids, and has no embedding table.
  """
  cfg: LlamaConfig
  num_labels: int = 1
  from_hidden: bool = False

  def setup(self):
    self.model = LlamaModel(self.cfg, out_dtype="float32", embed=not self.from_hidden)
    # float32 operands and HIGHEST precision, so accelerators do not run it as bf16/TF32 passes.
    self.score = nn.Dense(
        self.num_labels, use_bias=False, dtype=jnp.float32, param_dtype=self.cfg.param_dtype,
        precision=jax.lax.Precision.HIGHEST,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                 ("embed", "labels")))

  def __call__(self, input_ids_bt: Array, attention_mask_bt: Array | None = None) -> Array:
    if attention_mask_bt is None:
      attention_mask_bt = jnp.ones(input_ids_bt.shape[:2], jnp.int32)
    idx = last_token_index(attention_mask_bt)
    h_last = self.model(input_ids_bt, attention_mask_bt, read_index_bk=idx[:, None])[:, 0]
    return self.score(h_last)  # [B, num_labels] from [B, D] float32

  def packed(self, input_ids_bt: Array, segment_ids_bt: Array, read_index_bk: Array) -> Array:
    """Rewards of packed rows: [B, K, num_labels], read at token `read_index_bk[b, k]` of row b.

    The batcher puts the last token of each packed sequence in `read_index_bk` (slots without a
    sequence point anywhere and are ignored by the loss); `segment_ids_bt` as in `segment_mask_4d`.
    """
    h_read = self.model(input_ids_bt, segment_ids_bt=segment_ids_bt,
                        read_index_bk=read_index_bk)  # [B, K, D], float32
    return self.score(h_read)

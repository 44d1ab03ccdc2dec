"""LoRA adapters as parameters: added to a started model, told apart, merged away.

The adapters themselves live in the model (models/llama.LoRADense: `lora_a` [in, r] and `lora_b`
[r, out] beside a projection's `kernel`, y = x W + (alpha / r) x A B). Here is what the rest of
the code does with them: a pretrained checkpoint has none, so `add_adapters` gives it fresh ones
(B = 0: the model is unchanged until B trains); the optimiser trains only adapters and the reward
head (`is_adapter`); and export, scoring and every later use see a plain Llama, the adapters
merged into their kernels by `merge` (W + (alpha / r) A B, in float32). Scanned layers stack
every leaf along a leading layer axis; the batched matmul covers both layouts.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig

ADAPTER_KEYS = ("lora_a", "lora_b")


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    convert.set_path(out, path, v)
  return out


def is_adapter(path: tuple[str, ...]) -> bool:
  """Whether a parameter path (dict keys) names a LoRA factor."""
  return bool(path) and path[-1] in ADAPTER_KEYS


def has_adapters(params: Any) -> bool:
  return any(is_adapter(path) for path, _ in convert.flatten(params))


def _targets(params: Any, cfg: LlamaConfig) -> list[tuple[tuple[str, ...], Any]]:
  """(path of the projection module, its kernel) for every projection LoRA adapts."""
  return [(path[:-1], kernel) for path, kernel in convert.flatten(params)
          if path[-1] == "kernel" and len(path) > 1 and path[-2] in cfg.lora_targets]


def add_adapters(params: dict[str, Any], cfg: LlamaConfig,
                 rng: np.random.Generator) -> dict[str, Any]:
  """`params` (host arrays, no adapters) with fresh adapters on `cfg.lora_targets`.

  A ~ U(-1/sqrt(in), 1/sqrt(in)) and B = 0, as LoRADense initialises them; the rest is shared,
  not copied.
  """
  if not cfg.lora_rank:
    return params
  if has_adapters(params):
    raise ValueError("these parameters already carry LoRA adapters")
  out = _unflatten(dict(convert.flatten(params)))
  targets = _targets(params, cfg)
  if not targets:
    raise ValueError(f"LoRA targets {cfg.lora_targets} match no projection of the model")
  for module, kernel in targets:
    *lead, fan_in, fan_out = np.shape(kernel)  # lead: the layer axis of scanned layers
    bound = 1.0 / math.sqrt(fan_in)
    a = rng.uniform(-bound, bound, (*lead, fan_in, cfg.lora_rank)).astype(np.float32)
    convert.set_path(out, module + ("lora_a",), a)
    convert.set_path(out, module + ("lora_b",),
                     np.zeros((*lead, cfg.lora_rank, fan_out), np.float32))
  return out


def merge(params: dict[str, Any], cfg: LlamaConfig) -> dict[str, Any]:
  """Plain Llama parameters: every kernel W + (alpha / r) A B, the adapters dropped.

  The product and the sum are taken in float32 and cast back to the kernel's dtype. Parameters
  without adapters are returned as they are.
  """
  if not has_adapters(params):
    return params
  if not cfg.lora_rank:
    raise ValueError("the parameters carry LoRA adapters but the config has lora_rank=0: the "
                     "adapters' scale alpha / rank is unknown")
  flat = dict(convert.flatten(params))
  scale = cfg.lora_alpha / cfg.lora_rank
  for path in [p for p in flat if p[-1] == "lora_a"]:
    module = path[:-1]
    a = np.asarray(flat.pop(path), np.float32)
    b = np.asarray(flat.pop(module + ("lora_b",)), np.float32)
    kernel = flat[module + ("kernel",)]
    merged = np.asarray(kernel, np.float32) + scale * np.matmul(a, b)
    flat[module + ("kernel",)] = merged.astype(np.asarray(kernel).dtype)
  if any(is_adapter(p) for p in flat):
    raise ValueError("a lora_b without its lora_a")
  return _unflatten(flat)


def adapters_off(params: Any) -> Any:
  """`params` with every B factor zero: the model the adapters started from (B = 0 at the start),
  exactly, whatever A holds. Traceable: with LoRA, DPO's and RL's reference model is the policy's
  own parameters read through this, instead of a second copy of the frozen weights."""
  def off(path: tuple[Any, ...], x: Any) -> Any:
    last = path[-1] if path else None
    return jnp.zeros_like(x) if getattr(last, "key", None) == "lora_b" else x
  return jax.tree_util.tree_map_with_path(off, params)


def num_adapter_params(params: Any) -> int:
  return sum(int(np.prod(np.shape(a))) for path, a in convert.flatten(params) if is_adapter(path))

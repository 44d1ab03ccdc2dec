"""A reward model split at a layer: a frozen bottom run once, a trained top run every step.

Training only the top `k` decoder layers (and the final norm and the reward head) of a reward
model needs the bottom's output only once per sequence: the residual stream after layer
N - k, [T, D] per sequence. Computed once and cached, it is shared by every variant and seed that
trains the same top; each training step then costs k / N of a full step. `split` cuts the
parameters and configs in two, `bottom_model` / `top_model` are the modules that run the halves
(LlamaModel without its final norm; LlamaRewardModel reading hidden states), and `join` puts a
trained top back on the bottom: an ordinary full reward model, exported and evaluated like any.

  bottom_cfg, top_cfg, bottom, top = split(cfg, params, k)
  h = bottom_model(bottom_cfg).apply({"params": bottom}, ids, mask)        # once, cached
  r = top_model(top_cfg, num_labels).apply({"params": top}, h, mask)     # every step
  full = join(bottom, trained_top, cfg)                                   # == the full model
"""
from __future__ import annotations

from typing import Any

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.llama import LlamaModel, LlamaRewardModel


def _layers(params: dict[str, Any], cfg: LlamaConfig) -> dict[str, Any]:
  """Parameters in the unscanned layout (layers under model/layers/0, 1, ...)."""
  return convert.unstack_layers(params) if cfg.scan_layers else params


def split(cfg: LlamaConfig, params: dict[str, Any], top_layers: int
          ) -> tuple[LlamaConfig, LlamaConfig, dict[str, Any], dict[str, Any]]:
  """(bottom config, top config, bottom params, top params) of a reward model's `params`
  ({"model": ..., "score": ...}) cut below its last `top_layers` decoder layers.

  The bottom holds the embeddings and the first N - k layers (a LlamaModel's parameters); the
  top the last k layers (renumbered from 0), the final norm and the reward head (a
  LlamaRewardModel's). Both halves use `cfg`'s layer layout.
  """
  n = cfg.num_hidden_layers
  if not 0 < top_layers < n:
    raise ValueError(f"top_layers must be in 1..{n - 1} (the model has {n} layers), got "
                     f"{top_layers}")
  if "score" not in params:
    raise ValueError("split cuts a reward model: these parameters have no 'score' head")
  cut = n - top_layers
  bottom: dict[str, Any] = {}
  top: dict[str, Any] = {}
  for path, v in convert.flatten(_layers(params, cfg)):
    if path[:2] == ("model", "layers"):
      i = int(path[2])
      if i < cut:
        convert.set_path(bottom, path, v)
      else:
        convert.set_path(top, path[:2] + (str(i - cut),) + path[3:], v)
    elif path[:2] == ("model", "embed_tokens"):
      convert.set_path(bottom, path, v)
    elif path[0] in ("score",) or path[:2] == ("model", "norm"):
      convert.set_path(top, path, v)
    else:
      raise ValueError(f"split: no half for parameter {'/'.join(path)!r}")
  bottom_cfg = cfg.replace(num_hidden_layers=cut)
  top_cfg = cfg.replace(num_hidden_layers=top_layers)
  if cfg.scan_layers:
    bottom = convert.stack_layers(bottom, cut)
    top = convert.stack_layers(top, top_layers)
  return bottom_cfg, top_cfg, bottom["model"], top


def join(bottom: dict[str, Any], top: dict[str, Any], cfg: LlamaConfig) -> dict[str, Any]:
  """The full reward model's parameters (in `cfg`'s layout) from a bottom and a top."""
  n = cfg.num_hidden_layers
  out: dict[str, Any] = {}
  halves = [list(convert.flatten(convert.unstack_layers(h) if cfg.scan_layers else h))
            for h in ({"model": bottom}, top)]
  cut = len({p[2] for p, _ in halves[0] if p[:2] == ("model", "layers")})
  top_n = len({p[2] for p, _ in halves[1] if p[:2] == ("model", "layers")})
  if cut + top_n != n:
    raise ValueError(f"bottom ({cut} layers) + top ({top_n}) != the model's {n} layers")
  for path, v in halves[0]:
    convert.set_path(out, path, v)
  for path, v in halves[1]:
    if path[:2] == ("model", "layers"):
      path = path[:2] + (str(int(path[2]) + cut),) + path[3:]
    convert.set_path(out, path, v)
  return convert.stack_layers(out, n) if cfg.scan_layers else out


def bottom_model(bottom_cfg: LlamaConfig) -> LlamaModel:
  """Embeddings and the bottom layers; returns the residual stream [B, T, D] (no final norm)."""
  return LlamaModel(bottom_cfg, final_norm=False)


def top_model(top_cfg: LlamaConfig, num_labels: int = 1) -> LlamaRewardModel:
  """The top layers, final norm and reward head, reading the bottom's residual stream."""
  return LlamaRewardModel(top_cfg, num_labels=num_labels, from_hidden=True)

"""Hugging Face <-> Flax parameter names: one table of renames and transposes.

Our tree keeps HF's module names; linear weights are stored transposed (Flax `kernel` is
[in, out], torch `weight` is [out, in]). With `scan_layers` the per-layer parameters are
stacked on a leading axis under model/layers/<name>.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

import numpy as np

# (HF name, our path, transpose?): one row per kind of weight, read in both directions. A
# {slot} stands for the part of the name that varies; its pattern is written with HF's dots, which
# are slashes in our paths.
_SLOTS = {"i": r"\d+", "norm": r"input_layernorm|post_attention_layernorm",
          "proj": r"self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj"}
_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("model.embed_tokens.weight", "model/embed_tokens/embedding", False),
    ("model.norm.weight", "model/norm/weight", False),
    ("lm_head.weight", "lm_head/kernel", True),
    ("score.weight", "score/kernel", True),
    ("model.layers.{i}.{norm}.weight", "model/layers/{i}/{norm}/weight", False),
    ("model.layers.{i}.{proj}.weight", "model/layers/{i}/{proj}/kernel", True),
)


def _compile(template: str, sep: str) -> re.Pattern[str]:
  """A template's regex; `sep` is what a dot inside a slot's pattern becomes."""
  parts = re.split(r"\{(\w+)\}", template)  # literal, slot name, literal, ...
  slot = lambda name: "(?P<%s>%s)" % (name, _SLOTS[name].replace(r"\.", sep))
  regex = "".join(re.escape(p) if k % 2 == 0 else slot(p) for k, p in enumerate(parts))
  return re.compile(regex + "$")


_ROWS = tuple((_compile(hf, r"\."), _compile(ours, "/"), hf, ours, transpose)
              for hf, ours, transpose in _TABLE)


def hf_to_path(hf_name: str) -> tuple[tuple[str, ...], bool] | None:
  """Our parameter path (unscanned layout) and whether to transpose; None if not a Llama weight."""
  for hf_re, _, _, ours, transpose in _ROWS:
    m = hf_re.match(hf_name)
    if m:
      slots = {k: v.replace(".", "/") for k, v in m.groupdict().items()}
      return tuple(ours.format(**slots).split("/")), transpose
  return None


def path_to_hf(path: tuple[str, ...]) -> tuple[str, bool]:
  """Inverse of `hf_to_path` for an unscanned path."""
  joined = "/".join(path)
  for _, ours_re, hf, _, transpose in _ROWS:
    m = ours_re.match(joined)
    if m:
      return hf.format(**{k: v.replace("/", ".") for k, v in m.groupdict().items()}), transpose
  raise KeyError(f"no Hugging Face name for parameter {joined}")


def flatten(tree: dict[str, Any],
            prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from flatten(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def scanned_path(path: tuple[str, ...]) -> tuple[tuple[str, ...], int | None]:
  """model/layers/{i}/rest -> (model/layers/rest, i); other paths unchanged with None."""
  if path[:2] == ("model", "layers"):
    return path[:2] + path[3:], int(path[2])
  return path, None


def stack_layers(params: dict[str, Any], num_layers: int) -> dict[str, Any]:
  """Unscanned -> scanned layout (layers stacked on axis 0)."""
  out: dict[str, Any] = {}
  per_layer: dict[tuple[str, ...], list] = {}
  for path, v in flatten(params):
    spath, i = scanned_path(path)
    if i is None:
      set_path(out, path, v)
    else:
      per_layer.setdefault(spath, [None] * num_layers)[i] = v
  for spath, vs in per_layer.items():
    set_path(out, spath, np.stack([np.asarray(v) for v in vs]))
  return out


def unstack_layers(params: dict[str, Any]) -> dict[str, Any]:
  """Scanned -> unscanned layout."""
  out: dict[str, Any] = {}
  for path, v in flatten(params):
    if path[:2] == ("model", "layers"):
      for i in range(v.shape[0]):
        set_path(out, path[:2] + (str(i),) + path[2:], v[i])
    else:
      set_path(out, path, v)
  return out


def to_hf_state_dict(params: dict[str, Any], scan_layers: bool = False) -> dict[str, np.ndarray]:
  """Our parameters -> {HF name: numpy array} (contiguous, ready for safetensors)."""
  if scan_layers:
    params = unstack_layers(params)
  out = {}
  for path, v in flatten(params):
    name, transpose = path_to_hf(path)
    a = np.asarray(v)
    out[name] = np.ascontiguousarray(a.T if transpose else a)
  return out

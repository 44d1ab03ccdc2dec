"""Model sources, resolved once: a preset, a checkpoint, or a training run's workdir.

A source string names where a model comes from:
  - a preset (`models.PRESETS`, e.g. ``tiny``): a random initialisation of that architecture,
    its vocabulary and special tokens taken from a tokenizer source;
  - a training workdir (``config.json`` + ``checkpoints/``, written by helpsteer-train or
    helpsteer-rlhf): the run's architecture and settings from its config, the parameters of its
    latest checkpoint;
  - a checkpoint that `helpsteer_jax.models` reads: ``smollm2``, ``gguf:PATH``, ``*.gguf``, a
    Hugging Face directory or hub id.

This module sits above `models` (the checkpoint readers) and `training` (the checkpoint format and
the paradigm table), so neither needs the other. `load_model(source)` is what every command calls;
an experiment config's model section (source, tokenizer, runtime settings) goes through
`start_model`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from helpsteer_jax.models import PRESETS, Pretrained, convert, load_pretrained, sources
from helpsteer_jax.models import lora
from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.models.loading import load_config as load_checkpoint_config
from helpsteer_jax.models.loading import storage_dtype_of
from helpsteer_jax.training import checkpoint
from helpsteer_jax.training.tasks import task_for

# The config fields a run may set on any model (not written to Hugging Face configs).
RUNTIME = ("dtype", "residual_dtype", "remat_policy", "scan_layers", "attention_impl",
           "attention_causal_block", "low_precision_dots", "projection_vjp", "attention_vjp",
           "activation_vjp", "lora_rank", "lora_alpha", "lora_targets")


@dataclasses.dataclass(frozen=True)
class ModelSource:
  name: str  # the source as given
  kind: str  # "preset", "workdir" or "checkpoint"
  checkpoint: sources.Source | None = None  # the files, for kind "checkpoint"


def is_workdir(source: str | os.PathLike) -> bool:
  """A training workdir: a directory with the run's config.json and a checkpoints/ folder."""
  p = Path(os.fspath(source))
  return p.is_dir() and (p / "checkpoints").is_dir() and (p / "config.json").is_file()


def resolve(source: str | os.PathLike | ModelSource) -> ModelSource:
  """What kind of source this is (a preset name wins over a folder of the same name)."""
  if isinstance(source, ModelSource):
    return source
  name = os.fspath(source)
  if name in PRESETS:
    return ModelSource(name, "preset")
  if is_workdir(name):
    return ModelSource(name, "workdir")
  return ModelSource(name, "checkpoint", sources.resolve(name))


def runtime_of(model_cfg: Any) -> dict[str, Any]:
  """The runtime settings a config's model section sets."""
  return {k: model_cfg[k] for k in RUNTIME if k in model_cfg}


def preset(name: str, tokenizer_source: str | None) -> tuple[LlamaConfig, Any]:
  """Config and tokenizer of a preset (random-init) model; the tokenizer fixes the vocabulary."""
  tok = sources.load_tokenizer(tokenizer_source) if tokenizer_source else None
  cfg = PRESETS[name]
  if tok is not None:
    cfg = cfg.replace(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
  return cfg, tok


# ----------------------------------------------------------------------------- training workdirs
def run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config a run was started with (its workdir's config.json)."""
  path = Path(workdir) / "config.json"
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read the run's config ({e})") from e


@dataclasses.dataclass(frozen=True)
class _Trained:
  """What a run trained: its model section, reward-head width, and place in the checkpoint."""
  model: ml_collections.ConfigDict
  num_labels: int | None
  subtree: tuple[str, ...]


def _trained(run: ml_collections.ConfigDict) -> _Trained:
  if "model" not in run:  # an RLHF run (rlhf/train.py) trains `policy`, a causal LM
    return _Trained(run.policy, None, ())
  task = task_for(run.loss.name)
  num_labels = run.model.get("num_labels") if task.reward_head else None
  return _Trained(run.model, int(num_labels) if num_labels else None, task.trained_subtree)


# ----------------------------------------------------------------------------- any source
def _describe(src: ModelSource, tokenizer_source: str | None, tokenizer: bool,
              runtime: dict[str, Any]) -> tuple[LlamaConfig, int | None, Any]:
  """(config with `runtime`, reward-head width, tokenizer or None); reads no weights."""
  if src.kind == "preset":
    cfg, tok = preset(src.name, tokenizer_source)
    return cfg.replace(**runtime), None, tok
  if src.kind == "workdir":
    trained = _trained(run_config(src.name))
    cfg, _, tok = _describe(resolve(trained.model.source), trained.model.get("tokenizer"),
                            tokenizer, runtime_of(trained.model))
    return cfg.replace(**runtime), trained.num_labels, tok
  cfg, num_labels = load_checkpoint_config(src.checkpoint, **runtime)
  return cfg, num_labels, (sources.load_tokenizer(src.checkpoint) if tokenizer else None)


def load_config(source: str | os.PathLike | ModelSource, *, tokenizer_source: str | None = None,
                **runtime) -> tuple[LlamaConfig, int | None]:
  """The model config (with `runtime` applied) and reward-head width of a source; no weights."""
  cfg, num_labels, _ = _describe(resolve(source), tokenizer_source, False, runtime)
  return cfg, num_labels


def tokenizer_of(source: str | os.PathLike | ModelSource,
                 tokenizer_source: str | None = None) -> Any | None:
  """The tokenizer a source brings (a workdir: its run's; a preset: `tokenizer_source`'s)."""
  return _describe(resolve(source), tokenizer_source, True, {})[2]


def _load_workdir(workdir: str, *, storage_dtype: Any, tokenizer: bool,
                  put: Callable[[tuple[str, ...], np.ndarray], Any] | None,
                  runtime: dict[str, Any]) -> Pretrained:
  """Host parameters of the run's latest checkpoint, in the layout `runtime` asks for.

  The reward head is the trained one (all its outputs; a regression run keeps its five). A DPO
  run keeps {"policy", "ref"}: the trained model is the policy, and only it is read. The layer
  layout is converted when `runtime` changes scan_layers; parameters come in `storage_dtype`
  (default the config's param_dtype, float32), never in the compute dtype.
  """
  trained = _trained(run_config(workdir))
  cfg, _, tok = _describe(resolve(trained.model.source), trained.model.get("tokenizer"),
                          tokenizer, runtime_of(trained.model))
  params = checkpoint.restore_params(workdir, subtree=trained.subtree)
  # A LoRA run's adapters are merged into their kernels with the run's own rank and alpha: what
  # a trained run gives to every later use (scoring, export, RL, a next run) is a plain Llama.
  params = lora.merge(params, cfg)
  trained_scan = cfg.scan_layers
  cfg = cfg.replace(lora_rank=0).replace(**runtime)
  if cfg.scan_layers and not trained_scan:
    params = convert.stack_layers(params, cfg.num_hidden_layers)
  elif trained_scan and not cfg.scan_layers:
    params = convert.unstack_layers(params)
  storage = storage_dtype_of(cfg, storage_dtype)
  params = jax.tree_util.tree_map(lambda a: np.asarray(a, storage), params)
  if put is not None:
    placed: dict[str, Any] = {}
    for path, a in convert.flatten(params):
      convert.set_path(placed, path, put(path, a))
    params = placed
  num_labels = (int(np.shape(params["score"]["kernel"])[-1]) if "score" in params else None)
  return Pretrained(cfg, params, tok, num_labels)


def load_model(source: str | os.PathLike | ModelSource, *, storage_dtype: Any = None,
               tokenizer: bool = True,
               put: Callable[[tuple[str, ...], np.ndarray], Any] | None = None,
               **runtime) -> Pretrained:
  """Config, parameters and tokenizer of a workdir or checkpoint source.

  `runtime` overrides runtime fields of the config (dtype = the compute dtype, remat_policy,
  scan_layers, ...); `storage_dtype` is the dtype the parameters come in (default: the config's
  param_dtype, float32), whatever the compute dtype; `put(path, array)` takes each parameter
  (e.g. onto its devices). See `models.load_pretrained` for checkpoint files.
  """
  src = resolve(source)
  if src.kind == "preset":
    raise ValueError(f"{src.name!r} is a preset (a random initialisation), not a checkpoint")
  if src.kind == "workdir":
    return _load_workdir(src.name, storage_dtype=storage_dtype, tokenizer=tokenizer, put=put,
                         runtime=runtime)
  return load_pretrained(src.checkpoint, storage_dtype=storage_dtype, tokenizer=tokenizer,
                         put=put, **runtime)


def start_model(model_cfg: Any) -> tuple[LlamaConfig, Any, Pretrained | None]:
  """(config, tokenizer, Pretrained or None for a preset) of an experiment config's model.

  The config's runtime settings (compute dtype included) go into the model config; pretrained
  parameters stay in float32 (the config's param_dtype), the master weights of a bf16 run.
  """
  src = resolve(model_cfg.source)
  runtime = runtime_of(model_cfg)
  if src.kind == "preset":
    cfg, tok = preset(src.name, model_cfg.get("tokenizer"))
    return cfg.replace(**runtime), tok, None
  pre = load_model(src, **runtime)
  return pre.config, pre.tokenizer, pre

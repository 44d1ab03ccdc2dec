"""Write a Hugging Face checkpoint (safetensors + config.json + tokenizer) from our parameters.

  python -m helpsteer_jax.export --model SOURCE --out DIR --task reward|causal_lm

`--task reward` writes a LlamaForSequenceClassification (num_labels = our reward-head width);
`--task causal_lm` a LlamaForCausalLM. transformers loads either with `from_pretrained(DIR)`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig

TASKS = {"reward": "LlamaForSequenceClassification", "causal_lm": "LlamaForCausalLM"}
_DTYPES = ("float32", "bfloat16")


def export_hf(params: dict[str, Any], cfg: LlamaConfig, out_dir: str | Path, *, task: str,
              tokenizer: Any | None = None, dtype: str = "float32") -> Path:
  """Writes `params` ({"model", "lm_head"?, "score"?}) as a Hugging Face model directory."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  if task not in TASKS:
    raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
  if dtype not in _DTYPES:
    raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
  keep = {"model"}
  extra: dict[str, Any] = {"architectures": [TASKS[task]]}
  if task == "reward":
    if "score" not in params:
      raise ValueError("these parameters have no reward head ('score'); export --task causal_lm")
    keep.add("score")
    num_labels = int(np.shape(params["score"]["kernel"])[-1])
    extra["num_labels"] = num_labels
    extra["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
    extra["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
  elif not cfg.tie_word_embeddings:
    if "lm_head" not in params:
      raise ValueError("these parameters have no lm_head and the config does not tie embeddings")
    keep.add("lm_head")
  state = convert.to_hf_state_dict({k: v for k, v in params.items() if k in keep},
                                   scan_layers=cfg.scan_layers)
  if dtype == "bfloat16":
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    state = {k: v.astype(ml_dtypes.bfloat16) for k, v in state.items()}
  else:
    state = {k: v.astype(np.float32) for k, v in state.items()}

  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf_fields = cfg.to_hf()
  if tokenizer is not None and tokenizer.pad_token_id is not None:
    hf_fields["pad_token_id"] = tokenizer.pad_token_id
  hf_cfg = transformers.LlamaConfig(**hf_fields, **extra, dtype=dtype)
  hf_cfg.save_pretrained(out)
  save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
  if tokenizer is not None:
    tokenizer.save_pretrained(out)
  return out


def main(argv: list[str] | None = None) -> None:
  from helpsteer_jax.models.loading import load_pretrained  # pylint: disable=g-import-not-at-top

  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="model source (HF dir or hub id, gguf:PATH, "
                  "smollm2)")
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument("--task", required=True, choices=sorted(TASKS))
  ap.add_argument("--dtype", default="float32", choices=_DTYPES)
  args = ap.parse_args(argv)
  pre = load_pretrained(args.model)
  out = export_hf(pre.params, pre.config, args.out, task=args.task, tokenizer=pre.tokenizer,
                  dtype=args.dtype)
  print(json.dumps({"out": str(out), "task": args.task, "architectures": TASKS[args.task]}))


if __name__ == "__main__":
  main()

"""ExPO: model extrapolation from an initial and an aligned checkpoint (Zheng et al. 2024,
"Weak-to-Strong Extrapolation Expedites Alignment").

  python -m helpsteer_jax.expo --init A --aligned B --alpha 0.3 --out C

writes θ = θ_aligned + α (θ_aligned − θ_init) as a Hugging Face directory. A and B are any two
sources `runs.load_model` reads (training workdirs, RLHF workdirs, HF directories, GGUF) with the
same parameter names and shapes; anything else is an error naming the first mismatch. The result
is a reward model (LlamaForSequenceClassification) when B has a reward head, else a causal LM.
Arithmetic is float32, one tensor at a time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from helpsteer_jax import runs
from helpsteer_jax.data.records import error_line
from helpsteer_jax.export import export_hf
from helpsteer_jax.models import convert


def extrapolate(init: dict[str, Any], aligned: dict[str, Any], alpha: float) -> dict[str, Any]:
  """aligned + α(aligned − init), leaf by leaf; the trees must match in names and shapes."""
  a, b = dict(convert.flatten(init)), dict(convert.flatten(aligned))
  missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
  if missing or extra:
    names = lambda ps: ", ".join("/".join(p) for p in ps[:5])
    raise ValueError(f"ExPO needs the same parameters in both checkpoints: only in --aligned: "
                     f"[{names(missing)}]; only in --init: [{names(extra)}]")
  out: dict[str, Any] = {}
  for path, w_aligned in b.items():
    w_aligned = np.asarray(w_aligned, np.float32)
    w_init = np.asarray(a[path], np.float32)
    if w_init.shape != w_aligned.shape:
      raise ValueError(f"ExPO: parameter {'/'.join(path)} has shape {w_init.shape} in --init but "
                       f"{w_aligned.shape} in --aligned")
    convert.set_path(out, path, w_aligned + np.float32(alpha) * (w_aligned - w_init))
  return out


def expo(init: str, aligned: str, alpha: float, out: str | Path, *,
         dtype: str = "float32") -> Path:
  # One layer layout for both (a workdir may have trained with scanned layers).
  pre_init = runs.load_model(init, tokenizer=False, scan_layers=False)
  pre_aligned = runs.load_model(aligned, tokenizer=False, scan_layers=False)
  params = extrapolate(pre_init.params, pre_aligned.params, alpha)
  task = "reward" if "score" in params else "causal_lm"
  return export_hf(params, pre_aligned.config, out, task=task, tokenizer=_tokenizer(aligned),
                   dtype=dtype)


def _tokenizer(source: str) -> Any | None:
  """The aligned model's tokenizer, or None when its directory has none (tiny test models)."""
  try:
    return runs.tokenizer_of(source)
  except (OSError, ValueError):
    return None


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--init", required=True, help="the starting checkpoint (e.g. the SFT model)")
  ap.add_argument("--aligned", required=True, help="the aligned checkpoint (e.g. after DPO/RLHF)")
  ap.add_argument("--alpha", type=float, required=True, help="extrapolation strength (0.3 ...)")
  ap.add_argument("--out", required=True, help="output Hugging Face directory")
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  return ap


def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    out = expo(args.init, args.aligned, args.alpha, args.out, dtype=args.dtype)
  except (ValueError, FileNotFoundError) as e:  # missing, broken or mismatched checkpoints
    sys.exit(error_line(e))
  print(json.dumps({"out": str(out), "alpha": args.alpha}))


if __name__ == "__main__":
  main()

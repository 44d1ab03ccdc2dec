"""Write a Hugging Face checkpoint (safetensors + config.json + tokenizer) from our parameters.

  python -m helpsteer_jax.export --model SOURCE --out DIR --task reward|causal_lm

`--task reward` writes a LlamaForSequenceClassification (num_labels = our reward-head width);
`--task causal_lm` a LlamaForCausalLM. transformers 4.x (4.51, which the official RewardBench CLI
pins) and 5.x both load either with `from_pretrained(DIR)` and read the same numbers: config.json
carries RoPE in both versions' layouts, the tokenizer files name a class both know, and the pad id
is one that never ends a real sequence (see `export_pad_id`).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from helpsteer_jax import runs
from helpsteer_jax.data.records import error_line
from helpsteer_jax.models import convert
from helpsteer_jax.models.config import LlamaConfig

TASKS = {"reward": "LlamaForSequenceClassification", "causal_lm": "LlamaForCausalLM"}
_DTYPES = ("float32", "bfloat16")
# A short conversation rendered with the chat template: its tokens are the ones real sequences are
# made of (role markers, end-of-turn tokens, the template's last token).
_PROBE = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
# LlamaForSequenceClassification rejects token_type_ids, which transformers-4.x's
# PreTrainedTokenizerFast returns unless the tokenizer files say otherwise.
_MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def _ids(value: int | list[int] | None) -> set[int]:
  if value is None:
    return set()
  return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def export_pad_id(tokenizer: Any, cfg: LlamaConfig) -> int:
  """The pad id to export: an existing special token that never ends (nor appears in) a sequence.

  transformers' LlamaForSequenceClassification ignores the attention mask when pooling: it reads
  the reward at the last token that is not `pad_token_id`. With pad = EOS (the usual choice, and
  SmolLM2's) a chat template that ends with EOS (Llama-3.x-Instruct's `<|eot_id|>`) is read one
  token early, whereas we train and score at the last real token (from the mask). So every id a
  rendered conversation contains is ruled out, EOS included, and the first fit is taken of:
  the tokenizer's own pad token; a special token named for padding (Llama-3.1's
  `<|finetune_right_pad_id|>`, `<pad>`); the unknown token (Llama-2's `<unk>`, SmolLM2's
  `<|endoftext|>`); any other special token (Llama-3's reserved ones). A special token is never
  produced from ordinary text, and one outside every rendering cannot be read as a sequence end
  under any pooling rule transformers has used. Tokens are reused rather than added because a new
  one would resize the embeddings and the vocabulary the model was trained with. Last resort: BOS,
  which starts sequences and so never ends one (enough for transformers' last-non-pad rule).
  """
  ending = _ids(cfg.eos_token_id) | _ids(tokenizer.eos_token_id)
  seen = set(ending)
  if getattr(tokenizer, "chat_template", None):
    text = tokenizer.apply_chat_template(_PROBE, tokenize=False)
    # Both ways a consumer may tokenise the rendering: ours (no added specials) and RewardBench's.
    for add in (False, True):
      ids = list(tokenizer(text, add_special_tokens=add)["input_ids"])
      seen.update(ids)
      ending.update(ids[-1:])
  decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
  special = sorted({int(i) for i, t in decoder.items() if getattr(t, "special", False)}
                   | set(tokenizer.all_special_ids))
  special = [i for i in special if i < cfg.vocab_size]  # the id needs an embedding row
  named_pad = [i for i in special if "pad" in str(tokenizer.convert_ids_to_tokens(i)).lower()]
  for i in [tokenizer.pad_token_id, *named_pad, tokenizer.unk_token_id, *special]:
    if i is not None and i in special and i not in seen:
      return int(i)
  bos = tokenizer.bos_token_id
  if bos is not None and bos not in ending and bos < cfg.vocab_size:
    return int(bos)
  raise ValueError("the tokenizer has no special token that can pad without ending a sequence; "
                   "add one (tokenizer.add_special_tokens({'pad_token': '<pad>'})) and resize "
                   "the model's embeddings before exporting")


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
  pad_id = None if tokenizer is None else export_pad_id(tokenizer, cfg)
  if pad_id is not None:
    hf_fields["pad_token_id"] = pad_id
  # A copy: transformers 5 writes rope_theta into the rope_scaling dict it is given.
  hf_cfg = transformers.LlamaConfig(**copy.deepcopy(hf_fields), **extra, dtype=dtype)
  hf_cfg.save_pretrained(out)
  # transformers 5 writes RoPE only as `rope_parameters` and the dtype only as `dtype`; put back
  # the fields transformers 4.x reads (without them it runs RoPE with theta 10000).
  _update_json(out / "config.json", {
      **{k: hf_fields[k] for k in ("rope_theta", "rope_scaling") if k in hf_fields},
      "torch_dtype": dtype})
  save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
  if tokenizer is not None:
    _save_tokenizer(tokenizer, out, pad_id)
  return out


def _update_json(path: Path, fields: dict[str, Any]) -> None:
  data = json.loads(path.read_text(encoding="utf-8"))
  data.update(fields)
  path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_tokenizer(tokenizer: Any, out: Path, pad_id: int) -> None:
  """Saves `tokenizer` with pad `pad_id` in files transformers 4.x and 5.x both load.

  The caller's tokenizer is left as it is (it may be a cached object used for training); only the
  written files change.
  """
  tokenizer.save_pretrained(out)
  pad = tokenizer.convert_ids_to_tokens(pad_id)
  fields: dict[str, Any] = {"pad_token": pad, "model_input_names": _MODEL_INPUT_NAMES}
  if (out / "tokenizer.json").exists():
    # transformers 5 names its tokenizer.json-backed class `TokenizersBackend`, which 4.x does
    # not have; PreTrainedTokenizerFast is that class in 4.x and an alias of it in 5.x, and it
    # tokenises exactly as tokenizer.json says in both.
    fields["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_json = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    if tok_json.get("padding"):  # padding built into tokenizer.json must use the same id
      tok_json["padding"].update(pad_id=pad_id, pad_token=pad)
      (out / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False),
                                          encoding="utf-8")
  _update_json(out / "tokenizer_config.json", fields)
  if (out / "special_tokens_map.json").exists():
    _update_json(out / "special_tokens_map.json", {"pad_token": pad})


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="model source (training workdir, HF dir or hub "
                  "id, gguf:PATH, smollm2)")
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument("--task", required=True, choices=sorted(TASKS))
  ap.add_argument("--dtype", default="float32", choices=_DTYPES)
  return ap


def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    pre = runs.load_model(args.model)
    out = export_hf(pre.params, pre.config, args.out, task=args.task, tokenizer=pre.tokenizer,
                    dtype=args.dtype)
  except (ValueError, FileNotFoundError) as e:  # a missing or broken model: one line naming it
    sys.exit(error_line(e))
  print(json.dumps({"out": str(out), "task": args.task, "architectures": TASKS[args.task]}))


if __name__ == "__main__":
  main()

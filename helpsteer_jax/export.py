"""Write a Hugging Face checkpoint (safetensors + config.json + tokenizer + model card) from our
parameters, and optionally push it to the Hub.

  python -m helpsteer_jax.export --model SOURCE --out DIR --task reward|causal_lm
      [--max-shard-size 5GB] [--eval-results RESULTS.json] [--license ID]
      [--push-to-hub ORG/NAME [--private] [--commit-message MSG] [--hub-dir DIR]]

`--task reward` writes a LlamaForSequenceClassification (num_labels = our reward-head width);
`--task causal_lm` a LlamaForCausalLM. transformers 4.x (4.51, which the official RewardBench CLI
pins) and 5.x both load either with `from_pretrained(DIR)` and read the same numbers: config.json
carries RoPE in both versions' layouts, the tokenizer files name a class both know, and the pad id
is one that never ends a real sequence (see `export_pad_id`). Weights over --max-shard-size
(default 5GB, huggingface_hub's and transformers 4.x's; transformers 5 uses 50GB) are split by
huggingface_hub into model-0000k-of-0000n.safetensors with a model.safetensors.index.json.
README.md is a model card (helpsteer_jax.model_card).

--push-to-hub uploads DIR to that model repo (HfApi: create_repo, then upload_folder, which also
deletes the repo's older weight files). With --hub-dir it writes the same files to
HUB_DIR/ORG/NAME instead, a local "hub" folder that needs no network or token (the tests use
it); `from_pretrained(HUB_DIR/ORG/NAME)` then loads what a clone of the repo would hold.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import (HfApi, StateDictSplit, constants,
                             split_state_dict_into_shards_factory)
from huggingface_hub.utils import validate_repo_id
from safetensors.numpy import save_file

from helpsteer_jax import model_card, runs
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
DEFAULT_SHARD_SIZE = "5GB"
# Weight files of an earlier export (one file or shards + index): removed before writing and,
# on a push, from the repo, so a loader never finds two sets of weights.
_WEIGHT_FILES = ("model*.safetensors", constants.SAFETENSORS_INDEX_FILE)


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
              tokenizer: Any | None = None, dtype: str = "float32",
              max_shard_size: int | str = DEFAULT_SHARD_SIZE) -> Path:
  """Writes `params` ({"model", "lm_head"?, "score"?}) as a Hugging Face model directory.

  The weights go to one model.safetensors, or, when they exceed `max_shard_size` (bytes, or a
  size such as "5GB" or "500MB"), to shards with an index, as transformers writes them.
  """
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
  split = plan_shards(state, max_shard_size)  # a bad size fails before anything is written

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
  _save_weights(state, split, out)
  if tokenizer is not None:
    _save_tokenizer(tokenizer, out, pad_id)
  return out


def plan_shards(state: dict[str, np.ndarray], max_shard_size: int | str) -> StateDictSplit:
  """huggingface_hub's split of `state` into files of at most `max_shard_size` (one tensor
  larger than that gets a file of its own); a single file is model.safetensors."""
  try:
    return split_state_dict_into_shards_factory(
        state, get_storage_size=lambda a: a.nbytes, max_shard_size=max_shard_size,
        filename_pattern="model{suffix}.safetensors")
  except ValueError as e:
    raise ValueError(f"--max-shard-size {max_shard_size!r}: {e}") from e


def _save_weights(state: dict[str, np.ndarray], split: StateDictSplit, out: Path) -> None:
  """model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json."""
  _remove_matching(out, _WEIGHT_FILES)
  for filename, names in split.filename_to_tensors.items():
    save_file({k: state[k] for k in names}, str(out / filename), metadata={"format": "pt"})
  if split.is_sharded:
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (out / constants.SAFETENSORS_INDEX_FILE).write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _remove_matching(folder: Path, patterns: tuple[str, ...]) -> None:
  for p in folder.iterdir():
    if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns):
      p.unlink()


def check_repo_id(repo_id: str, *, local: bool) -> None:
  """A ValueError unless `repo_id` is a valid model repo id (ORG/NAME for a local hub)."""
  try:
    validate_repo_id(repo_id)
  except ValueError as e:
    raise ValueError(f"--push-to-hub {repo_id!r}: {e}") from e
  if local and repo_id.count("/") != 1:
    raise ValueError(f"--push-to-hub {repo_id!r}: a local hub (--hub-dir) needs ORG/NAME")


def push_to_hub(folder: str | Path, repo_id: str, *, hub_dir: str | Path | None = None,
                private: bool = False, commit_message: str | None = None) -> str:
  """Uploads `folder` to the model repo `repo_id`; returns the commit URL (or the local folder).

  The repo is created when missing (`private` applies only then). The upload adds every file of
  `folder` and deletes the repo's other weight files. With `hub_dir`, the same files go to
  `hub_dir/repo_id` (its other weight files removed likewise): a local hub, no network.
  """
  check_repo_id(repo_id, local=hub_dir is not None)
  folder = Path(folder)
  message = commit_message or f"Upload {folder.name} with helpsteer_jax"
  if hub_dir is None:
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message,
                             delete_patterns=list(_WEIGHT_FILES))
    return str(info.commit_url)
  target = Path(hub_dir) / repo_id
  target.mkdir(parents=True, exist_ok=True)
  _remove_matching(target, _WEIGHT_FILES)
  shutil.copytree(folder, target, dirs_exist_ok=True)
  return str(target)


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
  ap.add_argument("--max-shard-size", default=DEFAULT_SHARD_SIZE,
                  type=lambda s: int(s) if s.isdigit() else s,
                  help=f"largest weight file: bytes or e.g. 500MB, 5GB (default "
                       f"{DEFAULT_SHARD_SIZE}); larger weights are sharded with an index")
  ap.add_argument("--eval-results", default=None,
                  help="a helpsteer-evaluate results.json for the model card (default: any "
                       "results.json in the training workdir or one folder below it)")
  ap.add_argument("--license", default=None,
                  help="license id for the model card (default: the base model's, when known)")
  ap.add_argument("--push-to-hub", default=None, metavar="ORG/NAME",
                  help="upload the exported folder to this Hub model repo")
  ap.add_argument("--private", action="store_true", help="create the repo private")
  ap.add_argument("--commit-message", default=None)
  ap.add_argument("--hub-dir", default=None,
                  help="with --push-to-hub: write to HUB_DIR/ORG/NAME instead (a local hub)")
  return ap


def main(argv: list[str] | None = None) -> None:
  ap = build_parser()
  args = ap.parse_args(argv)
  for flag in ("hub_dir", "commit_message", "private"):
    if getattr(args, flag) and not args.push_to_hub:
      ap.error(f"--{flag.replace('_', '-')} needs --push-to-hub")
  try:
    if args.push_to_hub:  # bad names and files fail before the (long) load
      check_repo_id(args.push_to_hub, local=args.hub_dir is not None)
    if args.eval_results:
      model_card.eval_results(args.model, args.eval_results)
    pre = runs.load_model(args.model)
    out = export_hf(pre.params, pre.config, args.out, task=args.task, tokenizer=pre.tokenizer,
                    dtype=args.dtype, max_shard_size=args.max_shard_size)
    card = model_card.write_card(out, source=args.model, task=args.task, dtype=args.dtype,
                                 name=args.push_to_hub, eval_results=args.eval_results,
                                 license=args.license)
    pushed = (push_to_hub(out, args.push_to_hub, hub_dir=args.hub_dir, private=args.private,
                          commit_message=args.commit_message) if args.push_to_hub else None)
  # A missing or broken model or results file, a bad option, a refused upload (huggingface_hub's
  # errors for no token, no network or an HTTP refusal are OSErrors): one line naming it.
  except (ValueError, OSError) as e:
    sys.exit(error_line(e))
  print(json.dumps({"out": str(out), "task": args.task, "architectures": TASKS[args.task],
                    "card": str(card), "pushed": pushed}))


if __name__ == "__main__":
  main()

"""The model card (README.md with YAML metadata) of an exported model: where it came from, how it
was trained and how it scored.

  model_card.write_card(OUT_DIR, source=WORKDIR, task="reward", name="org/my-rm")

Metadata (huggingface_hub's ModelCardData): `base_model` when known (the hub id a training run
started from, followed through workdirs; the packaged `smollm2` is SmolLM2-135M-Instruct),
`datasets` (hub ids; the packaged HelpSteer sample is nvidia/HelpSteer), `license` (given, else
the base model's when it is one the experiment configs use), `library_name`, `pipeline_tag` and
`tags`. Body: the architecture and how to read the reward; for a training workdir the base model,
data, objective (the loss's docstring, from the `losses` registry) and recipe from its
config.json, and the held-out metrics of its summary.json; the results of helpsteer-evaluate
(`results.json`) when given or found in the workdir. Any other source gets the same card without
the training sections.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ml_collections
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.utils import validate_repo_id

from helpsteer_jax import losses, runs
from helpsteer_jax.data.paths import HELPSTEER_SAMPLE
from helpsteer_jax.data.reading import is_local_file

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
HELPSTEER_ID = "nvidia/HelpSteer"  # the source of the packaged sample (data/assets/README.md)
# Licenses of the base models the experiment configs start from; a hub model's license is not
# looked up (no network), so any other comes from --license.
LICENSES = {SMOLLM2_ID: "apache-2.0", "meta-llama/Llama-3.1-8B-Instruct": "llama3.1",
            "meta-llama/Llama-3.1-70B-Instruct": "llama3.1"}
# task -> (pipeline_tag, tags, transformers auto class)
TASKS = {"reward": ("text-classification", ["reward-model"], "AutoModelForSequenceClassification"),
         "causal_lm": ("text-generation", [], "AutoModelForCausalLM")}


def _repo_id(name: str) -> str | None:
  """`name` when it can only be a Hub repo id (ORG/NAME, not a local path), else None."""
  if name.count("/") != 1 or os.path.exists(name):
    return None
  try:
    validate_repo_id(name)
  except ValueError:
    return None
  return name


def base_model(source: str) -> str | None:
  """The Hub id of the checkpoint `source` (a model source) comes from, when there is one.

  A training workdir is followed to the source its run started from; a preset (random init),
  a GGUF file or a local Hugging Face folder has none.
  """
  if source == "smollm2":
    return SMOLLM2_ID
  if runs.is_workdir(source):
    run = runs.run_config(source)
    return base_model(str((run.model if "model" in run else run.policy).source))
  return _repo_id(source)


def dataset_id(path: str) -> str | None:
  """The Hub id of a data source: a hub dataset, or the packaged HelpSteer sample's origin."""
  if Path(path).name == HELPSTEER_SAMPLE:
    return HELPSTEER_ID
  return None if is_local_file(path) else _repo_id(path)


def _data_sources(data: Any) -> list[tuple[str, dict[str, Any]]]:
  """(role, {path, format, split, ...}) of every data source named in a run's `data` block."""
  found = []
  for role, value in sorted(dict(data).items()):
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
      if isinstance(item, (dict, ml_collections.ConfigDict)) and item.get("path"):
        found.append((role, dict(item)))
  return found


def _objective(run: ml_collections.ConfigDict) -> str:
  if "loss" not in run:  # an RLHF run (rlhf/train.py)
    rl = run.get("rl", {})
    return (f"RLOO REINFORCE against the reward model `{run.reward.source}`, KL beta "
            f"{rl.get('kl_beta')}, {rl.get('samples_per_prompt')} samples per prompt")
  name = run.loss.name
  try:
    doc = (losses.get_loss(name).__doc__ or "").strip().split("\n\n")[0]
  except ValueError:  # a loss this version does not know
    doc = ""
  return f"`{name}`" + (f": {' '.join(doc.split())}" if doc else "")


def _recipe(run: ml_collections.ConfigDict, summary: dict[str, Any]) -> list[tuple[str, Any]]:
  model = run.model if "model" in run else run.policy
  optim, train, data = run.optim, run.train, run.data
  rows = [("learning rate", f"{optim.lr:g} ({optim.schedule}, {optim.warmup_steps} warm-up "
                            f"steps)"),
          ("optimizer", f"AdamW (b1 {optim.b1}, b2 {optim.b2}, weight decay "
                        f"{optim.weight_decay}, gradient clip {optim.grad_clip})"),
          ("length", f"{train.steps} steps" if train.steps else f"{train.get('epochs')} epochs")]
  if "step" in summary:
    rows.append(("steps trained", summary["step"]))
  if "batch_size" in data:
    rows.append(("batch size", f"{data.batch_size} x {train.grad_accum} accumulation"))
  if "rl" in run:
    rows.append(("prompts per step", f"{run.rl.prompts_per_step} x "
                                     f"{run.rl.samples_per_prompt} samples"))
  if "max_length" in data:
    rows.append(("max length", f"{data.max_length} tokens"))
  rows.append(("precision", f"{model.get('dtype', 'float32')} compute, float32 weights"))
  if model.get("lora_rank"):
    rows.append(("LoRA", f"rank {model.lora_rank}, alpha {model.get('lora_alpha')} (merged)"))
  if run.get("init_from"):
    rows.append(("initialised from", f"`{run.init_from}`"))
  rows.append(("seed", run.get("seed")))
  return rows


def _read_json(path: Path) -> Any:
  try:
    return json.loads(path.read_text(encoding="utf-8"))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read it as JSON ({e})") from e


def _is_eval_results(data: Any) -> bool:
  return isinstance(data, dict) and "evaluation" in data and "accuracy" in data


def eval_results(source: str, path: str | None) -> list[dict[str, Any]]:
  """The helpsteer-evaluate results for the card: `path`, else every results.json in the
  workdir `source` or one folder below it (other JSON files are left out)."""
  if path is not None:
    data = _read_json(Path(path))
    if not _is_eval_results(data):
      raise ValueError(f"{path}: not a results.json written by helpsteer-evaluate")
    return [data]
  if not runs.is_workdir(source):
    return []
  found = [Path(source) / "results.json", *sorted(Path(source).glob("*/results.json"))]
  return [d for d in (_read_json(p) for p in found if p.is_file()) if _is_eval_results(d)]


def _pct(x: float | None) -> str:
  return "n/a" if x is None else f"{100 * x:.2f}"


def _eval_section(results: list[dict[str, Any]]) -> list[str]:
  lines = ["## Evaluation", ""]
  for r in results:
    n = r.get("pairs", {}).get("rows")
    lines.append(f"`{r.get('data')}` ({n} pairs, {r.get('mode')}: {r.get('reward')}), accuracy "
                 f"{_pct(r['accuracy'])}%.")
    rb = r.get("rewardbench")
    if rb:
      lines += ["", "| RewardBench section | score (%) |", "|---|---|"]
      lines += [f"| {k} | {_pct(v)} |" for k, v in rb["sections"].items()]
      overall = ("overall" if rb.get("overall") is not None else
                 "mean of the sections present (not the official overall: data incomplete)")
      score = rb["overall"] if rb.get("overall") is not None else rb["mean_of_present_sections"]
      lines.append(f"| {overall} | {_pct(score)} |")
    lines.append("")
  return lines


def _training_section(run: ml_collections.ConfigDict, workdir: str, base: str | None,
                      sources: list[tuple[str, dict[str, Any]]]) -> list[str]:
  summary_path = Path(workdir) / "summary.json"
  summary = _read_json(summary_path) if summary_path.is_file() else {}
  started = (run.model if "model" in run else run.policy).source
  lines = ["## Training", "",
           f"- Base model: {f'[{base}](https://huggingface.co/{base})' if base else 'none'} "
           f"(the run started from `{started}`)"]
  for role, s in sources:
    ds = dataset_id(s["path"])
    lines.append(f"- Data ({role}): `{s['path']}`" + (f" ({ds})" if ds else "") +
                 f", format `{s.get('format')}`, split `{s.get('split')}`")
  lines += [f"- Objective: {_objective(run)}", "", "| setting | value |", "|---|---|"]
  try:
    recipe = _recipe(run, summary)
  except (AttributeError, KeyError):  # a config of another version: point to it
    recipe = [("recipe", f"see `{Path(workdir) / 'config.json'}`")]
  lines += [f"| {k} | {v} |" for k, v in recipe]
  held_out = {k: v for k, v in (summary.get("eval_after") or {}).items()
              if isinstance(v, (int, float))}
  if held_out:
    lines += ["", "Held-out metrics at the end of training: "
              + ", ".join(f"{k} {v:.4g}" for k, v in sorted(held_out.items())) + "."]
  return lines + [""]


def build_card(out_dir: str | Path, *, source: str, task: str, name: str | None = None,
               dtype: str = "float32", eval_results_path: str | None = None,
               license: str | None = None) -> ModelCard:  # pylint: disable=redefined-builtin
  """The card of the model exported to `out_dir` from `source` (see the module docstring)."""
  if task not in TASKS:
    raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
  pipeline_tag, task_tags, auto_class = TASKS[task]
  out = Path(out_dir)
  hf = _read_json(out / "config.json")
  title = name or out.resolve().name
  run = runs.run_config(source) if runs.is_workdir(source) else None
  base = base_model(source)
  sources = _data_sources(run.data) if run is not None else []
  datasets = sorted({d for d in (dataset_id(s["path"]) for _, s in sources) if d})
  metadata = ModelCardData(
      base_model=base, datasets=datasets or None, license=license or LICENSES.get(base),
      library_name="transformers", pipeline_tag=pipeline_tag,
      tags=["helpsteer_jax", *task_tags, *([run.loss.name] if run and "loss" in run else [])])

  heads = int(hf.get("num_labels", 1))
  what = ("a causal language model" if task == "causal_lm" else
          "a reward model; the reward of a chat-templated conversation is the head's output "
          + ("" if heads == 1 else f"0 (of {heads}) ") + "at its last token")
  lines = [f"# {title}", "",
           f"{hf['architectures'][0]} ({hf['num_hidden_layers']} layers, hidden size "
           f"{hf['hidden_size']}, {dtype} weights) exported by helpsteer_jax from `{source}`: "
           f"{what}.", "",
           "```python", f"from transformers import AutoTokenizer, {auto_class}",
           f"tok = AutoTokenizer.from_pretrained({title!r})",
           f"model = {auto_class}.from_pretrained({title!r})"]
  if task == "reward":
    lines += ["chat = [{'role': 'user', 'content': 'Hi'},",
              "        {'role': 'assistant', 'content': 'Hello!'}]",
              "ids = tok.apply_chat_template(chat, return_tensors='pt', return_dict=True)",
              "reward = model(**ids).logits[0, 0]"]
  lines += ["```", ""]
  if run is not None:
    lines += _training_section(run, source, base, sources)
  else:
    lines += ["Not exported from a training workdir: no training recipe is recorded.", ""]
  results = eval_results(source, eval_results_path)
  if results:
    lines += _eval_section(results)
  return ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n" + "\n".join(lines))


def write_card(out_dir: str | Path, *, source: str, task: str, name: str | None = None,
               dtype: str = "float32", eval_results: str | None = None,
               license: str | None = None) -> Path:  # pylint: disable=redefined-builtin
  """Writes `out_dir`/README.md (`build_card`); returns its path."""
  path = Path(out_dir) / "README.md"
  build_card(out_dir, source=source, task=task, name=name, dtype=dtype,
             eval_results_path=eval_results, license=license).save(path)
  return path

"""Evaluate a reward model (or a DPO policy) on RewardBench or any chosen/rejected pairs.

  python -m helpsteer_jax.evaluate --model SOURCE --data SOURCE --output DIR

--model: anything `models.load_pretrained` reads (training workdir, HF directory, gguf:PATH,
  `smollm2`). A model with a reward head is scored directly: reward = head output 0 (helpfulness
  for HelpSteer regression heads) or, with --attribute-weights w1,w2,..., the weighted sum of the
  outputs. A causal LM is scored by its response log-probs (prompt tokens excluded), as RewardBench
  does for DPO models: --dpo-reference SOURCE gives beta * (sum log pi - sum log pi_ref), and
  --reference-free sum|average|norm the reference-free variants (see evaluation/logprobs.py;
  "norm" is the official one: minus the L2 norm of the per-token log-probs).
--data: a local .json/.jsonl file with columns prompt, chosen, rejected (+ subset, id), or a hub
  dataset id (default allenai/reward-bench, split "filtered"), loaded only when no such local file
  exists. With a `subset` column on every row the RewardBench sections are computed
  (evaluation/rewardbench.py: official weights, partial data handled explicitly); otherwise, or
  with --mode pairwise, plain pair accuracy, by strength bucket when a strength/margin column exists.

Every pair is rendered with the model's chat template by the training pipeline's encoder (one
rendering, no added specials, oldest turns cut first), never cut inside a response. The length
limit is the model's context (max_position_embeddings) unless --max-length lowers it, so every
pair the model can read is scored. As in the official scores, every pair counts in every
denominator: a pair that does not fit even then is not scored and counts as wrong
(results.json: pairs.unscored_too_long, unscored). --report-dropped adds the non-official
variant with those pairs left out of the denominators (results.json: dropped_too_long).
Sequences are scored in length-sorted batches, the batch dimension sharded over all devices.

Writes DIR/results.json, DIR/examples.jsonl and DIR/{scores,margins,length_bias}.png.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from helpsteer_jax.data.chat import prompt_messages
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.reading import read_text
from helpsteer_jax.data.records import DataError, Message, error_line, where
from helpsteer_jax.evaluation import logprobs, rewardbench

DEFAULT_DATA = "allenai/reward-bench"
STRENGTH_COLUMNS = ("strength", "margin")


@dataclasses.dataclass
class Pair:
  id: str
  subset: Optional[str]
  messages: list[Message]
  chosen: str
  rejected: str
  strength: Optional[float]
  source: str
  line: int


# ----------------------------------------------------------------------------- data
def _file_rows(path: Path) -> list[tuple[int, Any]]:
  """(line or list position, row) of a JSON list file or a JSONL file (1-based)."""
  text = read_text(path)  # UTF-8; a bad byte is a DataError naming its line
  if text.lstrip().startswith("["):
    try:
      rows = json.loads(text)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    return list(enumerate(rows, 1))
  out = []
  # split("\n"), not splitlines(): that also splits at \x0c, \x1c, U+2028 ... inside a row,
  # which would break the row and shift every line number after it.
  for line_no, line in enumerate(text.split("\n"), 1):
    if not line.strip():
      continue
    try:
      out.append((line_no, json.loads(line)))
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from e
  return out


def _hub_rows(name: str, split: str) -> list[tuple[int, Any]]:
  import datasets  # pylint: disable=g-import-not-at-top
  ds = datasets.load_dataset(name, split=split)
  return list(enumerate(ds, 1))


def _is_local(source: str) -> bool:
  return Path(source).exists() or source.endswith((".json", ".jsonl")) or source.startswith(
      (".", "/"))


def parse_pair(row: Any, source: str, line: int) -> Pair:
  """One row as a Pair; a DataError naming `source:line` when a column is missing or bad."""
  from helpsteer_jax.score import response_text  # pylint: disable=g-import-not-at-top
  if not isinstance(row, dict):
    raise DataError(f"{where(source, line)}: a row must be a JSON object")
  for col in ("prompt", "chosen", "rejected"):
    if col not in row or row[col] is None:
      raise DataError(f"{where(source, line)}: missing column '{col}'")
  subset = row.get("subset")
  if subset is not None and not isinstance(subset, str):
    raise DataError(f"{where(source, line)}: subset must be a string")
  strength = None
  for col in STRENGTH_COLUMNS:
    if row.get(col) is not None:
      try:
        strength = float(row[col])
      except (TypeError, ValueError) as e:
        raise DataError(f"{where(source, line)}: {col} must be a number") from e
      break
  return Pair(id=str(row.get("id", line)), subset=subset,
              messages=prompt_messages(row["prompt"], source, line),
              chosen=response_text(row["chosen"], source, line, "chosen"),
              rejected=response_text(row["rejected"], source, line, "rejected"),
              strength=strength, source=source, line=line)


def load_pairs(source: str, *, split: str = "filtered", limit: Optional[int] = None,
               limit_per_subset: Optional[int] = None) -> list[Pair]:
  """Pairs of a local .json/.jsonl file, or of a hub dataset when no local file is named.

  `limit`: only the first N rows; `limit_per_subset`: then only the first K rows of each subset.
  """
  if _is_local(source):
    path = Path(source)
    if not path.is_file():
      raise DataError(f"{source}: data file not found")
    rows = _file_rows(path)
  else:
    rows = _hub_rows(source, split)
  if limit is not None:
    rows = rows[:limit]
  pairs = [parse_pair(row, source, line) for line, row in rows]
  if limit_per_subset is not None:
    seen: dict[Optional[str], int] = {}
    kept = []
    for p in pairs:
      seen[p.subset] = seen.get(p.subset, 0) + 1
      if seen[p.subset] <= limit_per_subset:
        kept.append(p)
    pairs = kept
  if not pairs:
    raise DataError(f"{source}: no rows")
  return pairs


def choose_mode(pairs: Sequence[Pair], mode: str) -> str:
  if mode == "pairwise":
    return "pairwise"
  missing = next((p for p in pairs if p.subset is None), None)
  if mode == "rewardbench":
    if missing is not None:
      raise DataError(f"{where(missing.source, missing.line)}: --mode rewardbench needs a "
                      "'subset' column on every row")
    return "rewardbench"
  return "pairwise" if missing is not None else "rewardbench"


# ----------------------------------------------------------------------------- metrics
def _strength_buckets(strengths: np.ndarray, ok: np.ndarray) -> dict[str, dict[str, Any]]:
  values = np.unique(strengths)
  if len(values) <= 12:
    keys = [f"{v:g}" for v in strengths]
    order = [f"{v:g}" for v in values]
  else:  # quartile bins
    edges = np.quantile(strengths, [0.0, 0.25, 0.5, 0.75, 1.0])
    bins = np.clip(np.searchsorted(edges, strengths, side="right") - 1, 0, 3)
    names = [f"[{edges[i]:.3g}, {edges[i + 1]:.3g}{']' if i == 3 else ')'}" for i in range(4)]
    keys = [names[b] for b in bins]
    order = names
  out = {}
  for k in order:
    sel = np.array([x == k for x in keys])
    if sel.any():
      out[k] = {"accuracy": float(ok[sel].mean()), "count": int(sel.sum())}
  return out


def length_bias(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """How rewards follow response length (token counts of the responses only)."""
  lc = np.array([e["chosen_tokens"] for e in examples], np.float64)
  lr = np.array([e["rejected_tokens"] for e in examples], np.float64)
  rc = np.array([e["reward_chosen"] for e in examples], np.float64)
  rr = np.array([e["reward_rejected"] for e in examples], np.float64)
  ok = np.array([e["correct"] for e in examples], bool)
  differ = lc != lr
  longer_wins = np.where(lc > lr, rc > rr, rr > rc)[differ]
  lengths, rewards = np.concatenate([lc, lr]), np.concatenate([rc, rr])

  def corr(a, b):
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 and a.std() > 0 and b.std() > 0 else None

  def acc(sel):
    return float(ok[sel].mean()) if sel.any() else None

  return {
      "longer_response_preferred_fraction": float(longer_wins.mean()) if differ.any() else None,
      "chosen_longer_fraction": float((lc > lr).mean()) if len(lc) else None,
      "accuracy_when_chosen_longer": acc(lc > lr),
      "accuracy_when_chosen_shorter": acc(lc < lr),
      "pearson_reward_vs_tokens": corr(lengths, rewards),
      "pearson_reward_vs_log_tokens": corr(np.log1p(lengths), rewards),
  }


# ----------------------------------------------------------------------------- model
def _parse_weights(text: Optional[str]) -> Optional[np.ndarray]:
  if text is None:
    return None
  try:
    return np.array([float(x) for x in text.split(",")], np.float64)
  except ValueError as e:
    raise ValueError(f"--attribute-weights must be comma-separated numbers, got {text!r}") from e


def _describe(args: argparse.Namespace, num_labels: Optional[int]) -> tuple[str, str]:
  """(mode, human description of the reward)."""
  if args.dpo_reference:
    return "dpo", (f"beta * (sum log pi(y|x) - sum log pi_ref(y|x)) over response tokens, "
                   f"beta={args.beta}, reference={args.dpo_reference}")
  if args.reference_free:
    kind = logprobs.reference_free_kind(args.reference_free)
    desc = {"sum": "sum log pi(y|x)", "average": "mean per-token log pi(y|x)",
            "norm": "-||per-token log pi(y|x)||_2 (RewardBench ref-free 'norm')"}[kind]
    return f"reference_free_{kind}", desc + " over response tokens"
  if args.attribute_weights:
    return "reward_model", f"weighted sum of the {num_labels} head outputs: {args.attribute_weights}"
  return "reward_model", "head output 0" + (" (helpfulness)" if (num_labels or 1) > 1 else "")


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  from helpsteer_jax import sharding  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.models import (LlamaForCausalLM, LlamaRewardModel,  # pylint: disable=g-import-not-at-top
                                    load_pretrained)
  from helpsteer_jax.score import Scorer  # pylint: disable=g-import-not-at-top

  if args.dpo_reference and args.reference_free:
    raise ValueError("--dpo-reference and --reference-free exclude each other")
  t0 = time.perf_counter()
  pairs = load_pairs(args.data, split=args.split, limit=args.limit,
                     limit_per_subset=args.limit_per_subset)
  eval_kind = choose_mode(pairs, args.mode)
  # The compute dtype goes into the config (load_pretrained's runtime keywords); the weights are
  # loaded in float32 whatever it is.
  runtime = {"dtype": args.dtype} if args.dtype else {}
  pre = load_pretrained(args.model, **runtime)
  lm_mode = bool(args.dpo_reference or args.reference_free)
  if not lm_mode and pre.num_labels is None:
    raise ValueError(f"{args.model} has no reward head: pass --dpo-reference SOURCE or "
                     "--reference-free sum|average|norm to score it as a DPO policy")
  mode, reward_desc = _describe(args, pre.num_labels)
  weights = _parse_weights(args.attribute_weights)
  if weights is not None and len(weights) != pre.num_labels:
    raise ValueError(f"--attribute-weights has {len(weights)} values; the head has "
                     f"{pre.num_labels} outputs")
  params: Any
  if args.dpo_reference:
    ref = load_pretrained(args.dpo_reference, tokenizer=False, **runtime)
    logprobs.check_same_vocab(pre.config, ref.config)
    params = {"policy": pre.causal_lm_params(), "reference": ref.causal_lm_params()}
    fn = logprobs.stats_fn(LlamaForCausalLM(pre.config), LlamaForCausalLM(ref.config))
    model = None
  elif args.reference_free:
    params = pre.causal_lm_params()
    fn, model = logprobs.stats_fn(LlamaForCausalLM(pre.config)), None
  else:
    params, fn = pre.reward_params(), None
    model = LlamaRewardModel(pre.config, num_labels=pre.num_labels)
  t_load = time.perf_counter()

  # Length limit: the model's context unless --max-length lowers it, so that every pair the model
  # can read is scored (the official scores count every pair).
  context = pre.config.max_position_embeddings
  if args.dpo_reference:
    context = min(context, ref.config.max_position_embeddings)
  max_length = args.max_length or context
  if max_length > context:
    raise ValueError(f"--max-length {max_length} exceeds the model's context of {context} "
                     "tokens (max_position_embeddings)")

  # Encoding: the training pipeline's chat rendering and prompt/response boundary.
  tok = pre.tokenizer
  encoder = ChatEncoder(tok, max_length)
  encoded = encoder.encode_many([(p.messages, (p.chosen, p.rejected)) for p in pairs],
                                [where(p.source, p.line) for p in pairs])
  kept: list[tuple[Pair, Any, bool]] = []
  unscored = []  # too long even so: counted as wrong, never dropped from the denominators
  is_scored = np.zeros(len(pairs), bool)
  for k, (p, (seqs, cut)) in enumerate(zip(pairs, encoded)):
    if seqs is None:
      unscored.append({"id": p.id, "subset": p.subset, "line": p.line})
    else:
      kept.append((p, seqs, bool(cut)))
      is_scored[k] = True
  seqs_flat = [s.input_ids for _, seqs, _ in kept for s in seqs]
  starts = [s.prompt_len for _, seqs, _ in kept for s in seqs]
  t_enc = time.perf_counter()

  mesh = sharding.make_mesh({"data": -1})
  scorer = Scorer(model, params, pad_id=tok.pad_token_id, batch_size=args.batch_size,
                  pad_to_multiple_of=args.pad_multiple, fn=fn, mesh=mesh)
  bar = None
  if args.progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=len(seqs_flat), unit="seq", desc="scoring", mininterval=5.0, file=sys.stderr)
  out = scorer(seqs_flat, starts, progress=bar.update if bar is not None else None)
  if bar is not None:
    bar.close()
  t_score = time.perf_counter()

  if mode == "dpo":
    rewards = logprobs.dpo_reward(out, args.beta)
  elif lm_mode:
    rewards = logprobs.reference_free_reward(out, args.reference_free)
  elif weights is not None:
    rewards = np.asarray(out, np.float64) @ weights
  else:
    rewards = np.asarray(out[:, 0], np.float64)
  r_chosen, r_rejected = rewards[0::2], rewards[1::2]
  ok = rewardbench.correct(r_chosen, r_rejected)  # the scored pairs

  examples = []
  for k, (p, seqs, cut) in enumerate(kept):
    ex: dict[str, Any] = {
        "id": p.id, "subset": p.subset, "line": p.line,
        "reward_chosen": float(r_chosen[k]), "reward_rejected": float(r_rejected[k]),
        "margin": float(r_chosen[k] - r_rejected[k]),
        "chosen_tokens": int(len(seqs[0].input_ids) - seqs[0].prompt_len),
        "rejected_tokens": int(len(seqs[1].input_ids) - seqs[1].prompt_len),
        "prompt_tokens": int(seqs[0].prompt_len), "prompt_truncated": cut,
        "correct": bool(ok[k]),
    }
    if p.strength is not None:
      ex["strength"] = p.strength
    if not lm_mode and out.shape[1] > 1:
      ex["outputs_chosen"] = [float(x) for x in out[2 * k]]
      ex["outputs_rejected"] = [float(x) for x in out[2 * k + 1]]
    if lm_mode:
      ex["logp_chosen"] = float(out[2 * k, 0])
      ex["logp_rejected"] = float(out[2 * k + 1, 0])
      if mode == "dpo":
        ex["ref_logp_chosen"] = float(out[2 * k, 3])
        ex["ref_logp_rejected"] = float(out[2 * k + 1, 3])
    examples.append(ex)

  tokens = int(sum(len(s) for s in seqs_flat))
  passes = 2 if mode == "dpo" else 1
  results: dict[str, Any] = {
      "model": args.model, "data": args.data, "mode": mode, "reward": reward_desc,
      "evaluation": eval_kind, "max_length": max_length, "model_context": context,
      "limit": args.limit, "limit_per_subset": args.limit_per_subset,
      "pairs": {"rows": len(pairs), "scored": len(kept), "unscored_too_long": len(unscored),
                "prompt_truncated": int(sum(c for _, _, c in kept))},
      "ties": int(np.sum(r_chosen == r_rejected)),
      "timings": {
          "load_seconds": round(t_load - t0, 3), "encode_seconds": round(t_enc - t_load, 3),
          "score_seconds": round(t_score - t_enc, 3),
          "tokens_scored": tokens, "sequences": len(seqs_flat),
          "forward_passes_per_sequence": passes,
          "tokens_per_second": round(tokens / max(t_score - t_enc, 1e-9), 1),
          "batch_size": scorer.batch_size, "devices": int(mesh.size),
          "platform": jax.devices()[0].platform,
          "note": "score_seconds includes XLA compilation (one per padded length); tokens are "
                  "real (unpadded) tokens of every scored sequence, counted once",
      },
      "unscored": unscored,
  }
  # Official: every pair in every denominator, an unscored one as wrong.
  results.update(_scores(eval_kind, pairs, _every_pair(ok, is_scored)))
  if eval_kind == "rewardbench":
    results["rewardbench"]["unscored_too_long_by_subset"] = _count_by(
        s["subset"] for s in unscored)
  if args.report_dropped:  # asked for: the same scores over the scored pairs only
    results["dropped_too_long"] = {
        "note": f"not the official scoring: the {len(unscored)} pair(s) longer than "
                f"{max_length} tokens are left out of every denominator",
        **_scores(eval_kind, [p for p, _, _ in kept], ok)}
  if examples:
    results["length_bias"] = length_bias(examples)
  if lm_mode:  # the policy's reference-free rewards come with the same forward pass
    extra = {}
    for kind in logprobs.REFERENCE_FREE:
      r = logprobs.reference_free_reward(out, kind)
      c = _every_pair(rewardbench.correct(r[0::2], r[1::2]), is_scored)
      entry: dict[str, Any] = {"accuracy": float(c.mean())}
      if eval_kind == "rewardbench":
        s = rewardbench.summarize_correct([p.subset for p in pairs], c)
        entry.update(sections=s["sections"], overall=s["overall"],
                     mean_of_present_sections=s["mean_of_present_sections"])
      extra[kind] = entry
    results["policy_reference_free_same_pass"] = extra

  out_dir = Path(args.output)
  out_dir.mkdir(parents=True, exist_ok=True)
  with open(out_dir / "examples.jsonl", "w", encoding="utf-8") as f:
    for ex in examples:
      f.write(json.dumps(ex, ensure_ascii=False) + "\n")
  from helpsteer_jax.evaluation import plots  # pylint: disable=g-import-not-at-top
  title = f"{args.model} ({mode})"
  plots.scores_plot(results, out_dir / "scores.png")
  plots.margins_plot([e["margin"] for e in examples], out_dir / "margins.png", title)
  plots.length_plot(examples, out_dir / "length_bias.png", title)
  results["timings"]["total_seconds"] = round(time.perf_counter() - t0, 3)
  (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  return results


def _every_pair(scored_correct: np.ndarray, is_scored: np.ndarray) -> np.ndarray:
  """Correctness of every pair: the scored pairs' in order, False for a pair not scored."""
  out = np.zeros(len(is_scored), bool)
  out[is_scored] = scored_correct
  return out


def _scores(eval_kind: str, pairs: Sequence[Pair], ok: np.ndarray) -> dict[str, Any]:
  """accuracy and the RewardBench sections (or pairwise accuracy by strength) of `pairs`."""
  out: dict[str, Any] = {"accuracy": float(ok.mean()) if len(ok) else None}
  if eval_kind == "rewardbench":
    out["rewardbench"] = rewardbench.summarize_correct([p.subset for p in pairs], ok)
  else:
    pw: dict[str, Any] = {"accuracy": out["accuracy"], "count": len(pairs)}
    strengths = [p.strength for p in pairs]
    if pairs and all(s is not None for s in strengths):
      pw["by_strength"] = _strength_buckets(np.asarray(strengths, np.float64), ok)
    out["pairwise"] = pw
  return out


def _count_by(values: Iterable[Optional[str]]) -> dict[str, int]:
  out: dict[str, int] = {}
  for v in values:
    out[str(v)] = out.get(str(v), 0) + 1
  return out


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="workdir, HF dir, gguf:PATH or smollm2")
  ap.add_argument("--data", default=DEFAULT_DATA,
                  help=f"local .json/.jsonl, or a hub dataset id (default {DEFAULT_DATA})")
  ap.add_argument("--split", default="filtered", help="hub split (default: filtered)")
  ap.add_argument("--output", required=True, help="output directory")
  ap.add_argument("--mode", choices=("auto", "rewardbench", "pairwise"), default="auto")
  ap.add_argument("--attribute-weights", default=None,
                  help="w1,w2,...: reward = weighted sum of the head outputs")
  ap.add_argument("--dpo-reference", default=None, help="reference model source (DPO reward)")
  ap.add_argument("--reference-free", default=None, choices=("sum", "average", "avg", "norm"))
  ap.add_argument("--beta", type=float, default=1.0, help="DPO reward scale (accuracy unchanged)")
  ap.add_argument("--max-length", type=int, default=None,
                  help="token limit per sequence (default and at most: the model's context, "
                       "max_position_embeddings); a pair over it is counted as wrong")
  ap.add_argument("--report-dropped", action="store_true",
                  help="also report the scores with the too-long pairs dropped from the "
                       "denominators (results.json: dropped_too_long; not the official way)")
  ap.add_argument("--batch-size", type=int, default=8)
  ap.add_argument("--pad-multiple", type=int, default=64, help="pad lengths to this multiple")
  ap.add_argument("--limit", type=int, default=None, help="only the first N rows")
  ap.add_argument("--limit-per-subset", type=int, default=None,
                  help="only the first K rows of each subset (after --limit)")
  ap.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                  help="compute dtype (default: the model's); weights and rewards stay float32")
  ap.add_argument("--no-progress", dest="progress", action="store_false")
  return ap


def main(argv: Iterable[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    results = evaluate(args)
  except (DataError, ValueError, FileNotFoundError) as e:
    sys.exit(error_line(e))
  summary = {k: results[k] for k in ("mode", "accuracy")}
  if "rewardbench" in results:
    rb = results["rewardbench"]
    summary.update(sections=rb["sections"], overall=rb["overall"],
                   mean_of_present_sections=rb["mean_of_present_sections"])
  summary.update(pairs=results["pairs"], tokens_per_second=results["timings"]["tokens_per_second"],
                 output=str(args.output))
  print(json.dumps(summary))


if __name__ == "__main__":
  main()

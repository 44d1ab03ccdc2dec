"""Evaluate a reward model (or a DPO policy) on RewardBench or any chosen/rejected pairs.

The model is any source `runs.load_model` reads (a training workdir, a Hugging Face directory,
gguf:PATH, `smollm2`). A model with a reward head is scored directly: reward = head output 0
(helpfulness for HelpSteer regression heads) or, with `attribute_weights`, the weighted sum of
the outputs. A causal LM is scored by its response log-probs (prompt tokens excluded), as
RewardBench does for DPO models: `dpo_reference` gives beta * (sum log pi - sum log pi_ref), and
`reference_free` sum|average|norm the reference-free variants (evaluation/implicit_rewards.py;
"norm" is the official one).

With a `subset` on every pair the RewardBench sections are computed (evaluation/rewardbench.py:
official weights, partial data handled explicitly); otherwise, or with mode "pairwise", plain pair
accuracy, by strength bucket when a strength/margin column exists.

Every pair is rendered with the model's chat template by the training pipeline's encoder (one
rendering, no added specials, oldest turns cut first), never cut inside a response. The length
limit is the model's context (max_position_embeddings) unless `max_length` lowers it, so every
pair the model can read is scored. As in the official scores, every pair counts in every
denominator: a pair that does not fit even then is not scored and counts as wrong
(results.json: pairs.unscored_too_long, unscored). `report_dropped` adds the non-official variant
with those pairs left out of the denominators (results.json: dropped_too_long). Sequences are
scored in length-sorted batches, the batch dimension sharded over all devices.

With `judge` the model is a causal LM grading each response with the rubric of
evaluation/judges.py (expected score, or the mean of sampled judgments): `evaluate_judge`.

Writes OUTPUT/results.json, OUTPUT/examples.jsonl and OUTPUT/{scores,margins,length_bias}.png;
on RewardBench also the leaderboard's files, OUTPUT/leaderboard/eval-set/ORG/NAME.json and
OUTPUT/leaderboard/eval-set-scores/ORG/NAME.json (evaluation/leaderboard.py; ORG/NAME is
`leaderboard_name`, else the model's hub id, else local/<folder name>).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import numpy as np
from tqdm import tqdm

from helpsteer_jax import runs, sharding
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.records import where
from helpsteer_jax.evaluation import (implicit_rewards, judges, leaderboard, metrics, plots,
                                      rewardbench)
from helpsteer_jax.evaluation.rows import Pair, choose_mode, load_pairs
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models import LlamaForCausalLM, LlamaRewardModel, Pretrained

DEFAULT_DATA = "allenai/reward-bench"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """One evaluation: which model on which pairs, how the reward is read, where results go."""
  model: str  # a model source (HF dir, gguf:PATH, smollm2, training workdir)
  output: str  # output directory
  data: str = DEFAULT_DATA  # a local file or a hub dataset id
  split: str = "filtered"  # hub split
  mode: str = "auto"  # auto | rewardbench | pairwise
  attribute_weights: Optional[tuple[float, ...]] = None  # reward = weighted sum of head outputs
  dpo_reference: Optional[str] = None  # reference model source: DPO implicit reward
  reference_free: Optional[str] = None  # sum | average | avg | norm
  beta: float = 1.0  # DPO reward scale (accuracy unchanged)
  max_length: Optional[int] = None  # default and at most: the model's context
  report_dropped: bool = False
  batch_size: int = 8
  pad_multiple: int = 64
  limit: Optional[int] = None  # only the first N rows
  limit_per_subset: Optional[int] = None  # then only the first K rows of each subset
  dtype: Optional[str] = None  # compute dtype; weights and rewards stay float32
  progress: bool = True
  # LLM-as-a-judge (evaluation/judges.py): the model, a causal LM, grades each response with the
  # rubric; "expected" = E[score] from one forward pass, "sampled" = the mean of judge_samples
  # sampled judgments. The pair is right when the chosen response scores strictly higher.
  judge: Optional[str] = None  # None | expected | sampled
  judge_samples: int = 3
  seed: int = 0
  leaderboard_name: Optional[str] = None  # ORG/NAME in the leaderboard files (RewardBench only)


def parse_weights(text: Optional[str]) -> Optional[tuple[float, ...]]:
  """"w1,w2,..." as numbers (None stays None)."""
  if text is None:
    return None
  try:
    return tuple(float(x) for x in text.split(","))
  except ValueError as e:
    raise ValueError(f"--attribute-weights must be comma-separated numbers, got {text!r}") from e


def _describe(cfg: EvalConfig, num_labels: Optional[int]) -> tuple[str, str]:
  """(mode, human description of the reward)."""
  if cfg.dpo_reference:
    return "dpo", (f"beta * (sum log pi(y|x) - sum log pi_ref(y|x)) over response tokens, "
                   f"beta={cfg.beta}, reference={cfg.dpo_reference}")
  if cfg.reference_free:
    kind = implicit_rewards.reference_free_kind(cfg.reference_free)
    desc = {"sum": "sum log pi(y|x)", "average": "mean per-token log pi(y|x)",
            "norm": "-||per-token log pi(y|x)||_2 (RewardBench ref-free 'norm')"}[kind]
    return f"reference_free_{kind}", desc + " over response tokens"
  if cfg.attribute_weights:
    weights = ",".join(f"{w:g}" for w in cfg.attribute_weights)
    return "reward_model", f"weighted sum of the {num_labels} head outputs: {weights}"
  return "reward_model", "head output 0" + (" (helpfulness)" if (num_labels or 1) > 1 else "")


def _scoring(cfg: EvalConfig, pre: Pretrained, ref: Optional[Pretrained]) -> tuple[Any, Any, Any]:
  """(params, Scorer fn, reward model) for the kind of reward asked for."""
  if ref is not None:
    implicit_rewards.check_same_vocab(pre.config, ref.config)
    params = {"policy": pre.causal_lm_params(), "reference": ref.causal_lm_params()}
    return params, implicit_rewards.stats_fn(LlamaForCausalLM(pre.config),
                                             LlamaForCausalLM(ref.config)), None
  if cfg.reference_free:
    return pre.causal_lm_params(), implicit_rewards.stats_fn(LlamaForCausalLM(pre.config)), None
  return pre.reward_params(), None, LlamaRewardModel(pre.config, num_labels=pre.num_labels)


def evaluate_judge(cfg: EvalConfig) -> dict[str, Any]:
  """Every pair of `cfg.data` graded by `cfg.model` as a rubric judge; writes the results.

  A response the judge could not score (no readable score in any sampled judgment, or a request
  longer than the model's context) makes its pair count as wrong, as an unscored pair does; the
  counts are in results.json. Equal scores are ties and count as wrong (RewardBench's rule).
  """
  t0 = time.perf_counter()
  pairs = load_pairs(cfg.data, split=cfg.split, limit=cfg.limit,
                     limit_per_subset=cfg.limit_per_subset)
  eval_kind = choose_mode(pairs, cfg.mode)
  board = _board_name(cfg, eval_kind, "judge")  # a bad name fails before the model loads
  judge = judges.load_judge(cfg.model, cfg.judge, samples=cfg.judge_samples,
                            max_length=cfg.max_length, batch_size=cfg.batch_size, dtype=cfg.dtype,
                            seed=cfg.seed, mesh=sharding.make_mesh({"data": -1})
                            if cfg.judge == "expected" else None)
  t_load = time.perf_counter()
  prompts = [p.messages for p in pairs for _ in range(2)]
  responses = [r for p in pairs for r in (p.chosen, p.rejected)]
  out = judge(prompts, responses)
  scores = out.expected if cfg.judge == "expected" else out.mean
  r_chosen, r_rejected = scores[0::2], scores[1::2]
  is_scored = ~(np.isnan(r_chosen) | np.isnan(r_rejected))
  ok = metrics.every_pair(rewardbench.correct(r_chosen[is_scored], r_rejected[is_scored]),
                          is_scored)
  results: dict[str, Any] = {
      "model": cfg.model, "data": cfg.data, "mode": f"judge ({cfg.judge})",
      "reward": ("expected rubric score (one forward pass)" if cfg.judge == "expected" else
                 f"mean rubric score of {cfg.judge_samples} sampled judgments"),
      "evaluation": eval_kind, "limit": cfg.limit, "limit_per_subset": cfg.limit_per_subset,
      "pairs": {"rows": len(pairs), "scored": int(is_scored.sum()),
                "unscored": int((~is_scored).sum()), "too_long_requests": int(out.too_long)},
      "ties": int(np.sum(r_chosen[is_scored] == r_rejected[is_scored])),
      "timings": {"load_seconds": round(t_load - t0, 3),
                  "judge_seconds": round(time.perf_counter() - t_load, 3)},
  }
  if cfg.judge == "sampled":
    results["unscorable_judgments"] = dict(out.unscorable)
    results["judgments_per_response"] = cfg.judge_samples
  results.update(_scores(eval_kind, pairs, ok))
  out_dir = Path(cfg.output)
  out_dir.mkdir(parents=True, exist_ok=True)
  if board is not None:
    results["leaderboard"] = _write_board(cfg, board, "judge", pairs, ok, r_chosen, r_rejected)
  with open(out_dir / "examples.jsonl", "w", encoding="utf-8") as f:
    for k, p in enumerate(pairs):
      ex = {"id": p.id, "subset": p.subset, "line": p.line,
            "reward_chosen": None if np.isnan(r_chosen[k]) else float(r_chosen[k]),
            "reward_rejected": None if np.isnan(r_rejected[k]) else float(r_rejected[k]),
            "correct": bool(ok[k])}
      if cfg.judge == "sampled":
        ex["judgments_chosen"], ex["judgments_rejected"] = (out.judgments[2 * k],
                                                            out.judgments[2 * k + 1])
      f.write(json.dumps(ex, ensure_ascii=False) + "\n")
  results["timings"]["total_seconds"] = round(time.perf_counter() - t0, 3)
  (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  return results


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
  """Scores every pair of `cfg.data` with `cfg.model`; writes and returns the results."""
  if cfg.judge:
    if cfg.dpo_reference or cfg.reference_free or cfg.attribute_weights:
      raise ValueError("--judge grades with the model's text; it excludes --dpo-reference, "
                       "--reference-free and --attribute-weights")
    return evaluate_judge(cfg)
  if cfg.dpo_reference and cfg.reference_free:
    raise ValueError("--dpo-reference and --reference-free exclude each other")
  t0 = time.perf_counter()
  pairs = load_pairs(cfg.data, split=cfg.split, limit=cfg.limit,
                     limit_per_subset=cfg.limit_per_subset)
  eval_kind = choose_mode(pairs, cfg.mode)
  # The compute dtype goes into the config (load_model's runtime keywords); the weights are
  # loaded in float32 whatever it is.
  runtime = {"dtype": cfg.dtype} if cfg.dtype else {}
  pre = runs.load_model(cfg.model, **runtime)
  lm_mode = bool(cfg.dpo_reference or cfg.reference_free)
  if not lm_mode and pre.num_labels is None:
    raise ValueError(f"{cfg.model} has no reward head: pass --dpo-reference SOURCE or "
                     "--reference-free sum|average|norm to score it as a DPO policy")
  mode, reward_desc = _describe(cfg, pre.num_labels)
  board = _board_name(cfg, eval_kind, mode)
  weights = None if cfg.attribute_weights is None else np.asarray(cfg.attribute_weights,
                                                                  np.float64)
  if weights is not None and len(weights) != pre.num_labels:
    raise ValueError(f"--attribute-weights has {len(weights)} values; the head has "
                     f"{pre.num_labels} outputs")
  ref = (runs.load_model(cfg.dpo_reference, tokenizer=False, **runtime) if cfg.dpo_reference
         else None)
  params, fn, model = _scoring(cfg, pre, ref)
  t_load = time.perf_counter()

  # Length limit: the model's context unless max_length lowers it, so that every pair the model
  # can read is scored (the official scores count every pair).
  context = pre.config.max_position_embeddings
  if ref is not None:
    context = min(context, ref.config.max_position_embeddings)
  max_length = cfg.max_length or context
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
  scorer = Scorer(model, params, pad_id=tok.pad_token_id, batch_size=cfg.batch_size,
                  pad_to_multiple_of=cfg.pad_multiple, fn=fn, mesh=mesh)
  bar = None
  if cfg.progress:
    bar = tqdm(total=len(seqs_flat), unit="seq", desc="scoring", mininterval=5.0, file=sys.stderr)
  out = scorer(seqs_flat, starts, progress=bar.update if bar is not None else None)
  if bar is not None:
    bar.close()
  t_score = time.perf_counter()

  if mode == "dpo":
    rewards = implicit_rewards.dpo_reward(out, cfg.beta)
  elif lm_mode:
    rewards = implicit_rewards.reference_free_reward(out, cfg.reference_free)
  elif weights is not None:
    rewards = np.asarray(out, np.float64) @ weights
  else:
    rewards = np.asarray(out[:, 0], np.float64)
  r_chosen, r_rejected = rewards[0::2], rewards[1::2]
  ok = rewardbench.correct(r_chosen, r_rejected)  # the scored pairs
  examples = _examples(kept, out, r_chosen, r_rejected, ok, mode, lm_mode)

  tokens = int(sum(len(s) for s in seqs_flat))
  passes = 2 if mode == "dpo" else 1
  results: dict[str, Any] = {
      "model": cfg.model, "data": cfg.data, "mode": mode, "reward": reward_desc,
      "evaluation": eval_kind, "max_length": max_length, "model_context": context,
      "limit": cfg.limit, "limit_per_subset": cfg.limit_per_subset,
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
  results.update(_scores(eval_kind, pairs, metrics.every_pair(ok, is_scored)))
  if eval_kind == "rewardbench":
    results["rewardbench"]["unscored_too_long_by_subset"] = metrics.count_by(
        s["subset"] for s in unscored)
  if cfg.report_dropped:  # asked for: the same scores over the scored pairs only
    results["dropped_too_long"] = {
        "note": f"not the official scoring: the {len(unscored)} pair(s) longer than "
                f"{max_length} tokens are left out of every denominator",
        **_scores(eval_kind, [p for p, _, _ in kept], ok)}
  if examples:
    results["length_bias"] = metrics.length_bias(examples)
  if lm_mode:  # the policy's reference-free rewards come with the same forward pass
    results["policy_reference_free_same_pass"] = _reference_free_same_pass(
        out, pairs, is_scored, eval_kind)

  out_dir = Path(cfg.output)
  out_dir.mkdir(parents=True, exist_ok=True)
  if board is not None:  # every pair: an unscored one as wrong, with no scores
    every = np.full((len(pairs), 2), np.nan)
    every[is_scored] = np.stack([r_chosen, r_rejected], axis=1)
    results["leaderboard"] = _write_board(cfg, board, mode, pairs,
                                          metrics.every_pair(ok, is_scored), every[:, 0],
                                          every[:, 1])
  with open(out_dir / "examples.jsonl", "w", encoding="utf-8") as f:
    for ex in examples:
      f.write(json.dumps(ex, ensure_ascii=False) + "\n")
  title = f"{cfg.model} ({mode})"
  plots.scores_plot(results, out_dir / "scores.png")
  plots.margins_plot([e["margin"] for e in examples], out_dir / "margins.png", title)
  plots.length_plot(examples, out_dir / "length_bias.png", title)
  results["timings"]["total_seconds"] = round(time.perf_counter() - t0, 3)
  (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  return results


def _examples(kept: Sequence[tuple[Pair, Any, bool]], out: np.ndarray, r_chosen: np.ndarray,
              r_rejected: np.ndarray, ok: np.ndarray, mode: str,
              lm_mode: bool) -> list[dict[str, Any]]:
  """One record per scored pair (examples.jsonl)."""
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
  return examples


def _board_name(cfg: EvalConfig, eval_kind: str, mode: str) -> Optional[str]:
  """ORG/NAME of the leaderboard files (RewardBench only; None otherwise)."""
  if eval_kind != "rewardbench":
    return None
  return leaderboard.leaderboard_name(cfg.model, mode, cfg.leaderboard_name)


def _write_board(cfg: EvalConfig, name: str, mode: str, pairs: Sequence[Pair], ok: np.ndarray,
                 r_chosen: np.ndarray, r_rejected: np.ndarray) -> dict[str, str]:
  return leaderboard.write(Path(cfg.output) / "leaderboard", name=name, mode=mode,
                           ids=[p.id for p in pairs], subsets=[p.subset for p in pairs],
                           correct=ok, scores_chosen=r_chosen, scores_rejected=r_rejected,
                           ref_model=cfg.dpo_reference)


def _scores(eval_kind: str, pairs: Sequence[Pair], ok: np.ndarray) -> dict[str, Any]:
  return metrics.pair_scores(eval_kind, [p.subset for p in pairs], [p.strength for p in pairs],
                             ok)


def _reference_free_same_pass(out: np.ndarray, pairs: Sequence[Pair], is_scored: np.ndarray,
                              eval_kind: str) -> dict[str, Any]:
  """Every reference-free reward of the policy, from the statistics already computed."""
  extra = {}
  for kind in implicit_rewards.REFERENCE_FREE:
    r = implicit_rewards.reference_free_reward(out, kind)
    c = metrics.every_pair(rewardbench.correct(r[0::2], r[1::2]), is_scored)
    entry: dict[str, Any] = {"accuracy": float(c.mean())}
    if eval_kind == "rewardbench":
      s = rewardbench.summarize_correct([p.subset for p in pairs], c)
      entry.update(sections=s["sections"], overall=s["overall"],
                   mean_of_present_sections=s["mean_of_present_sections"])
    extra[kind] = entry
  return extra

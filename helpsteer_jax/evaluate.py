"""Evaluate a reward model (or a DPO policy) on RewardBench or any chosen/rejected pairs.

  python -m helpsteer_jax.evaluate --model SOURCE --data SOURCE --output DIR
  (installed: helpsteer-evaluate ...)

--model: any source `runs.load_model` reads (training workdir, HF directory, gguf:PATH,
  `smollm2`). A model with a reward head is scored directly: reward = head output 0 (helpfulness
  for HelpSteer regression heads) or, with --attribute-weights w1,w2,..., the weighted sum of the
  outputs. A causal LM is scored by its response log-probs (prompt tokens excluded), as RewardBench
  does for DPO models: --dpo-reference SOURCE gives beta * (sum log pi - sum log pi_ref), and
  --reference-free sum|average|norm the reference-free variants (see
  evaluation/implicit_rewards.py; "norm" is the official one: minus the L2 norm of the per-token
  log-probs).
--judge expected|sampled: the model is a causal LM grading each response with the additive
  5-point rubric (evaluation/judges.py): the expected score from one forward pass, or the mean of
  --judge-samples sampled judgments; a response it cannot score makes its pair count as wrong.
--data: a local file (.jsonl, .json, either gzipped, or .parquet) with columns prompt, chosen,
  rejected (+ subset, id), or a hub dataset id (default allenai/reward-bench, split "filtered").
  With a `subset` column on every row the RewardBench sections are computed
  (evaluation/rewardbench.py: official weights, partial data handled explicitly); otherwise, or
  with --mode pairwise, plain pair accuracy, by strength bucket when a strength/margin column
  exists.

Every pair is rendered with the model's chat template by the training pipeline's encoder (one
rendering, no added specials, oldest turns cut first), never cut inside a response. The length
limit is the model's context (max_position_embeddings) unless --max-length lowers it, so every
pair the model can read is scored. As in the official scores, every pair counts in every
denominator: a pair that does not fit even then is not scored and counts as wrong
(results.json: pairs.unscored_too_long, unscored). --report-dropped adds the non-official
variant with those pairs left out of the denominators (results.json: dropped_too_long).
Sequences are scored in length-sorted batches, the batch dimension sharded over all devices.

Writes DIR/results.json, DIR/examples.jsonl and DIR/{scores,margins,length_bias}.png; on
RewardBench also the files the reward-bench leaderboard reads, in the layout of
allenai/reward-bench-results: DIR/leaderboard/eval-set/ORG/NAME.json (per-subset accuracies) and
DIR/leaderboard/eval-set-scores/ORG/NAME.json (per-pair results and scores), ORG/NAME being
--leaderboard-name, else the model's hub id, else local/<folder name>
(evaluation/leaderboard.py). The work is done by helpsteer_jax.evaluation.pair_eval.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from helpsteer_jax.data.records import BAD_INPUT, error_line
from helpsteer_jax.evaluation.pair_eval import DEFAULT_DATA, EvalConfig, evaluate, parse_weights


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="workdir, HF dir, gguf:PATH or smollm2")
  ap.add_argument("--data", default=DEFAULT_DATA,
                  help="local .jsonl/.json(.gz)/.parquet, or a hub dataset id (default "
                       f"{DEFAULT_DATA})")
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
  ap.add_argument("--judge", default=None, choices=("expected", "sampled"),
                  help="grade with the model as an LLM judge (rubric of evaluation/judges.py): "
                       "expected = E[score] from one forward pass; sampled = the mean of "
                       "--judge-samples sampled judgments")
  ap.add_argument("--judge-samples", type=int, default=3)
  ap.add_argument("--seed", type=int, default=0, help="sampling seed of --judge sampled")
  ap.add_argument("--leaderboard-name", default=None, metavar="ORG/NAME",
                  help="the model's name in the leaderboard files (RewardBench only; default: "
                       "its hub id, else local/<folder name>)")
  ap.add_argument("--no-progress", dest="progress", action="store_false")
  return ap


def config_from_args(args: argparse.Namespace) -> EvalConfig:
  return EvalConfig(**{**vars(args), "attribute_weights": parse_weights(args.attribute_weights)})


def main(argv: Sequence[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    results = evaluate(config_from_args(args))
  except (*BAD_INPUT, ValueError) as e:
    sys.exit(error_line(e))
  summary = {k: results[k] for k in ("mode", "accuracy")}
  if "rewardbench" in results:
    rb = results["rewardbench"]
    summary.update(sections=rb["sections"], overall=rb["overall"],
                   mean_of_present_sections=rb["mean_of_present_sections"])
  summary.update(pairs=results["pairs"], output=str(args.output),
                 tokens_per_second=results["timings"].get("tokens_per_second"))
  print(json.dumps(summary))


if __name__ == "__main__":
  main()

"""Score rows of prompts and responses with a reward model.

  python -m helpsteer_jax.score --model SOURCE --input IN.jsonl --output OUT.jsonl
  (installed: helpsteer-score ...)

Each row has `prompt` (a string or a list of chat messages) and either `chosen`/`rejected` or
`response` (strings, or one-message assistant lists); the input is jsonl, json, either gzipped, or
parquet (a bad row is named by file and line). Every conversation is rendered once with the
tokenizer's chat template and tokenised without adding special tokens again (no double BOS), by
the training pipeline's encoder: a conversation over --max-length loses its oldest turns first.
Output rows are the input rows plus `reward_chosen`/`reward_rejected` or `reward` (the head output
`--head-index`; all outputs under `outputs_*` when the head has several), in input order.
The work is done by helpsteer_jax.evaluation.score_rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from helpsteer_jax.data.records import BAD_INPUT, error_line
from helpsteer_jax.evaluation.score_rows import score_file


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--model", required=True, help="reward model source (HF dir, gguf:PATH, ...)")
  ap.add_argument("--input", required=True)
  ap.add_argument("--output", required=True)
  ap.add_argument("--batch-size", type=int, default=8)
  ap.add_argument("--max-length", type=int, default=4096)
  ap.add_argument("--head-index", type=int, default=0, help="head output used as `reward`")
  return ap


def main(argv: Sequence[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    summary = score_file(args.model, args.input, args.output, batch_size=args.batch_size,
                         max_length=args.max_length, head_index=args.head_index)
  except (*BAD_INPUT, ValueError) as e:  # bad rows, a missing or broken model
    sys.exit(error_line(e))
  print(json.dumps({**summary, "output": args.output}))


if __name__ == "__main__":
  main()

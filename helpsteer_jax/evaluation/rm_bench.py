"""RM-Bench (THU-KEG/RM-Bench, Liu et al. 2024): substance against style, a 3 × 3 accuracy matrix.

Each row (the repository's `total_dataset.json` schema) holds `id`, `prompt` (str), `chosen` and
`rejected` (three strings each, in the style order STYLES: concise, detailed plain text,
detailed markdown) and `domain` (chat, code, math, safety-refuse, safety-response). A row is
scored by its 3 × 3 grid of comparisons; over N rows

    M[i, j] = (1/N) Σ_rows [score(chosen_i) > score(rejected_j)]        (strict: a tie is wrong)

rows i = the chosen response's style, columns j = the rejected one's. As in the RM-Bench
README's `compute_accuracy`:

    hard   = mean of the upper-right triangle (i < j): the correct answer is plainer than the
             wrong one, so a style-biased model fails here;
    normal = mean of the diagonal (same style);
    easy   = mean of the lower-left triangle (i > j): the correct answer is also the fancier one.

Domains: safety-refuse and safety-response form one "safety" domain, as in the paper's tables.
A domain's score is the mean of its 9 cells (every comparison counted once), and "average" is
the mean of the domain scores present. The paper does not spell out its Avg column beyond
"average accuracy"; this is the simplest reading of it, and `total` (the README's function over
all rows, what its scripts print for total_dataset.json) is reported beside it.

A NaN score loses every comparison it is in (NaN > x is false); the summary counts them. The
per-row results file (`score_records`) is the dataset's rows with `score_chosen` and
`score_rejected` added, as RM-Bench's scripts/run_rm.py writes it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from helpsteer_jax.data.records import DataError, Message, where
from helpsteer_jax.evaluation.response_sets import (ScoreFn, prompt_of, response_list,
                                                    score_groups)
from helpsteer_jax.evaluation.rows import read_bench_rows, row_object

HUB_ID = "THU-KEG/RM-Bench"
STYLES = ("concise", "detailed_plain", "detailed_markdown")
DOMAINS = ("chat", "math", "code", "safety")
DOMAIN_OF = {"chat": "chat", "math": "math", "code": "code", "safety-refuse": "safety",
             "safety-response": "safety"}


@dataclasses.dataclass
class Row:
  id: str
  domain: str  # one of DOMAINS (safety-* folded into "safety")
  messages: list[Message]
  chosen: list[str]
  rejected: list[str]
  source: str
  line: int
  raw: dict[str, Any] = dataclasses.field(repr=False, default_factory=dict)  # the input row


def parse_row(row: Any, source: str, line: int) -> Row:
  row = row_object(row, source, line, ("id", "prompt", "chosen", "rejected", "domain"))
  domain = DOMAIN_OF.get(row["domain"]) if isinstance(row["domain"], str) else None
  if domain is None:
    raise DataError(f"{where(source, line)}: domain must be one of {sorted(DOMAIN_OF)}, got "
                    f"{row['domain']!r}")
  return Row(id=str(row["id"]), domain=domain, messages=prompt_of(row, source, line),
             chosen=response_list(row["chosen"], source, line, "chosen", len(STYLES)),
             rejected=response_list(row["rejected"], source, line, "rejected", len(STYLES)),
             source=source, line=line, raw=row)


def load_rows(source: str = HUB_ID, *, split: Optional[str] = "train",
              limit: Optional[int] = None) -> list[Row]:
  """Rows of a local file (total_dataset.json, jsonl, parquet) or of a split of a hub dataset."""
  rows = [parse_row(row, src, line) for src, line, row in read_bench_rows(source, split, limit)]
  if not rows:
    raise DataError(f"{source}: no rows")
  return rows


# ----------------------------------------------------------------------------- arithmetic
def accuracy_matrix(score_chosen: np.ndarray, score_rejected: np.ndarray) -> np.ndarray:
  """M[i, j] = fraction of rows with score(chosen style i) > score(rejected style j): [3, 3]."""
  c = np.asarray(score_chosen, np.float64)
  r = np.asarray(score_rejected, np.float64)
  if c.ndim != 2 or c.shape != r.shape or c.shape[1] != len(STYLES) or not len(c):
    raise ValueError(f"need [N, {len(STYLES)}] chosen and rejected scores, N > 0; got "
                     f"{c.shape} and {r.shape}")
  return np.mean(c[:, :, None] > r[:, None, :], axis=0)


def difficulty(matrix: np.ndarray) -> dict[str, float]:
  """easy (lower-left, i > j), normal (diagonal) and hard (upper-right, i < j) accuracy."""
  m = np.asarray(matrix, np.float64)
  upper = np.triu_indices(len(m), 1)
  lower = np.tril_indices(len(m), -1)
  return {"easy": float(m[lower].mean()), "normal": float(np.diag(m).mean()),
          "hard": float(m[upper].mean()), "all": float(m.mean())}


def _block(c: np.ndarray, r: np.ndarray) -> dict[str, Any]:
  m = accuracy_matrix(c, r)
  return {"matrix": m.tolist(), **difficulty(m), "count": int(len(c)),
          "unscored_responses": int(np.isnan(c).sum() + np.isnan(r).sum())}


def summarize(rows: Sequence[Row], score_chosen: np.ndarray,
              score_rejected: np.ndarray) -> dict[str, Any]:
  """The total block, one block per domain present and the average of the domain scores."""
  c = np.asarray(score_chosen, np.float64)
  r = np.asarray(score_rejected, np.float64)
  domains = {}
  for d in DOMAINS:
    idx = [i for i, row in enumerate(rows) if row.domain == d]
    if idx:
      domains[d] = _block(c[idx], r[idx])
  return {
      "total": _block(c, r),
      "domains": domains,
      "average": float(np.mean([v["all"] for v in domains.values()])),
      "missing_domains": [d for d in DOMAINS if d not in domains],
      "styles": list(STYLES),
      "scoring": "M[i,j] = P(score(chosen style i) > score(rejected style j)); hard = mean "
                 "upper-right (i<j), normal = diagonal, easy = lower-left (i>j) (RM-Bench "
                 "README compute_accuracy); domain score = mean of its 9 cells; average = mean "
                 "of the domain scores present",
  }


def evaluate(rows: Sequence[Row], score_fn: ScoreFn
             ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
  """(summary, chosen scores [N, 3], rejected scores [N, 3]): one score_fn call for all six."""
  groups = score_groups(score_fn, [r.messages for r in rows],
                        [r.chosen + r.rejected for r in rows])
  s = np.stack(groups)
  c, r = s[:, :len(STYLES)], s[:, len(STYLES):]
  return summarize(rows, c, r), c, r


def official_results(summary: dict[str, Any]) -> dict[str, float]:
  """{hard_acc, normal_acc, easy_acc} over all rows, as RM-Bench's compute_accuracy returns."""
  t = summary["total"]
  return {"hard_acc": t["hard"], "normal_acc": t["normal"], "easy_acc": t["easy"]}


def score_records(rows: Sequence[Row], score_chosen: np.ndarray,
                  score_rejected: np.ndarray) -> list[dict[str, Any]]:
  """The input rows with `score_chosen` / `score_rejected` added (NaN written as null)."""
  clean = lambda a: [None if np.isnan(v) else float(v) for v in a]
  return [{**row.raw, "score_chosen": clean(c), "score_rejected": clean(r)}
          for row, c, r in zip(rows, score_chosen, score_rejected)]

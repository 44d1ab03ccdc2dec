"""What the study runs: data files, variants, seeds, head training and where results go.

Chosen for a budget of about one CPU hour on 2 cores (the report states them again):
  - matched data: helpsteer_v1_sample.jsonl as ratings (5 attributes / helpfulness only) and as
    same-prompt pairs (strength = helpfulness difference, ties dropped); 20% of prompts held out
    by hash (the library's validation split), the same prompts for ratings and pairs;
  - mix: HH-RLHF helpful + harmless samples, PandaLM (vote strength), Stack Exchange (score
    strength; first `se_questions` questions), Arena; 10% of prompts held out;
  - RewardBench: rewardbench_filtered_head500.jsonl (Chat + part of Chat Hard), official weighting.
A result file records STUDY and PROBE; a rerun retrains exactly the runs whose settings changed.
"""
from __future__ import annotations

from pathlib import Path

from experiments.mixture import PREFERENCE_MIX

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS = HERE / "results"  # committed: what the report reads
FIGURES = HERE / "figures"
REPORT = HERE / "REPORT.md"
TEMPLATE = HERE / "report_template.md"
VERDICT = HERE / "verdict.md"  # written by hand after reading the tables
WORKDIR = REPO / "runs" / "reproduce_small"  # features, heads, the export: not committed

STUDY = dict(
    model="smollm2",
    hs_file="helpsteer_v1_sample.jsonl",
    hs_validation_fraction=0.2,
    hs_max_length=2048,
    mix_validation_fraction=0.1,
    mix_max_length=1024,
    se_questions=dict((m[0], m[3]) for m in PREFERENCE_MIX)["stack_exchange"],  # 250
    rb_file="rewardbench_filtered_head500.jsonl",
    rb_max_length=2048,
    seeds=(0, 1, 2),
)
# (name, format, file): the preference mix, defined once with the trainer's mixture config.
MIX = tuple((name, fmt, file) for name, fmt, file, _ in PREFERENCE_MIX)

# (name, data, loss, init): every variant is trained with every seed; `init` names the variant
# whose head (same seed) starts this one, its helpfulness column reused as the reward.
VARIANTS = (
    ("random_head", "hs", "none", None),  # the N(0, 0.02) init, untrained: the chance baseline
    ("bt", "hs", "bt", None),
    ("margin_bt", "hs", "margin_bt", None),
    ("scaled_bt", "hs", "scaled_bt", None),
    ("regression_5attr", "hs", "regression", None),
    ("regression_helpfulness", "hs", "regression_helpfulness", None),
    ("bt_from_regression", "hs", "bt", "regression_helpfulness"),
    ("margin_bt_from_regression", "hs", "margin_bt", "regression_helpfulness"),
    ("scaled_bt_from_regression", "hs", "scaled_bt", "regression_helpfulness"),
    ("mix_bt", "mix", "bt", None),
    ("mix_margin_bt", "mix", "margin_bt", None),
    ("mix_scaled_bt", "mix", "scaled_bt", None),
    ("mix_scaled_bt_from_regression", "mix", "scaled_bt", "regression_helpfulness"),
)
# ExPO (Zheng et al. 2024): aligned + a * (aligned - init), init = the regression head it started
# from. a is picked per seed by accuracy on the *training* pairs (never on held-out or RewardBench
# data); the report also shows every a of the grid.
EXPO = dict(name="expo_scaled_bt_from_regression", aligned="scaled_bt_from_regression",
            init="regression_helpfulness", alphas=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0))
PROBE = dict(lr=1e-3, epochs=20, batch_size=16, weight_decay=0.0, warmup_fraction=0.1)
# One head exported with the backbone and scored by the library's evaluator on the first `rows`
# RewardBench rows: its rewards must equal the cached-feature rewards within `tolerance`.
EXPORT_CHECK = dict(variant="scaled_bt_from_regression", seed=0, rows=24, tolerance=2e-3)
# The paired bootstrap of the report's orderings table (evaluation/compare.py).
BOOTSTRAP = dict(resamples=2000, level=0.95, seed=0)

"""Evaluation: scoring models on pairs and rows, and the arithmetic of the scores.

  scorer.py            Scorer: the batched, length-sorted pad-and-apply loop every scorer uses
  rows.py              pairs and response rows, read through data.reading (file:line errors)
  pair_eval.py         evaluate(EvalConfig): RewardBench or plain pairs -> results.json, plots
  score_rows.py        score_file: rewards added to rows of prompts and responses
  rewardbench.py       RewardBench's official section weighting
  rewardbench2.py      RewardBench 2: best-of-4 with 1/k ties, the Ties subset's formula
  rm_bench.py          RM-Bench: the 3 x 3 chosen-style x rejected-style matrix
  response_sets.py     rows with several responses; ScoreFn (a reward model or a judge)
  judges.py            LLM-as-a-judge: rubric prompts, sampled and expected-score judges
  implicit_rewards.py  DPO / reference-free rewards from response log-prob statistics
  metrics.py           pair accuracy by strength, unscored pairs, length bias
  compare.py           seed noise and the paired bootstrap for "is a better than b?"
  plots.py             PNG plots of an evaluation
"""

"""Evaluation: RewardBench scoring arithmetic, response log-probs (DPO rewards) and plots."""

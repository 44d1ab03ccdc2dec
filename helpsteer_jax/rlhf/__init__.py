"""RLHF on top of the reward models: sampling with a KV cache, RLOO REINFORCE with a KL penalty
against a frozen reference policy (reinforce.py, train.py)."""

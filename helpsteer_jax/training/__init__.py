"""Training: optimizer, sharded state, the pure train step, checkpoints and logging."""

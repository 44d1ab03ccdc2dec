"""Training: the paradigm table, optimizer, sharded state, the pure train step, checkpoints,
logging, and the set-up and command line both trainers share."""

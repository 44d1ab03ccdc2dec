"""Studies built on the helpsteer_jax library, one folder each (run them with `python -m`)."""

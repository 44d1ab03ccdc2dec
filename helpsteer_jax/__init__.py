"""helpsteer_jax: JAX/Flax reward models after HelpSteer2-Preference (Wang et al., 2024)."""

__version__ = "0.1.0"

"""Llama-family models in Flax linen, with Hugging Face parameter names."""
from helpsteer_jax.models.sources import load_tokenizer, resolve, smollm2_gguf_path

"""Llama-family models in Flax linen, with Hugging Face parameter names."""
from helpsteer_jax.models.config import PRESETS, LlamaConfig
from helpsteer_jax.models.llama import (LlamaForCausalLM, LlamaModel, LlamaRewardModel,
                                        last_token_index)
from helpsteer_jax.models.loading import Pretrained, load_pretrained
from helpsteer_jax.models.sources import load_tokenizer, resolve, smollm2_gguf_path

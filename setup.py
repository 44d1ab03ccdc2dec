"""helpsteer_jax: reward models (Bradley-Terry, SteerLM regression, DPO) on Llama in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="helpsteer_jax",
    version="0.1.0",
    description=(
        "JAX/Flax research code for training, evaluating and using LLM reward models "
        "(HelpSteer2-Preference, Wang et al. 2024)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["helpsteer_jax", "helpsteer_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6",
        "transformers>=4.46",  # tokenizers, chat templates and configs only: no torch at runtime
        "datasets>=3.0",
        "ml-collections>=0.1.1",
        "gguf>=0.10",
        "safetensors>=0.4",
        "numpy",
        "tensorboardX",
        "matplotlib",
    ],
    extras_require={
        # torch only for parity tests against transformers' PyTorch Llama; 2.13.0 is the local CPU wheel.
        "test": ["pytest>=8", "torch==2.13.0", "accelerate"],  # accelerate: transformers' GGUF reader
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
    },
)

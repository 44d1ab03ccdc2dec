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
    license="Apache-2.0",
    packages=find_packages(include=["helpsteer_jax", "helpsteer_jax.*"]),
    # The HelpSteer v1 sample (CC-BY-4.0, attribution in assets/README.md): the default data.
    package_data={"helpsteer_jax.data": ["assets/*.jsonl", "assets/README.md"]},
    python_requires=">=3.10",
    install_requires=[
        # Floors are the releases that brought the newest API we call: jax.set_mesh (jax 0.7.1).
        "jax>=0.7.1",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6",
        "etils[epath]",  # local and gs:// paths alike for workdirs
        "absl-py",
        # Tokenizers, chat templates and configs only: no torch at runtime. The GGUF tokenizer is
        # built with gguf + tokenizers (transformers' own GGUF reader imports torch).
        "transformers>=4.46",
        "tokenizers>=0.20",
        "jinja2>=3.1",  # chat templates (transformers does not require it)
        "huggingface-hub>=0.22",  # split_state_dict_into_shards_factory (export's shards)
        "datasets>=3.0",
        "ml-collections>=0.1.1",
        "gguf>=0.10",
        "safetensors>=0.4",
        "ml-dtypes",
        "numpy",
        "tqdm",
        "tensorboardX",
        "matplotlib",
    ],
    extras_require={
        # torch only for parity tests against transformers' PyTorch Llama; 2.13.0 is the local CPU wheel.
        # accelerate: transformers' GGUF reader; nbclient + ipykernel run the quickstart notebook;
        # wandb: the offline tracker test.
        "test": ["pytest>=8", "pytest-xdist>=3", "torch==2.13.0", "accelerate", "nbclient",
                 "nbformat", "ipykernel", "wandb>=0.30"],
        "wandb": ["wandb"],  # --config.train.trackers=tensorboard,wandb
        "cuda": ["jax[cuda12]"],
        # gs:// workdirs (epath, orbax's bucket check, tensorboardX) need gcsfs.
        "tpu": ["jax[tpu]", "gcsfs"],
    },
    entry_points={"console_scripts": [
        "helpsteer-train=helpsteer_jax.train:run",
        "helpsteer-rlhf=helpsteer_jax.rlhf.train:run",
        "helpsteer-score=helpsteer_jax.score:main",
        "helpsteer-evaluate=helpsteer_jax.evaluate:main",
        "helpsteer-export=helpsteer_jax.export:main",
        "helpsteer-expo=helpsteer_jax.expo:main",
        "helpsteer-iterative=helpsteer_jax.iterative:run",
    ]},
)

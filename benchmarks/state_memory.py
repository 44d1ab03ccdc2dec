"""Per-device bytes of the train state (parameters + AdamW moments) of an experiment config.

Nothing is allocated: the state is built with `jax.eval_shape` and each leaf's shard shape is
read from its NamedSharding on a fake CPU mesh of `--devices` devices.

  python benchmarks/state_memory.py --config experiments/scaled_bt.py:llama3_70b --devices 64
  python benchmarks/state_memory.py --config experiments/scaled_bt.py:llama3_8b --devices 1 \
      --lora-rank 16   # LoRA: AdamW moments for the adapters and the head only

The state is what a run keeps between steps; activations and the gradients of one step come on
top (with LoRA the step forms gradients for the adapters and the head only: training/step.py).
"""
import argparse
import os

ap = argparse.ArgumentParser()
ap.add_argument("--config", default="experiments/scaled_bt.py:llama3_70b")
ap.add_argument("--devices", type=int, default=64)
ap.add_argument("--mesh", default="", help="override, e.g. data=1,fsdp=8,tensor=8")
ap.add_argument("--lora-rank", type=int, default=0, help="LoRA adapters of this rank (0: none)")
ap.add_argument("--param-dtype", default="float32", help="storage dtype of the parameters")
args = ap.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import math  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from helpsteer_jax import sharding  # noqa: E402
from helpsteer_jax.models import PRESETS, LlamaRewardModel  # noqa: E402
from helpsteer_jax.training.optimizer import make_optimizer, restrict, trainable_mask  # noqa: E402
from helpsteer_jax.training.launch import load_config  # noqa: E402
from helpsteer_jax.training.state import abstract_state, state_shardings  # noqa: E402

variant = args.config.partition(":")[2]
config = load_config(args.config)
mesh_shape = dict(config.mesh)
if args.mesh:
  mesh_shape = {k: int(v) for k, v in (kv.split("=") for kv in args.mesh.split(","))}
preset = variant if variant in PRESETS else {"smollm2": "smollm2_135m"}.get(variant, variant)
cfg = PRESETS[preset].replace(scan_layers=config.model.scan_layers, lora_rank=args.lora_rank,
                              param_dtype=args.param_dtype)
model = LlamaRewardModel(cfg, num_labels=config.model.num_labels)
init = lambda r: model.init(r, jnp.zeros((1, 8), jnp.int32))["params"]
tx = make_optimizer(config.optim)
if args.lora_rank:
  tx = restrict(tx, lambda p: trainable_mask(p, adapters_only=True))
mesh = sharding.make_mesh(mesh_shape)
shardings = state_shardings(init, tx, mesh, tuple(config.rules))
abstract = abstract_state(init, tx)

per_device = {"params": 0, "opt_state": 0, "other": 0}
total = 0
for (kp, leaf), sh in zip(jax.tree_util.tree_leaves_with_path(abstract),
                          jax.tree_util.tree_leaves(shardings)):
  nbytes = math.prod(sh.shard_shape(leaf.shape)) * leaf.dtype.itemsize
  total += math.prod(leaf.shape) * leaf.dtype.itemsize
  key = jax.tree_util.keystr(kp[:1]).strip(".[]'")
  per_device[key if key in per_device else "other"] += nbytes
n_params = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(abstract.params))
gib = 2 ** 30
print(f"config {args.config}  mesh {dict(mesh.shape)}  parameters {n_params / 1e9:.2f}B "
      f"({args.param_dtype})  LoRA rank {args.lora_rank or 'none'}")
print(f"whole state: {total / gib:.1f} GiB")
for k, v in per_device.items():
  print(f"per device {k:10s}: {v / gib:8.2f} GiB")
s = sum(per_device.values())
print(f"per device total     : {s / gib:8.2f} GiB  (80 GB GPU = 74.5 GiB: "
      f"{'fits' if s < 74.5 * gib else 'does not fit'}, before activations)")

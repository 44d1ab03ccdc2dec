#!/usr/bin/env bash
# Downloads the pure-python wheels that the GPU machine's image lacks into benchmarks/gpu/wheels/
# (git-ignored), for run.sh to install there without an index. Run where pip reaches one.
#
# The image (jax 0.11 + CUDA 13, flax, optax, orbax-checkpoint, transformers, torch, pytest,
# pytest-xdist, tqdm, absl-py, PyYAML, requests, protobuf, ...) lacks only these of what the
# package and the suite's tests import: ml_collections (the trainers' configs, imported at module
# level by the training entry points and experiments/), gguf (GGUF tokenizers and weights) and
# tensorboardX (the trainer's event files). Their own requirements are all in the image, hence --no-deps; each is
# one py3-none-any wheel, about 280 KB together. `datasets` is not carried: the package imports
# it only to read Hub / parquet data, which neither the suite nor its tests do.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/wheels"
PINS=(ml-collections==1.1.0 gguf==0.19.0 tensorboardX==2.6.5)

mkdir -p "$DEST"
"${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  -d "$DEST" "${PINS[@]}"
ls -l "$DEST"
du -sh "$DEST"

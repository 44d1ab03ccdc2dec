#!/usr/bin/env bash
# Offline self-check of this folder (no cloud, no SLURM needed): bash -n, shellcheck when
# installed, and every script in --dry-run mode with placeholder settings (each must exit 0 and
# print at least one command). Run from anywhere: tpu_scripts/check.sh [-v]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
verbose=0
[[ "${1:-}" == -v ]] && verbose=1

fail=0
for f in tpu_scripts/*.sh tpu_scripts/slurm_gpu.sbatch; do
  bash -n "$f" || { echo "FAIL bash -n $f"; fail=1; }
done
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck -x tpu_scripts/*.sh tpu_scripts/slurm_gpu.sbatch || { echo "FAIL shellcheck"; fail=1; }
else
  echo "(shellcheck not installed: skipped)"
fi

export PROJECT=example-project ZONE=us-central2-b TPU_NAME=helpsteer-rm DRY_RUN=1 NUM_WORKERS=2
export GCLOUD=gcloud-not-needed-in-dry-run
unset REPO_URL REPO_TARBALL DATA_SRC REMOTE_ENV_FILE
cases=(
  "tpu_scripts/create.sh"
  "tpu_scripts/create.sh --queued --spot --wait --valid-until-duration=6h"
  "tpu_scripts/install.sh"
  "tpu_scripts/launch.sh experiments/scaled_bt.py:llama3_8b gs://example-bucket/runs/sbt8b --config.train.steps=10"
  "tpu_scripts/launch.sh --foreground --worker 0 experiments/bt.py:tiny runs/bt_tiny"
  "tpu_scripts/status.sh --queued"
  "tpu_scripts/status.sh --follow --name scaled_bt_llama3_8b"
  "tpu_scripts/stop.sh --wait 120"
  "tpu_scripts/copy_back.sh --all-workers gs://example-bucket/runs/sbt8b"
  "tpu_scripts/copy_back.sh runs/bt_tiny"
  "tpu_scripts/delete.sh"
  "tpu_scripts/delete.sh --queued"
  "bash tpu_scripts/slurm_gpu.sbatch experiments/scaled_bt.py:llama3_70b /shared/runs/sbt70b"
)
for c in "${cases[@]}"; do
  read -r -a argv <<<"$c"
  if out="$("${argv[@]}" 2>/dev/null)" && [[ -n "$out" ]]; then
    echo "ok   $c"
    if [[ "$verbose" == 1 ]]; then printf '%s\n\n' "$out"; fi
  else
    echo "FAIL $c"
    fail=1
  fi
done
# The scripts the workers run (the --command of each ssh): shellcheck them too. The dry-run output
# is a runnable script, so source it with a stand-in gcloud that saves each --command.
if command -v shellcheck >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  k=0
  for c in "tpu_scripts/install.sh" "tpu_scripts/launch.sh --env A=1 experiments/bt.py:tiny runs/x --config.a=1" \
           "tpu_scripts/launch.sh --foreground experiments/bt.py:tiny gs://b/x" "tpu_scripts/stop.sh --wait 9" \
           "tpu_scripts/status.sh" "tpu_scripts/status.sh --follow --name x" "tpu_scripts/copy_back.sh runs/x"; do
    k=$((k + 1))
    read -r -a argv <<<"$c"
    GCLOUD=gcloud DATA_SRC=gs://b/d REMOTE_ENV_FILE=/dev/null "${argv[@]}" >"$tmp/dry.$k" 2>/dev/null
    # shellcheck disable=SC2317  # the stand-ins are called by the sourced dry-run output
    (
      n=0
      gcloud() {
        local a
        for a in "$@"; do
          case "$a" in --command=*) n=$((n + 1)); printf '%s\n' "${a#--command=}" >"$tmp/remote.$k.$n.sh" ;; esac
        done
      }
      git() { :; }; tar() { :; }; mkdir() { :; }; rm() { :; }
      # shellcheck disable=SC1090
      source "$tmp/dry.$k"
    )
  done
  for r in "$tmp"/remote.*.sh; do
    if shellcheck --shell=bash "$r"; then echo "ok   remote script $(basename "$r")"
    else echo "FAIL remote script $(basename "$r")"; fail=1; fi
  done
fi

# Settings must be checked even in dry-run mode.
if (unset PROJECT; tpu_scripts/create.sh >/dev/null 2>&1); then echo "FAIL: create.sh without PROJECT"; fail=1
else echo "ok   create.sh refuses to run without PROJECT"; fi
exit "$fail"

#!/usr/bin/env bash
# Copy a run's results here: the workdir (from the bucket with gcloud storage, or from worker 0
# over scp) and the launch.sh logs of worker 0 (or of every worker). Checkpoints are skipped unless
# --with-checkpoints (a Llama-3.1-8B training state is ~100 GB).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/copy_back.sh [--dry-run] [--with-checkpoints] [--no-logs] [--all-workers]
                                   WORKDIR [DEST]

  WORKDIR             the workdir given to launch.sh: gs://... or a path on the workers
                      (relative ones are under the worker's home)
  DEST                local folder (default: tpu_results/<basename of WORKDIR>); receives
                      DEST/workdir/ and DEST/logs/worker<N>/
  --with-checkpoints  include WORKDIR/checkpoints
  --no-logs           skip the launch.sh logs
  --all-workers       logs from every worker (default: worker 0 only; NUM_WORKERS skips the lookup)
Settings (env): REMOTE_LOG_DIR, PROJECT, ZONE, TPU_NAME."

WITH_CKPT=0
LOGS=1
ALL_WORKERS=0
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
positional=()
while (($#)); do
  case "$1" in
    --with-checkpoints) WITH_CKPT=1 ;;
    --no-logs) LOGS=0 ;;
    --all-workers) ALL_WORKERS=1 ;;
    -*) die "unknown option '$1'"$'\n'"$USAGE" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} >= 1 && ${#positional[@]} <= 2)) || die "need WORKDIR [DEST]"$'\n'"$USAGE"
WORKDIR="${positional[0]%/}"
DEST="${positional[1]:-tpu_results/$(basename "$WORKDIR")}"
require_cloud_settings
check_remote_path REMOTE_LOG_DIR
case "$WORKDIR" in
  gs://*) ;;
  '~'*) die "use a WORKDIR relative to the worker's home, not ~/..." ;;
esac

run mkdir -p "$DEST/workdir"

# --- the workdir
if [[ "$WORKDIR" == gs://* ]]; then
  cmd=("$GCLOUD" storage rsync --recursive)
  [[ "$WITH_CKPT" == 1 ]] || cmd+=("--exclude=^checkpoints/")
  run "${cmd[@]}" "$WORKDIR" "$DEST/workdir"
else
  TARBALL="helpsteer_copy_back.tar.gz"
  body="$(cat <<'EOF'
workdir="$(abspath "$WORKDIR")"
[ -d "$workdir" ] || { echo "$(hostname): no workdir $workdir" >&2; exit 1; }
if [ "$WITH_CKPT" = 1 ]; then
  tar -czf "$HOME/$TARBALL" -C "$workdir" .
else
  tar -czf "$HOME/$TARBALL" --exclude=./checkpoints -C "$workdir" .
fi
echo "$(hostname): packed $workdir ($(du -h "$HOME/$TARBALL" | cut -f1))"
EOF
)"
  script="$(remote_prelude)
$(remote_assignments WORKDIR WITH_CKPT TARBALL)
$body"
  tpu_ssh 0 "$script"
  tpu_scp 0 "$TPU_NAME:$TARBALL" "$DEST/$TARBALL"
  run tar -xzf "$DEST/$TARBALL" -C "$DEST/workdir"
  run rm -f "$DEST/$TARBALL"
  tpu_ssh 0 "rm -f ~/$TARBALL"
fi

# --- the launch.sh logs (each worker's REMOTE_LOG_DIR into DEST/logs/worker<N>/)
if [[ "$LOGS" == 1 ]]; then
  n=1
  if [[ "$ALL_WORKERS" == 1 ]]; then n="$(num_workers)"; fi
  run mkdir -p "$DEST/logs"
  for ((w = 0; w < n; w++)); do
    run rm -rf "$DEST/logs/worker$w"
    tpu_scp "$w" --recurse "$TPU_NAME:$REMOTE_LOG_DIR" "$DEST/logs/worker$w"
  done
fi
note "results in $DEST"

#!/usr/bin/env bash
# Launch `python -m helpsteer_jax.train --config CONFIG --workdir WORKDIR [overrides]` on every
# worker of TPU_NAME at once (TPU multi-host needs the same command on all workers). Default: in
# the background with nohup, one log + pid file per worker in REMOTE_LOG_DIR; --foreground streams
# the output instead (and still appends it to the log files).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/launch.sh [--dry-run] [--foreground] [--name RUN] [--worker W]
                                [--env KEY=VALUE]... [--module MOD]
                                CONFIG WORKDIR [--config.key=value ...]

  CONFIG        experiments/<paradigm>.py:<variant>, relative to the repository root, e.g.
                experiments/scaled_bt.py:llama3_8b
  WORKDIR       gs://bucket/path (needed for multi-host checkpoints unless the workers share a
                filesystem), or a worker path: relative ones are under the worker's home
  overrides     passed through verbatim, e.g. --config.train.steps=100
  --foreground  stream the workers' output here instead of nohup in the background
  --name RUN    run name for log/pid files (default: <paradigm>_<variant>)
  --worker W    all (default), or one worker index (e.g. 0) for single-host debugging
  --env K=V     extra environment variable on the workers (repeatable; not for secrets: put those
                in REMOTE_ENV_FILE, see install.sh)
  --module MOD  python module to run (default helpsteer_jax.train)

Restarting the same command with the same WORKDIR resumes from its last checkpoint.
Settings (env): REMOTE_DIR, REMOTE_VENV, REMOTE_LOG_DIR, REMOTE_DATA_DIR (exported as
HELPSTEER_SHARED_DATA), PROJECT, ZONE, TPU_NAME."

FOREGROUND=0
RUN_NAME=""
WORKER="all"
MODULE="helpsteer_jax.train"
ENV_KV=()
positional=()
# Options are read until CONFIG; everything after WORKDIR is passed to the trainer untouched.
while (($#)); do
  if ((${#positional[@]} >= 2)); then break; fi
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) printf '%s\n' "$USAGE"; exit 0 ;;
    --foreground) FOREGROUND=1 ;;
    --name) (($# >= 2)) || die "--name needs a value"; RUN_NAME="$2"; shift ;;
    --name=*) RUN_NAME="${1#*=}" ;;
    --worker) (($# >= 2)) || die "--worker needs a value"; WORKER="$2"; shift ;;
    --worker=*) WORKER="${1#*=}" ;;
    --env) (($# >= 2)) || die "--env needs KEY=VALUE"; ENV_KV+=("$2"); shift ;;
    --env=*) ENV_KV+=("${1#*=}") ;;
    --module) (($# >= 2)) || die "--module needs a value"; MODULE="$2"; shift ;;
    --module=*) MODULE="${1#*=}" ;;
    -*) die "unknown option '$1' before CONFIG"$'\n'"$USAGE" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} == 2)) || die "need CONFIG and WORKDIR"$'\n'"$USAGE"
CONFIG="${positional[0]}"
WORKDIR="${positional[1]}"
OVERRIDES=()
# --dry-run is accepted after WORKDIR too (the trainer has no such flag); the rest goes through.
for a in "$@"; do
  if [[ "$a" == --dry-run ]]; then DRY_RUN=1; else OVERRIDES+=("$a"); fi
done

require_cloud_settings
check_remote_path REMOTE_DIR
check_remote_path REMOTE_VENV
check_remote_path REMOTE_LOG_DIR
check_remote_path REMOTE_DATA_DIR

config_file="${CONFIG%%:*}"
[[ "$config_file" != /* ]] || die "CONFIG must be relative to the repository root (experiments/...), got $CONFIG"
[[ -f "$REPO_ROOT/$config_file" ]] || note "warning: $config_file not found in this checkout; it must exist on the workers"
[[ "$CONFIG" == *:* ]] || note "warning: CONFIG has no ':variant'; the config's default variant is used"
for o in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
  [[ "$o" == --* ]] || die "override '$o' should look like --config.key=value"
  [[ "$o" == --config.* ]] || note "note: '$o' is not a --config.* override; it goes to the trainer as an absl flag"
done
for kv in ${ENV_KV[@]+"${ENV_KV[@]}"}; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env '$kv' is not KEY=VALUE"
done
case "$WORKDIR" in
  gs://*) ;;
  '~'*) die "WORKDIR '$WORKDIR': a literal ~ is not expanded on the workers; use a path relative to the home directory" ;;
  "$HOME"/*) note "warning: WORKDIR $WORKDIR looks like a path under your LOCAL home; on the workers it must exist as such" ;;
  *) note "WORKDIR is a local path on each worker: fine on a single-host slice; on multi-host slices" \
          "orbax needs one shared location (gs://... or a shared filesystem)" ;;
esac
if [[ -z "$RUN_NAME" ]]; then
  base="$(basename "$config_file" .py)"
  RUN_NAME="$base${CONFIG#"$config_file"}"
  RUN_NAME="$(printf '%s' "$RUN_NAME" | tr -c 'A-Za-z0-9_.-' '_')"
fi
[[ "$RUN_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "run name '$RUN_NAME' may only use letters, digits, _ . -"

# The trainer's arguments as a bash array literal for the workers; "$workdir" is expanded there
# (relative workdirs become absolute under the worker's home).
args_line="args=($(quote_cmd -m "$MODULE" --config "$CONFIG" --workdir) \"\$workdir\""
if ((${#OVERRIDES[@]})); then args_line+=" $(quote_cmd "${OVERRIDES[@]}")"; fi
args_line+=")"
env_lines=""
for kv in ${ENV_KV[@]+"${ENV_KV[@]}"}; do
  env_lines+="export $(shquote "$kv")"$'\n'
done

body="$(cat <<'EOF'
repo="$(abspath "$REMOTE_DIR")"
venv="$(abspath "$REMOTE_VENV")"
logs="$(abspath "$REMOTE_LOG_DIR")"
case "$WORKDIR" in gs://*) workdir="$WORKDIR" ;; *) workdir="$(abspath "$WORKDIR")" ;; esac
# shellcheck disable=SC1090  # the env file from install.sh (REMOTE_ENV_FILE), if any
if [ -f "$HOME/$REMOTE_ENV_NAME" ]; then set -a; . "$HOME/$REMOTE_ENV_NAME"; set +a; fi
HELPSTEER_SHARED_DATA="$(abspath "$REMOTE_DATA_DIR")"
export HELPSTEER_SHARED_DATA
md="http://metadata.google.internal/computeMetadata/v1/instance/attributes"
worker="$(curl -sf --max-time 5 -H 'Metadata-Flavor: Google' "$md/agent-worker-number" || hostname)"
endpoints="$(curl -sf --max-time 5 -H 'Metadata-Flavor: Google' "$md/worker-network-endpoints" || true)"
case "$endpoints" in *,*) export HELPSTEER_AUTO_DISTRIBUTED=1 ;; esac  # multi-host slice
[ -x "$venv/bin/python" ] || { echo "worker $worker: no venv at $venv; run tpu_scripts/install.sh" >&2; exit 1; }
mkdir -p "$logs"
log="$logs/$RUN_NAME.worker$worker.log"
pidfile="$logs/$RUN_NAME.worker$worker.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "worker $worker: $RUN_NAME is already running (pid $(cat "$pidfile")); stop it with tpu_scripts/stop.sh" >&2
  exit 1
fi
cd "$repo"
EOF
)"
body_tail="$(cat <<'EOF'
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) worker $worker: $venv/bin/python ${args[*]}" >>"$log"
if [ "$FOREGROUND" = 1 ]; then
  "$venv/bin/python" "${args[@]}" > >(tee -a "$log") 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait $!
else
  nohup "$venv/bin/python" "${args[@]}" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "worker $worker: started pid $! (log $log)"
fi
EOF
)"

script="$(remote_prelude)
$(remote_assignments REMOTE_DIR REMOTE_VENV REMOTE_LOG_DIR REMOTE_DATA_DIR REMOTE_ENV_NAME \
    WORKDIR RUN_NAME FOREGROUND)
$env_lines$body
$args_line
$body_tail"
tpu_ssh "$WORKER" "$script"
if [[ "$FOREGROUND" == 0 ]]; then
  note "follow it: tpu_scripts/status.sh --name $RUN_NAME   (or: tpu_scripts/status.sh --follow --name $RUN_NAME)"
  note "stop it (SIGTERM: saves a checkpoint, then exits): tpu_scripts/stop.sh --name $RUN_NAME"
fi

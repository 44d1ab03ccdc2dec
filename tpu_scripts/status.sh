#!/usr/bin/env bash
# Where things stand: the TPU VM (or queued resource) state, then on every worker which launch.sh
# runs are alive and the last lines of their logs. --follow tails one worker's log.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/status.sh [--dry-run] [--queued] [--name RUN] [--lines N] [--no-ssh]
                                [--follow [--worker W]]

  --queued     also describe the queued resource QUEUED_RESOURCE_ID
  --name RUN   only this run's logs (default: every run in REMOTE_LOG_DIR)
  --lines N    log lines to show per run and worker (default 5)
  --no-ssh     only the cloud-side state, do not log in to the workers
  --follow     tail -F the log of RUN (required) on worker W (default 0) until Ctrl-C
Settings (env): REMOTE_LOG_DIR, PROJECT, ZONE, TPU_NAME, QUEUED_RESOURCE_ID."

RUN_NAME=""
NLINES=5
NO_SSH=0
FOLLOW=0
WORKER=""
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
while (($#)); do
  case "$1" in
    --queued) QUEUED=1 ;;
    --name) (($# >= 2)) || die "--name needs a value"; RUN_NAME="$2"; shift ;;
    --name=*) RUN_NAME="${1#*=}" ;;
    --lines) (($# >= 2)) || die "--lines needs a value"; NLINES="$2"; shift ;;
    --lines=*) NLINES="${1#*=}" ;;
    --no-ssh) NO_SSH=1 ;;
    --follow) FOLLOW=1 ;;
    --worker) (($# >= 2)) || die "--worker needs a value"; WORKER="$2"; shift ;;
    --worker=*) WORKER="${1#*=}" ;;
    *) die "unknown argument '$1'"$'\n'"$USAGE" ;;
  esac
  shift
done
require_cloud_settings
check_remote_path REMOTE_LOG_DIR
[[ "$NLINES" =~ ^[0-9]+$ ]] || die "--lines takes a number"
[[ -z "$RUN_NAME" || "$RUN_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad run name '$RUN_NAME'"

if [[ "$FOLLOW" == 1 ]]; then
  [[ -n "$RUN_NAME" ]] || die "--follow needs --name RUN"
  WORKER="${WORKER:-0}"
  [[ "$WORKER" =~ ^[0-9]+$ ]] || die "--follow needs one worker index (--worker N)"
  body="$(cat <<'EOF'
logs="$(abspath "$REMOTE_LOG_DIR")"
# each worker keeps only its own logs; worker ids come from the TPU metadata (hostname if absent)
set -- "$logs"/$RUN_NAME.worker*.log
exec tail -n "$NLINES" -F "$@"
EOF
)"
  script="$(remote_prelude)
$(remote_assignments REMOTE_LOG_DIR RUN_NAME NLINES)
$body"
  tpu_ssh "$WORKER" "$script"
  exit 0
fi

if [[ "$QUEUED" == 1 ]]; then
  run "$GCLOUD" compute tpus queued-resources describe "$QUEUED_RESOURCE_ID" \
    "--project=$PROJECT" "--zone=$ZONE" "--format=yaml(name.basename(),state)"
fi
run "$GCLOUD" compute tpus tpu-vm describe "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE" \
  "--format=yaml(name.basename(),state,health,acceleratorType,runtimeVersion,schedulingConfig)"
[[ "$NO_SSH" == 1 ]] && exit 0

# shellcheck disable=SC2034  # read by the workers via remote_assignments
RUN_GLOB="${RUN_NAME:-*}"
body="$(cat <<'EOF'
logs="$(abspath "$REMOTE_LOG_DIR")"
host="$(hostname)"
shopt -s nullglob
# shellcheck disable=SC2206  # RUN_GLOB is a glob on purpose
files=("$logs"/$RUN_GLOB.worker*.log)
if [ "${#files[@]}" = 0 ]; then echo "== $host: no logs in $logs"; exit 0; fi
for log in "${files[@]}"; do
  name="$(basename "$log" .log)"
  pidfile="$logs/$name.pid"
  state="not running"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then state="running (pid $(cat "$pidfile"))"; fi
  echo "== $host: $name: $state"
  if [ "$NLINES" -gt 0 ]; then tail -n "$NLINES" "$log" | sed 's/^/   /'; fi
done
EOF
)"
script="$(remote_prelude)
$(remote_assignments REMOTE_LOG_DIR RUN_GLOB NLINES)
$body"
tpu_ssh all "$script"

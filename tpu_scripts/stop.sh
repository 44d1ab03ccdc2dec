#!/usr/bin/env bash
# Stop runs started by launch.sh on every worker: SIGTERM (default) makes the trainer save a
# checkpoint and exit cleanly; relaunching the same command and workdir resumes from it.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/stop.sh [--dry-run] [--name RUN] [--signal SIG] [--wait SECONDS] [--worker W]

  --name RUN     only this run (default: every run with a pid file in REMOTE_LOG_DIR)
  --signal SIG   TERM (default: checkpoint and exit), INT, or KILL (no checkpoint)
  --wait S       then wait up to S seconds for the processes to exit (default 0: do not wait)
  --worker W     all (default) or a worker index
Settings (env): REMOTE_LOG_DIR, PROJECT, ZONE, TPU_NAME."

RUN_NAME=""
SIGNAL="TERM"
WAIT_S=0
WORKER="all"
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
while (($#)); do
  case "$1" in
    --name) (($# >= 2)) || die "--name needs a value"; RUN_NAME="$2"; shift ;;
    --name=*) RUN_NAME="${1#*=}" ;;
    --signal) (($# >= 2)) || die "--signal needs a value"; SIGNAL="$2"; shift ;;
    --signal=*) SIGNAL="${1#*=}" ;;
    --wait) (($# >= 2)) || die "--wait needs a value"; WAIT_S="$2"; shift ;;
    --wait=*) WAIT_S="${1#*=}" ;;
    --worker) (($# >= 2)) || die "--worker needs a value"; WORKER="$2"; shift ;;
    --worker=*) WORKER="${1#*=}" ;;
    *) die "unknown argument '$1'"$'\n'"$USAGE" ;;
  esac
  shift
done
require_cloud_settings
check_remote_path REMOTE_LOG_DIR
SIGNAL="${SIGNAL#SIG}"
case "$SIGNAL" in TERM|INT|KILL) ;; *) die "--signal must be TERM, INT or KILL" ;; esac
[[ "$WAIT_S" =~ ^[0-9]+$ ]] || die "--wait takes whole seconds"
[[ -z "$RUN_NAME" || "$RUN_NAME" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad run name '$RUN_NAME'"
# shellcheck disable=SC2034  # read by the workers via remote_assignments
RUN_GLOB="${RUN_NAME:-*}"

body="$(cat <<'EOF'
logs="$(abspath "$REMOTE_LOG_DIR")"
host="$(hostname)"
shopt -s nullglob
pids=()
# shellcheck disable=SC2231  # RUN_GLOB is a glob on purpose
for pidfile in "$logs"/$RUN_GLOB.worker*.pid; do
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -s "$SIGNAL" "$pid"
    echo "$host: SIG$SIGNAL -> $(basename "$pidfile" .pid) (pid $pid)"
    pids+=("$pid")
  fi
done
if [ "${#pids[@]}" = 0 ]; then echo "$host: nothing running"; exit 0; fi
[ "$WAIT_S" -gt 0 ] || exit 0
waited=0
while [ "$waited" -lt "$WAIT_S" ]; do
  alive=0
  for pid in "${pids[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
  [ "$alive" = 1 ] || break
  sleep 5
  waited=$((waited + 5))
done
for pid in "${pids[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then echo "$host: pid $pid still running"; else echo "$host: pid $pid exited"; fi
done
EOF
)"
script="$(remote_prelude)
$(remote_assignments REMOTE_LOG_DIR RUN_GLOB SIGNAL WAIT_S)
$body"
tpu_ssh "$WORKER" "$script"

#!/usr/bin/env bash
# Delete the TPU VM TPU_NAME, or with --queued the queued resource QUEUED_RESOURCE_ID and its node.
# Everything on the workers' disks goes with it: run copy_back.sh first (gs:// workdirs survive).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/delete.sh [--dry-run] [--queued] [--yes] [--async]

  --queued  delete the queued resource QUEUED_RESOURCE_ID (with --force: its TPU node too)
  --yes     do not ask for confirmation (needed when stdin is not a terminal)
  --async   return without waiting for the deletion to finish
Settings (env): PROJECT, ZONE, TPU_NAME, QUEUED_RESOURCE_ID."

YES=0
ASYNC=0
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
while (($#)); do
  case "$1" in
    --queued) QUEUED=1 ;;
    --yes|-y) YES=1 ;;
    --async) ASYNC=1 ;;
    *) die "unknown argument '$1'"$'\n'"$USAGE" ;;
  esac
  shift
done
require_cloud_settings

if [[ "$QUEUED" == 1 ]]; then
  what="queued resource $QUEUED_RESOURCE_ID (and its TPU node $TPU_NAME)"
  cmd=("$GCLOUD" compute tpus queued-resources delete "$QUEUED_RESOURCE_ID"
       "--project=$PROJECT" "--zone=$ZONE" --force --quiet)
else
  what="TPU VM $TPU_NAME"
  cmd=("$GCLOUD" compute tpus tpu-vm delete "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE" --quiet)
fi
[[ "$ASYNC" == 1 ]] && cmd+=(--async)

if ! is_dry_run && [[ "$YES" != 1 ]]; then
  [[ -t 0 ]] || die "refusing to delete without --yes when stdin is not a terminal"
  read -r -p "Delete $what in $PROJECT/$ZONE? Data on its disks is lost. [y/N] " answer
  [[ "$answer" == y || "$answer" == Y || "$answer" == yes ]] || die "not deleted"
fi
run "${cmd[@]}"

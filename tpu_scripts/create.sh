#!/usr/bin/env bash
# Create the TPU VM TPU_NAME: directly (`gcloud compute tpus tpu-vm create`), or with --queued as a
# queued resource whose node is TPU_NAME (`gcloud compute tpus queued-resources create`).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/create.sh [--dry-run] [--queued] [--spot | --preemptible | --reserved]
                                [--wait] [--valid-until-duration DURATION]

  --queued        request a queued resource QUEUED_RESOURCE_ID (node id TPU_NAME); it waits in
                  the queue until capacity frees up (state WAITING_FOR_RESOURCES -> ACTIVE)
  --spot          Spot TPU: cheaper, can be preempted at any time (the trainer resumes on restart)
  --preemptible   legacy preemptible TPU (direct create only)
  --reserved      use the project's reserved capacity (queued only)
  --wait          queued: poll every 60 s until the resource is ACTIVE (fails on FAILED/SUSPENDED)
  --valid-until-duration D  queued: give up if not provisioned within D (e.g. 6h)

Settings (env): PROJECT, ZONE, TPU_NAME, ACCELERATOR_TYPE, RUNTIME_VERSION, QUEUED_RESOURCE_ID,
TPU_SERVICE_ACCOUNT, TPU_SCOPES; SPOT=1 / PREEMPTIBLE=1 / RESERVED=1 / QUEUED=1 work like the flags."

WAIT=0
VALID_UNTIL=""
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
while (($#)); do
  case "$1" in
    --queued) QUEUED=1 ;;
    --spot) SPOT=1 ;;
    --preemptible) PREEMPTIBLE=1 ;;
    --reserved) RESERVED=1 ;;
    --wait) WAIT=1 ;;
    --valid-until-duration) (($# >= 2)) || die "--valid-until-duration needs a value"; VALID_UNTIL="$2"; shift ;;
    --valid-until-duration=*) VALID_UNTIL="${1#*=}" ;;
    *) die "unknown argument '$1'"$'\n'"$USAGE" ;;
  esac
  shift
done

require_cloud_settings
resolve_runtime_version
(( SPOT + PREEMPTIBLE + RESERVED <= 1 )) || die "choose at most one of --spot, --preemptible, --reserved"

extra=()
[[ -n "$TPU_SERVICE_ACCOUNT" ]] && extra+=("--service-account=$TPU_SERVICE_ACCOUNT")
[[ -n "$TPU_SCOPES" ]] && extra+=("--scopes=$TPU_SCOPES")

if [[ "$QUEUED" == 1 ]]; then
  [[ "$PREEMPTIBLE" == 1 ]] && die "--preemptible applies to direct creation only; use --spot with --queued"
  cmd=("$GCLOUD" compute tpus queued-resources create "$QUEUED_RESOURCE_ID"
       "--node-id=$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE"
       "--accelerator-type=$ACCELERATOR_TYPE" "--runtime-version=$RUNTIME_VERSION")
  [[ "$SPOT" == 1 ]] && cmd+=(--spot)
  [[ "$RESERVED" == 1 ]] && cmd+=(--reserved)
  [[ -n "$VALID_UNTIL" ]] && cmd+=("--valid-until-duration=$VALID_UNTIL")
  run "${cmd[@]}" ${extra[@]+"${extra[@]}"}

  if [[ "$WAIT" == 1 ]]; then
    describe=("$GCLOUD" compute tpus queued-resources describe "$QUEUED_RESOURCE_ID"
              "--project=$PROJECT" "--zone=$ZONE" "--format=value(state.state)")
    if is_dry_run; then
      quote_cmd "${describe[@]}"
      note "(repeated every 60 s until it prints ACTIVE)"
    else
      while :; do
        state="$("${describe[@]}")"
        note "$(date -u +%H:%M:%S) queued resource $QUEUED_RESOURCE_ID: $state"
        case "$state" in
          ACTIVE) break ;;
          FAILED|SUSPENDED) die "queued resource $QUEUED_RESOURCE_ID is $state; see: gcloud compute tpus queued-resources describe $QUEUED_RESOURCE_ID --zone=$ZONE" ;;
        esac
        sleep 60
      done
    fi
  else
    note "the request is queued; check it with: tpu_scripts/status.sh --queued (or create.sh --wait)"
  fi
else
  [[ "$RESERVED" == 1 ]] && die "--reserved is for queued resources here; add --queued"
  [[ -n "$VALID_UNTIL" ]] && die "--valid-until-duration needs --queued"
  cmd=("$GCLOUD" compute tpus tpu-vm create "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE"
       "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION")
  [[ "$SPOT" == 1 ]] && cmd+=(--spot)
  [[ "$PREEMPTIBLE" == 1 ]] && cmd+=(--preemptible)
  run "${cmd[@]}" ${extra[@]+"${extra[@]}"}
fi
note "next: tpu_scripts/install.sh"

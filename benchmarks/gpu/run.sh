#!/usr/bin/env bash
# GPU suite: a Llama-3.2-1B-shaped reward model's train step and scoring, MFU against the spec
# and a measured bf16 matmul peak, a cuDNN attention check and our tests on the GPU, in at most
# ~7.5 minutes on one H100; results in ONE file, $OUT/gpu_results.json (+ gpu_results.md, and
# every part's output in suite.log). What each part measures: benchmarks/gpu/suite.py.
#
#   bash benchmarks/gpu/fetch_wheels.sh            # once, where pip reaches an index
#   bash benchmarks/gpu/run.sh                     # on the GPU machine (no internet there)
#   bash benchmarks/gpu/run.sh --dry-run           # on CPU: tiny model, every path but cuDNN
#   bash benchmarks/gpu/run.sh --train-batch 8 --train-length 1024   # flags go to suite.py
#
# With the device tool: run(command="bash benchmarks/gpu/run.sh", carry=["benchmarks/gpu/wheels"],
# timeout_s=540). $OUT defaults to benchmarks/gpu/out. Each part runs in its own process under
# a hard time limit (a hang costs that part only), inside an overall budget (GPU_SUITE_BUDGET_S,
# 450 s; dry run 900 s; GPU_SUITE_LIMITS="45 60 210 75 120" sets the parts' own); a part that
# fails or times out is recorded with its log's tail.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
OUT="${OUT:-$HERE/out}"
DRY="${GPU_SUITE_DRY_RUN:-0}"
FORCE_WHEELS="${GPU_SUITE_FORCE_WHEELS:-0}"
ARGS=()
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    *) ARGS+=("$a") ;;
  esac
done

# Per-part limits in seconds (peak attention train score tests) and the overall budget.
if [ "$DRY" = 1 ]; then
  LIMITS=(120 180 240 180 300); BUDGET="${GPU_SUITE_BUDGET_S:-900}"; ARGS+=(--dry-run)
  export JAX_PLATFORMS=cpu
else
  LIMITS=(45 60 210 75 120); BUDGET="${GPU_SUITE_BUDGET_S:-450}"
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"  # never fall back to CPU silently
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
fi
PARTS=(peak attention train score tests)
# GPU_SUITE_LIMITS="45 60 210 75 120" overrides the per-part limits.
[ -n "${GPU_SUITE_LIMITS:-}" ] && read -r -a LIMITS <<<"$GPU_SUITE_LIMITS"

mkdir -p "$OUT"
rm -f "$OUT/gpu_results.json" "$OUT/gpu_results.md" "$OUT/suite.log"
START=$(date +%s)
log() { echo "[gpu-suite +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/suite.log"; }

# Pure-python wheels the GPU image lacks (fetch_wheels.sh); installed only where not importable.
SITE="${GPU_SUITE_SITE:-/tmp/helpsteer_gpu_site}"
module_of() {  # wheel distribution name -> import name
  case "$(echo "$1" | tr 'A-Z-' 'a-z_')" in
    tensorboardx) echo tensorboardX ;;
    *) echo "$1" | tr 'A-Z-' 'a-z_' ;;
  esac
}
NEED=()
for w in "$HERE"/wheels/*.whl; do
  [ -e "$w" ] || continue
  dist="$(basename "$w" | cut -d- -f1)"
  mod="$(module_of "$dist")"
  if [ "$FORCE_WHEELS" != 1 ] && "$PY" -c "import $mod" 2>/dev/null; then
    log "wheel $(basename "$w"): $mod already importable, not installed"
  else
    NEED+=("$w")
  fi
done
if [ ${#NEED[@]} -gt 0 ]; then
  log "installing ${#NEED[@]} wheel(s) into $SITE: ${NEED[*]##*/}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --find-links "$HERE/wheels" --target "$SITE" "${NEED[@]}" 2>&1 | tee -a "$OUT/suite.log"
fi
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

PARTLOG="$(mktemp /tmp/gpu_suite_part.XXXXXX)"
for i in "${!PARTS[@]}"; do
  part="${PARTS[$i]}"
  left=$(( BUDGET - ( $(date +%s) - START ) ))
  if [ "$left" -lt 15 ]; then
    log "$part: skipped, the suite's ${BUDGET}s budget is spent"
    "$PY" "$HERE/results.py" --out "$OUT" --mark "$part" --status skipped --note "budget spent"
    continue
  fi
  limit=${LIMITS[$i]}
  [ "$limit" -gt "$left" ] && limit=$left
  log "$part: start (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$PY" "$HERE/suite.py" --out "$OUT" --part "$part" \
    --time-limit "$limit" "${ARGS[@]}" >"$PARTLOG" 2>&1
  rc=$?
  cat "$PARTLOG" >>"$OUT/suite.log"
  tail -n 3 "$PARTLOG"
  if [ "$rc" -ne 0 ]; then
    status=failed
    { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && status=timeout
    log "$part: $status (rc $rc)"
    "$PY" "$HERE/results.py" --out "$OUT" --mark "$part" --status "$status" --rc "$rc" \
      --log "$PARTLOG"
  else
    log "$part: done"
  fi
done
rm -f "$PARTLOG"
log "finished in $(( $(date +%s) - START ))s; results in $OUT/gpu_results.json"
cat "$OUT/gpu_results.md"

#!/usr/bin/env bash
# make gpu-check: prove the CUDA and Triton backends on a machine with a CUDA GPU, in one run of under 8 minutes.
#
# Uses that machine's own python3, torch and triton (never installs anything, needs no network):
#   1. provenance: GPU, compute capability, driver, CUDA, torch, triton, git commit;
#   2. rebuild ripu_kernels._C in place for the local arch only (TORCH_CUDA_ARCH_LIST from the device), all cores;
#   3. assert the cuda backend is available (fail loudly otherwise: the run then fails, its CUDA steps are skipped,
#      Triton, timings and the benchmark still run);
#   4. pytest with junit XML: the GPU tests of the cuda backend (-m gpu, incl. tests/ops/test_gpu_real_sizes.py at
#      the paper's sizes), of the Triton backend (tests/ops/test_triton_backend.py and -m gpu -k triton), and the CPU
#      suite on this machine's torch;
#   5. compute-sanitizer memcheck and racecheck over a small script that calls every CUDA op (skipped, with the
#      reason, when the tool is missing or refuses the device);
#   6. tools/gpu_timings.py: per op and backend at the paper's sizes, the k sweep, selection on a map of exact
#      zeros, copy bandwidth (feeds tools/update_verified.py);
#   7. python3 -m bench --device cuda --preset gpu-check (skipped, saying so, when the preset does not exist);
#   8. tools/gpu_check_report.py: summary.md, summary.json, bench/results/<gpu>.{md,json}.
# Everything lands in $OUT (default gpu-check-out/): one log per step, junit-*.xml, the summary, the results.
# Exit status: 0 when every required step passed, 1 when one failed, 2 when there is no GPU (said at once).
# RIPU_GPU_CHECK_DRY_RUN=1 runs the plumbing on any machine: every step logs the command it would run, the report is
# written from those logs, nothing is built or timed. RIPU_GPU_CHECK_BUDGET (seconds, default 470) is the total
# time; each step gets at most its own share and what is left.
# Afterwards: python3 tools/update_verified.py $OUT/summary.json  (the table `backend="auto"` follows on CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/gpu-check-out}
DRY=${RIPU_GPU_CHECK_DRY_RUN:-0}
BUDGET=${RIPU_GPU_CHECK_BUDGET:-470}
START=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 4)

say() { echo "gpu-check: $*"; }

# -------------------------------------------------------------------------------------------- is there a GPU?
if [ "$DRY" != "1" ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ] && [ ! -e /dev/dxg ]; then
    say "no CUDA GPU on this machine (no nvidia-smi, no /dev/nvidia0): nothing to check here." >&2
    say "run 'make gpu-check' on a machine with an NVIDIA GPU (RIPU_GPU_CHECK_DRY_RUN=1 checks the plumbing)." >&2
    exit 2
  fi
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    say "torch on this machine sees no CUDA device ($("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -1)): nothing to check." >&2
    exit 2
  fi
fi

mkdir -p "$OUT/logs" "$OUT/bench"
STEPS="$OUT/steps.tsv"
: > "$STEPS"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME SHARE REQUIRED CMD...: run CMD with a timeout of min(SHARE, what is left), log to logs/NAME.log, record
# "name status seconds required" in steps.tsv (status: pass, fail, timeout, skipped, dry-run).
step() {
  local name=$1 share=$2 required=$3
  shift 3
  local log="$OUT/logs/$name.log" limit remaining t0 rc status
  remaining=$(left)
  limit=$share
  [ "$remaining" -lt "$limit" ] && limit=$remaining
  if [ "$DRY" = "1" ]; then
    printf 'dry run: would run (timeout %ss):\n  %s\n' "$limit" "$*" > "$log"
    printf '%s\tdry-run\t0\t%s\n' "$name" "$required" >> "$STEPS"
    say "$name: dry run ($*)"
    return 0
  fi
  if [ "$limit" -lt 10 ]; then
    echo "skipped: the time budget (${BUDGET}s) is spent" > "$log"
    printf '%s\tskipped\t0\t%s\n' "$name" "$required" >> "$STEPS"
    say "$name: skipped, no time left"
    return 0
  fi
  say "$name (at most ${limit}s) ..."
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then status=pass; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; else status=fail; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$required" >> "$STEPS"
  say "$name: $status ($(( $(date +%s) - t0 ))s, log $log)"
  return $rc
}

# ------------------------------------------------------------------------------------------------ 1. provenance
# (cheap and GPU-free, so it runs for real in a dry run too)
if [ "$DRY" = "1" ]; then
  "$PY" tools/gpu_check_report.py --provenance "$OUT/provenance.json" > "$OUT/logs/provenance.log" 2>&1
  printf 'provenance\t%s\t0\tyes\n' "$([ $? -eq 0 ] && echo pass || echo fail)" >> "$STEPS"
else
  step provenance 30 yes "$PY" tools/gpu_check_report.py --provenance "$OUT/provenance.json"
fi

# ------------------------------------------------------------------------------------------------ 2. build
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null || echo "9.0")
[ "$DRY" = "1" ] && ARCH="(the local capability)"
# nvcc: PATH, $CUDA_HOME, the usual install folders, or a pip-installed nvidia nvcc next to torch.
NVCC=$(command -v nvcc || true)
if [ -z "$NVCC" ]; then
  SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null || true)
  for cand in "${CUDA_HOME:-}/bin/nvcc" /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc \
              $(ls -d "$SITE"/nvidia/*/bin/nvcc "$SITE"/nvidia/*/*/bin/nvcc 2>/dev/null); do
    if [ -x "$cand" ]; then NVCC=$cand; break; fi
  done
fi
if [ -n "$NVCC" ]; then
  export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}
  export PATH="$(dirname "$NVCC"):$PATH"
  say "nvcc: $NVCC (CUDA_HOME=$CUDA_HOME), building for sm_${ARCH/./}"
elif [ "$DRY" != "1" ]; then
  say "nvcc not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda*/bin, pip's nvidia packages): the CUDA kernels" >&2
  say "cannot be built on this machine; the cuda backend will be reported unavailable (Triton still runs)." >&2
fi
step build 180 yes env TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$NPROC" RIPU_NO_CUDA=0 \
  "$PY" setup.py build_ext --inplace --force
BUILD_RC=$?

# ------------------------------------------------------------------------------------------------ 3. cuda available
step cuda-available 30 yes "$PY" -c "
import torch, ripu_kernels
from ripu_kernels import _dispatch
why = _dispatch.unavailable_reason('cuda', torch.device('cuda'))
print('cuda backend:', 'available' if why is None else 'UNAVAILABLE: ' + why)
print('triton backend:', _dispatch.unavailable_reason('triton', torch.device('cuda')) or 'available')
raise SystemExit(0 if why is None else 1)"
CUDA_RC=$?
CUDA_OK=1
if [ $CUDA_RC -ne 0 ] && [ "$DRY" != "1" ]; then
  CUDA_OK=0
  say "FAILED: the cuda backend is not available after the build (build: exit $BUILD_RC): see $OUT/logs/build.log" >&2
  say "and $OUT/logs/cuda-available.log. Its tests and the sanitizer are skipped; Triton, timings and bench still run." >&2
fi

# ------------------------------------------------------------------------------------------------ 4. tests
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o addopts= -rfE)
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)
if [ $CUDA_OK = 1 ]; then
  step tests-cuda 150 yes "${PYTEST[@]}" "${XDIST[@]}" tests/ops -m gpu -k "not triton" \
    --ignore tests/ops/test_triton_backend.py --junitxml "$OUT/junit-cuda.xml"
else
  echo "skipped: the cuda backend is unavailable (see cuda-available.log)" > "$OUT/logs/tests-cuda.log"
  printf 'tests-cuda\tskipped\t0\tyes\n' >> "$STEPS"
fi
step tests-triton 120 yes "${PYTEST[@]}" "${XDIST[@]}" tests/ops/test_triton_backend.py tests/ops/test_gpu_real_sizes.py \
  -k "triton or test_triton_backend" --junitxml "$OUT/junit-triton.xml"
CPU_XDIST=()
"$PY" -c "import xdist" 2>/dev/null && CPU_XDIST=(-n "$(( NPROC > 8 ? 8 : NPROC ))")
step tests-cpu 90 no env OMP_NUM_THREADS=1 "${PYTEST[@]}" "${CPU_XDIST[@]}" tests/ops -m "not gpu" \
  --ignore tests/ops/test_triton_backend.py --junitxml "$OUT/junit-cpu.xml"

# ------------------------------------------------------------------------------------------------ 5. sanitizer
SANITIZER=$(command -v compute-sanitizer || true)
for d in "${CUDA_HOME:-}" /usr/local/cuda; do
  [ -z "$SANITIZER" ] && [ -n "$d" ] && [ -x "$d/bin/compute-sanitizer" ] && SANITIZER="$d/bin/compute-sanitizer"
done
if [ $CUDA_OK = 0 ]; then
  for tool in memcheck racecheck; do
    echo "skipped: the cuda backend is unavailable" > "$OUT/logs/sanitizer-$tool.log"
    printf 'sanitizer-%s\tskipped\t0\tyes\n' "$tool" >> "$STEPS"
  done
elif [ -n "$SANITIZER" ] || [ "$DRY" = "1" ]; then
  for tool in memcheck racecheck; do
    share=60
    [ "$tool" = memcheck ] && share=75
    step "sanitizer-$tool" "$share" yes env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "${SANITIZER:-compute-sanitizer}" --tool "$tool" --error-exitcode 99 "$PY" tools/gpu_sanitize_ops.py
    rc=$?
    # A sanitizer that cannot attach (unsupported device, no permission) is not a failure of the kernels.
    if [ $rc -ne 0 ] && [ $rc -ne 99 ] && [ "$DRY" != "1" ] && \
       grep -qiE "not supported|unable to|could not|permission|failed to initialize" "$OUT/logs/sanitizer-$tool.log" && \
       ! grep -q "ERROR SUMMARY: [1-9]" "$OUT/logs/sanitizer-$tool.log"; then
      sed -i "s/^sanitizer-$tool\tfail\t/sanitizer-$tool\tskipped\t/" "$STEPS"
      say "sanitizer-$tool: compute-sanitizer refused this machine (see the log): skipped"
    fi
  done
else
  for tool in memcheck racecheck; do
    echo "skipped: compute-sanitizer not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda/bin)" > "$OUT/logs/sanitizer-$tool.log"
    printf 'sanitizer-%s\tskipped\t0\tyes\n' "$tool" >> "$STEPS"
  done
  say "compute-sanitizer not found: memcheck and racecheck skipped"
fi

# ------------------------------------------------------------------------------------------------ 6. timings
step timings 90 no "$PY" tools/gpu_timings.py --out "$OUT/timings.json"

# ------------------------------------------------------------------------------------------------ 7. benchmark
if [ "$DRY" = "1" ] || "$PY" -m bench --help 2>/dev/null | grep -q -- "--preset"; then
  step bench 120 no "$PY" -m bench --device cuda --preset gpu-check --out "$OUT/bench"
else
  echo "skipped: 'python3 -m bench' has no --preset option here (the gpu-check preset is not implemented yet)" \
    > "$OUT/logs/bench.log"
  printf 'bench\tskipped\t0\tno\n' >> "$STEPS"
  say "bench: 'python3 -m bench --preset gpu-check' is not available yet: skipped"
fi

# ------------------------------------------------------------------------------------------------ 8. report
"$PY" tools/gpu_check_report.py "$OUT"
REPORT_RC=$?
say "done in $(( $(date +%s) - START ))s: $OUT/summary.md"
say "to make backend='auto' follow this run: $PY tools/update_verified.py $OUT/summary.json"
exit $REPORT_RC

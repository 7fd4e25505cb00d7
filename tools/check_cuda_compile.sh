#!/usr/bin/env bash
# Compile-only check of the CUDA code on a machine without a GPU (and with a CPU-only torch):
#   1. every csrc/cuda/*.cu (torch-free launchers) for sm_80 and sm_90, as CMakeLists.txt builds them;
#   2. the binding layer python/ripu_cuda.cu against the installed torch's headers (the CPU wheel ships the
#      ATen/cuda and c10/cuda headers), as setup.py's CUDAExtension would compile it. The CPU wheel lacks the
#      generated c10/cuda/impl/cuda_cmake_macros.h, hence -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE (a CUDA wheel has it).
# Usage: tools/check_cuda_compile.sh [python]   (default: /work/.venv-shared/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-/work/.venv-shared/bin/python}}
[ -x "$PY" ] || PY=python3
NVCC=${NVCC:-$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")}
[ -x "$NVCC" ] || { echo "check_cuda_compile: nvcc not found (set NVCC or CUDA_HOME)" >&2; exit 2; }
TORCH_INC=$("$PY" -c "import torch.utils.cpp_extension as c; print(' '.join(c.include_paths()))")
ABI=$("$PY" -c "import torch; print(int(torch.compiled_with_cxx11_abi()))")
ARCHS="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90"
COMMON="-std=c++17 -O3 --expt-relaxed-constexpr -Icsrc/include -Icsrc"
status=0
for f in csrc/cuda/*.cu; do
  echo "== nvcc $f (sm_80, sm_90)"
  # shellcheck disable=SC2086
  "$NVCC" $COMMON $ARCHS -c "$f" -o /dev/null || status=1
done
INC=""
for d in $TORCH_INC; do INC="$INC -I$d"; done
echo "== nvcc python/ripu_cuda.cu against torch headers (_GLIBCXX_USE_CXX11_ABI=$ABI, sm_90)"
# shellcheck disable=SC2086
"$NVCC" $COMMON $INC -D_GLIBCXX_USE_CXX11_ABI=$ABI -DPy_LIMITED_API=0x030A0000 -DTORCH_EXTENSION_NAME=_C -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE \
  -arch=sm_90 -c python/ripu_cuda.cu -o /dev/null || status=1
if [ $status -eq 0 ]; then echo "check_cuda_compile: OK"; else echo "check_cuda_compile: FAILED" >&2; fi
exit $status

#!/usr/bin/env bash
# NVRTC and the CUDA runtime headers from PyPI (nvidia-cuda-nvrtc-cu12, nvidia-cuda-runtime-cu12)
# in the project's .venv: what the kernel compile test (tests/nvrtc_compile.rs) and the CUDA
# backend need on a machine without a CUDA toolkit. No GPU is needed. tools/setup.sh does the
# same as part of the whole set-up; this script is for a GPU machine that only needs NVRTC.
# Idempotent. Prints the library it found and how to point ndt at it from elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
have() { ls .venv/lib/python3*/site-packages/nvidia/"$1" >/dev/null 2>&1; }
need=()
have cuda_nvrtc/lib/libnvrtc.so.12 || need+=(nvidia-cuda-nvrtc-cu12)
have cuda_runtime/include/cuda_runtime.h || need+=(nvidia-cuda-runtime-cu12)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup_nvrtc: installing ${need[*]} into .venv" >&2
    .venv/bin/python -m pip --disable-pip-version-check -q install "${need[@]}"
fi
lib=$(ls "$PWD"/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 | head -n 1)
inc=$(ls -d "$PWD"/.venv/lib/python3*/site-packages/nvidia/cuda_runtime/include | head -n 1)
echo "setup_nvrtc: NVRTC $lib" >&2
echo "setup_nvrtc: CUDA headers $inc (the kernels do not need them)" >&2
echo "# ndt finds this NVRTC by itself when run from this checkout; elsewhere:" >&2
echo "export NDT_NVRTC_LIB=$lib"

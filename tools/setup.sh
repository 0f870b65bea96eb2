#!/usr/bin/env bash
# Sets up a fresh machine for ndt: a project-local Python environment (.venv) with what the tests
# and tools need, including NVRTC and the CUDA headers from PyPI (for the kernel-compile tests; no
# GPU or CUDA install is needed). Idempotent: a second run only checks.
#
#   tools/setup.sh              test dependencies
#   tools/setup.sh --reference  also JAX, scikit-learn, nlb-tools, PyTorch (to regenerate fixtures and
#                               vectors, and for the PyTorch comparison's tests)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

need=()
.venv/bin/python -c "import numpy" 2>/dev/null || need+=(numpy)
.venv/bin/python -c "import pyarrow" 2>/dev/null || need+=(pyarrow)
[ -d .venv/lib/python3*/site-packages/nvidia/cuda_nvrtc ] 2>/dev/null || need+=(nvidia-cuda-nvrtc-cu12)
[ -d .venv/lib/python3*/site-packages/nvidia/cuda_runtime ] 2>/dev/null || need+=(nvidia-cuda-runtime-cu12)
# NVRTC 13 as well (nvidia/cu13/lib), for the compile test under the CUDA 13 compiler.
ls .venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 >/dev/null 2>&1 || need+=("nvidia-cuda-nvrtc>=13,<14")
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} into .venv" >&2
    pip install "${need[@]}"
fi

if [ "${1:-}" = "--reference" ]; then
    # IBL BrainWideBench's scorers (tests/bwb.rs checks ndt's prediction files with them; without
    # them tools/test.sh reports that check skipped): ibl-bwb-eval pins numpy, scipy, scikit-learn and
    # torch exactly, so it goes in without its pins (numpy stays) and its imports are added.
    if ! .venv/bin/python -c "import ibl_bwb_eval.scoring.ts2" 2>/dev/null; then
        .venv/bin/python -c "import torch" 2>/dev/null \
            || pip install torch --index-url https://download.pytorch.org/whl/cpu || pip install torch
        pip install --no-deps ibl-bwb-eval==0.1.0 && pip install safetensors torchmetrics rich scikit-learn scipy
    fi

    .venv/bin/python -c "import jax, sklearn, scipy, h5py, pandas" 2>/dev/null \
        || pip install "jax[cpu]" scikit-learn scipy h5py pandas "setuptools<70" wheel
    .venv/bin/python -c "import pynwb" 2>/dev/null || pip install "pynwb==4.2.0"
    .venv/bin/python -c "import nlb_tools" 2>/dev/null \
        || pip install --no-build-isolation --no-deps nlb-tools
    .venv/bin/python -c "import torch" 2>/dev/null \
        || pip install torch --index-url https://download.pytorch.org/whl/cpu \
        || pip install torch
fi
echo "setup: ok ($(.venv/bin/python --version))" >&2

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, build, every test, benches compiled.
# No GPU is needed: CUDA kernel tests report themselves skipped, and the NVRTC compile test
# compiles every kernel for sm_86, sm_89 and sm_90 with NVRTC 12 and NVRTC 13 from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# A real single-node Slurm for the sweep's cluster test (installs Debian's slurm and munge).
if [ "$(id -u)" = 0 ]; then tools/slurm-local.sh; else sudo -n tools/slurm-local.sh; fi
export NDT_PYTHON="$PWD/.venv/bin/python"
cargo build --all-targets --locked 2>&1
cargo test --locked 2>&1
# The kernel compile test again under NVRTC 13 (the default above is pip's NVRTC 12).
NVRTC13=$(ls .venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 | head -n 1)
NDT_NVRTC_LIB="$PWD/$NVRTC13" cargo test --locked --test nvrtc_compile 2>&1

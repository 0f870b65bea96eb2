#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, build, every test, benches compiled.
# No GPU is needed: the CUDA kernel tests report themselves skipped on the first pass and run
# on the CPU kernel emulator (NDT_CUDA_EMU=1, kernels/emu.h) on a second; the NVRTC compile
# test compiles every kernel for sm_86, sm_89 and sm_90 with NVRTC 12 and NVRTC 13 from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# A real single-node Slurm for the sweep's cluster test (installs Debian's slurm and munge).
if [ "$(id -u)" = 0 ]; then tools/slurm-local.sh; else sudo -n tools/slurm-local.sh; fi
export NDT_PYTHON="$PWD/.venv/bin/python"
# The kernel emulator compiles the kernel files with the host C++ compiler; where there is
# none, pip's ziglang provides clang (`zig c++`) in .venv.
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
    .venv/bin/pip install -q "ziglang>=0.13"
    printf '#!/bin/sh\nexec "%s" -m ziglang c++ "$@"\n' "$NDT_PYTHON" >.venv/bin/ndt-cxx
    chmod +x .venv/bin/ndt-cxx
    export CXX="$PWD/.venv/bin/ndt-cxx"
fi
cargo build --all-targets --locked 2>&1
cargo test --locked 2>&1
# The kernel compile test again under NVRTC 13 (the default above is pip's NVRTC 12).
NVRTC13=$(ls .venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 | head -n 1)
NDT_NVRTC_LIB="$PWD/$NVRTC13" cargo test --locked --test nvrtc_compile 2>&1
# The CUDA tests again on the kernel emulator: every kernel against its CPU twin, and the
# whole backend (graph-captured training steps included) against the CPU backend; once with
# the threads of a block run first to last between barriers, once last to first (a missing
# barrier makes the results depend on that order).
for order in 1 reverse; do
    for t in cuda_kernels cuda_layers cuda_loss_optim cuda_backend; do
        NDT_CUDA_EMU=$order cargo test --locked --test "$t" 2>&1
    done
done

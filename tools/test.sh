#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, build, every test, benches compiled.
# No GPU is needed: CUDA kernel tests report themselves skipped, and the NVRTC compile test
# compiles every kernel for sm_86, sm_89 and sm_90 with NVRTC from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export NDT_PYTHON="$PWD/.venv/bin/python"
cargo build --all-targets --locked 2>&1
cargo test --locked 2>&1

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, format and lint checks, build, every test,
# benches compiled. Runs as any user: it never uses sudo and never edits a file outside the
# checkout (and its .venv / target). What it cannot run on this machine it reports as skipped,
# by name and reason, in the summary line at the end:
#
#   summary: 14 test runs ok; skipped: none; CUDA tests: 0 on GPU, 120 on emulator order 1, ...
#
# - CUDA tests: on a GPU when there is one; without one, the first pass reports each GPU test
#   skipped ("SKIPPED: no CUDA device: <test> (<reason>)"), and the same four test files then
#   run on the CPU kernel emulator (NDT_CUDA_EMU=1, kernels/emu.h) twice, once per thread order.
#   A GPU that is present but unusable, or a bad NDT_CUDA_EMU, fails instead.
#   NDT_TEST_REQUIRE_GPU=1 makes a missing GPU a failure too.
# - The NVRTC compile test compiles every kernel for sm_86, sm_89 and sm_90 with NVRTC 12 and
#   NVRTC 13 from PyPI (no GPU needed).
# - Slurm: tests/slurm.rs starts a private single-node cluster in a temporary folder
#   (tools/slurm-local.sh). As root, Debian's slurmctld, slurmd, slurm-client and munge are
#   installed with apt when missing, and a cluster that cannot run is a failure; as anyone
#   else, missing Slurm is a named skip.
# - cargo fmt --check and cargo clippy -D warnings: a named skip where the rustfmt or clippy
#   component is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG=$(mktemp "${TMPDIR:-/tmp}/ndt-test.XXXXXX")
runs=0
skips=()
summary() {
    local rc=$?
    local cuda_skip n1 nrev ngpu gpus
    cuda_skip=$(grep -c 'SKIPPED: no CUDA device: ' "$LOG" || true)
    n1=$(grep -c 'CUDA-TEST ran .* on emulator order 1$' "$LOG" || true)
    nrev=$(grep -c 'CUDA-TEST ran .* on emulator order reverse$' "$LOG" || true)
    ngpu=$(grep -c 'CUDA-TEST ran .* on GPU ' "$LOG" || true)
    gpus=$(sed -n 's/.*CUDA-TEST ran .* on GPU \(.*\)$/\1/p' "$LOG" | sort -u | paste -sd, -)
    local slurm_skips
    slurm_skips=$(sed -n 's/.*SKIPPED: no Slurm cluster: \([^ ]*\) (\(.*\))$/slurm:\1 (\2)/p' "$LOG" | sort -u)
    local all=("${skips[@]}")
    [ "$cuda_skip" -gt 0 ] && all+=("cuda-gpu: $cuda_skip GPU tests ($(sed -n 's/.*SKIPPED: no CUDA device: [^ ]* (\(.*\))$/\1/p' "$LOG" | sort -u | head -n 1))")
    while IFS= read -r l; do [ -n "$l" ] && all+=("$l"); done <<<"$slurm_skips"
    local sk="none"
    if [ ${#all[@]} -gt 0 ]; then
        sk=$(printf '%s; ' "${all[@]}")
        sk=${sk%; }
    fi
    local status="ok"
    [ "$rc" = 0 ] || status="FAILED (exit $rc)"
    echo
    echo "summary: $status; $runs test runs passed; skipped: $sk; CUDA tests: $ngpu on GPU${gpus:+ ($gpus)}, $n1 on emulator order 1, $nrev on emulator order reverse, $cuda_skip skipped"
    rm -f "$LOG"
}
trap summary EXIT

# Runs a command, its output to the terminal and to the log the summary is counted from.
run() {
    "$@" 2>&1 | tee -a "$LOG"
    runs=$((runs + 1))
}

tools/setup.sh
export NDT_PYTHON="$PWD/.venv/bin/python"

# IBL BrainWideBench's own scorer (torch; installed by tools/setup.sh --reference) checks ndt's
# prediction files in tests/bwb.rs; without it that one check is a named skip. ndt's D² and bps
# are still checked against the scorer's committed vectors (fixtures/bwb_vectors.json).
if ! "$NDT_PYTHON" -c "import ibl_bwb_eval.scoring.ts2" 2>/dev/null; then
    export NDT_SKIP_BWB_SCORER=1
    skips+=("bwb-scorer: ibl-bwb-eval not installed (tools/setup.sh --reference)")
fi

# Slurm for tests/slurm.rs: only root installs (with apt), and then the test must not skip.
# Without apt (exit 3) the test reports its skip.
if [ "$(id -u)" = 0 ]; then
    rc=0
    tools/slurm-local.sh install || rc=$?
    case $rc in
    0) export NDT_TEST_REQUIRE_SLURM=1 ;;
    3) ;;
    *) exit "$rc" ;;
    esac
fi

if cargo fmt --version >/dev/null 2>&1; then
    run cargo fmt --check
else
    skips+=("fmt (no rustfmt component)")
fi
if cargo clippy --version >/dev/null 2>&1; then
    run cargo clippy --all-targets --locked -- -D warnings
else
    skips+=("clippy (no clippy component)")
fi

# The kernel emulator compiles the kernel files with the host C++ compiler; where there is
# none, pip's ziglang provides clang (`zig c++`) in .venv.
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
    .venv/bin/pip install -q "ziglang>=0.13"
    printf '#!/bin/sh\nexec "%s" -m ziglang c++ "$@"\n' "$NDT_PYTHON" >.venv/bin/ndt-cxx
    chmod +x .venv/bin/ndt-cxx
    export CXX="$PWD/.venv/bin/ndt-cxx"
fi
run cargo build --all-targets --locked
run cargo test --locked
# The kernel compile test again under NVRTC 13 (the default above is pip's NVRTC 12).
NVRTC13=$(ls .venv/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 | head -n 1)
NDT_NVRTC_LIB="$PWD/$NVRTC13" run cargo test --locked --test nvrtc_compile
# The CUDA tests again on the kernel emulator: every kernel against its CPU twin, and the
# whole backend (graph-captured training steps included) against the CPU backend; once with
# the threads of a block run first to last between barriers, once last to first (a missing
# barrier makes the results depend on that order).
for order in 1 reverse; do
    for t in cuda_kernels cuda_layers cuda_loss_optim cuda_backend; do
        NDT_CUDA_EMU=$order run cargo test --locked --test "$t"
    done
done

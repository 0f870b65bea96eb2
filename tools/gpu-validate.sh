#!/usr/bin/env bash
# Every GPU check of docs/cuda.md in one call, each step logged, a summary at the end.
#
#   tools/gpu-validate.sh run [--bin DIR] [--out DIR] [--skip STEPS] [--steps-only STEPS]
#   tools/gpu-validate.sh pack DIR
#
# run: on a machine with an NVIDIA GPU. With cargo, it builds what it needs; with --bin DIR it
#      uses the binaries that `pack` put in DIR instead (a GPU machine without a Rust toolchain).
#      Steps (names for --skip / --steps-only, comma-separated):
#        env        nvidia-smi, the NVRTC found, the device as ndt sees it
#        tests      tests/cuda_{kernels,layers,loss_optim,backend}.rs, one thread
#        fixtures   ndt check-fixture fixtures/*.safetensors --device cuda, f32 then bf16
#        track      the same training run (about 200 steps) on the CPU and on the GPU (f32 and
#                   bf16), the per-epoch losses side by side (tools/compare_runs.py)
#        sanitizer  compute-sanitizer memcheck and racecheck on a few training steps
#        bench      ndt bench --device cuda at the paper config, bf16 and f32 (each with a
#                   per-operation profile, --profile), B 16 and 64, and the A/B switches
#        kernels    the criterion bench benches/cuda_kernels.rs
#        torch      bench/compare.sh (PyTorch side by side; needs torch in python3)
#        recipe     the paper's single-session recipe end to end: 1000 epochs of the paper model
#                   on one synthetic session of 500 trials (400 train), 150 bins, 1000 neurons,
#                   B 16, validation every epoch; the step's time is the figure (paper: ~1 h on
#                   an A40). Not in the default list (it runs for minutes): name it in
#                   --steps-only.
#      Logs go to OUT (default: bench/results/gpu-<date>) as NN-step.log, and OUT/summary.md
#      lists every step with its exit status. A failing step does not stop the others; the
#      script exits 1 if any step failed.
# pack: here, with cargo: builds the release binary and the GPU test and bench binaries, strips
#      and gzips them into DIR (about 4 MB each).
#
# NVRTC: as ndt finds it (docs/cuda.md); on a machine with a CUDA toolkit, the toolkit's lib64 is
# put on LD_LIBRARY_PATH when no NVRTC is found there already.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() { echo "gpu-validate.sh: $*" >&2; exit 1; }
TESTS="cuda_kernels cuda_layers cuda_loss_optim cuda_backend"
ALL_STEPS="env tests fixtures track sanitizer bench kernels torch recipe"
DEFAULT_STEPS="env tests fixtures track sanitizer bench kernels torch"

# The compiled test binary of each `--test NAME` (and the bench), from cargo's JSON messages.
built_executables() { # cargo args...
    cargo "$@" --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])
'
}

pack() { # DIR
    local dir=$1 name exe
    mkdir -p "$dir"
    cargo build --release --locked
    cp target/release/ndt "$dir/ndt"
    local args=(test --release --locked --no-run)
    for t in $TESTS; do args+=(--test "$t"); done
    while read -r name exe; do cp "$exe" "$dir/$name"; done < <(built_executables "${args[@]}")
    while read -r name exe; do
        [ "$name" = cuda_kernels ] && cp "$exe" "$dir/cuda_kernels_bench"
    done \
        < <(built_executables bench --locked --no-run --bench cuda_kernels)
    for f in ndt $TESTS cuda_kernels_bench; do
        [ -f "$dir/$f" ] || die "pack: $f was not built"
    done
    for f in "$dir"/*; do
        case "$f" in *.gz) continue ;; esac
        strip "$f" 2>/dev/null || true
        gzip -f "$f"
    done
    ls -la "$dir"
}

case "${1:-}" in
    pack) [ $# = 2 ] || die "usage: tools/gpu-validate.sh pack DIR"; pack "$2"; exit 0 ;;
    run) shift ;;
    -h | --help | "") awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown command '$1' (run, pack)" ;;
esac

BIN=""
OUT=""
SKIP=""
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=${2:?--bin needs a folder}; shift ;;
        --out) OUT=${2:?--out needs a folder}; shift ;;
        --skip) SKIP=${2:?--skip needs step names}; shift ;;
        --steps-only) ONLY=${2:?--steps-only needs step names}; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
for s in ${SKIP//,/ } ${ONLY//,/ }; do
    case " $ALL_STEPS " in *" $s "*) ;; *) die "unknown step '$s' ($ALL_STEPS)" ;; esac
done
OUT=${OUT:-bench/results/gpu-$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ndt-gpu-validate.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- binaries -----------------------------------------------------------------------------------
declare -A EXE
if [ -n "$BIN" ]; then
    for f in ndt $TESTS; do
        [ -f "$BIN/$f.gz" ] || die "--bin $BIN has no $f.gz (made by: tools/gpu-validate.sh pack DIR)"
    done
    mkdir -p "$WORK/bin"
    for f in "$BIN"/*.gz; do
        gunzip -c "$f" >"$WORK/bin/$(basename "$f" .gz)"
        chmod +x "$WORK/bin/$(basename "$f" .gz)"
    done
    for f in ndt $TESTS; do EXE[$f]=$WORK/bin/$f; done
    EXE[bench_kernels]=$WORK/bin/cuda_kernels_bench
    [ -f "$WORK/bin/cuda_kernels_bench" ] || EXE[bench_kernels]=""
else
    command -v cargo >/dev/null || die "no cargo here: build with 'tools/gpu-validate.sh pack DIR' elsewhere and pass --bin DIR"
    cargo build --release --locked
    EXE[ndt]=$ROOT/target/release/ndt
    args=(test --release --locked --no-run)
    for t in $TESTS; do args+=(--test "$t"); done
    while read -r name exe; do EXE[$name]=$exe; done < <(built_executables "${args[@]}")
    EXE[bench_kernels]=""
fi
NDT=${EXE[ndt]}

# ---- NVRTC --------------------------------------------------------------------------------------
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so' && [ -z "${NDT_NVRTC_LIB:-}" ]; then
    for d in ${CUDA_HOME:-} /usr/local/cuda /usr/local/cuda-*; do
        for lib in "$d/lib64" "$d/targets/x86_64-linux/lib"; do
            if [ -e "$lib/libnvrtc.so" ]; then
                export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
                break 2
            fi
        done
    done
fi

# ---- steps --------------------------------------------------------------------------------------
n=0
FAILED=0
SUMMARY=()
want() { # step
    case ",$SKIP," in *",$1,"*) return 1 ;; esac
    if [ -z "$ONLY" ]; then
        case " $DEFAULT_STEPS " in *" $1 "*) return 0 ;; esac
        return 1
    fi
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}
step() { # name description command...
    local name=$1 what=$2 log rc t0
    shift 2
    n=$((n + 1))
    log=$(printf '%s/%02d-%s.log' "$OUT" "$n" "$name")
    echo "gpu-validate.sh: [$n] $name: $what" >&2
    t0=$(date +%s)
    set +e
    { echo "\$ $*"; "$@"; } >"$log" 2>&1
    rc=$?
    set -e
    local dt=$(($(date +%s) - t0))
    [ "$rc" = 0 ] || FAILED=1
    SUMMARY+=("| $n | $name | $what | $rc | ${dt} s | $(basename "$log") |")
    echo "gpu-validate.sh: [$n] $name: exit $rc (${dt} s)" >&2
}

if want env; then
    step env "nvidia-smi" nvidia-smi
    step env "device and NVRTC as ndt sees them" "$NDT" bench --device cuda --config small \
        --steps 2 --warmup 1
fi
# A GPU test that finds no device reports itself skipped and passes; here that is a failure.
gpu_test() { # binary
    "$1" --test-threads=1 2>&1 | tee "$WORK/test.log"
    local rc=${PIPESTATUS[0]}
    if grep -q "SKIPPED: no CUDA device" "$WORK/test.log"; then
        echo "gpu-validate.sh: tests were skipped: no usable CUDA device" >&2
        return 1
    fi
    return "$rc"
}
if want tests; then
    for t in $TESTS; do
        step tests "$t vs the CPU twins" gpu_test "${EXE[$t]}"
    done
fi
if want fixtures; then
    step fixtures "check-fixture, f32" "$NDT" check-fixture fixtures/*.safetensors --device cuda
    step fixtures "check-fixture, bf16" "$NDT" check-fixture fixtures/*.safetensors --device cuda \
        --precision bf16
fi
if want track; then
    # About 200 steps: 8 epochs of 27 batches on the tiny dataset.
    track() {
        "$NDT" synth --preset rs --tiny --seed 3 --out "$WORK/track-data" >/dev/null &&
            "$NDT" train "$WORK/track-data" --config small --epochs 8 --device cpu \
                --out "$WORK/track-cpu" &&
            NDT_CUDA_PRECISION=f32 "$NDT" train "$WORK/track-data" --config small --epochs 8 \
                --device cuda --out "$WORK/track-f32" &&
            NDT_CUDA_PRECISION=bf16 "$NDT" train "$WORK/track-data" --config small --epochs 8 \
                --device cuda --out "$WORK/track-bf16" &&
            python3 tools/compare_runs.py "$WORK/track-cpu" "$WORK/track-f32" --tol 1e-3 &&
            python3 tools/compare_runs.py "$WORK/track-cpu" "$WORK/track-bf16" --tol 5e-2
    }
    step track "CPU vs GPU training run, losses per epoch" track
fi
if want sanitizer; then
    if command -v compute-sanitizer >/dev/null 2>&1; then
        SAN=compute-sanitizer
    else
        SAN=$(ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)
    fi
    if [ -n "$SAN" ]; then
        for tool in memcheck racecheck; do
            step sanitizer "compute-sanitizer $tool, 3 training steps" env NDT_CUDA_GRAPHS=0 \
                "$SAN" --tool "$tool" --error-exitcode 1 "$NDT" bench --device cuda \
                --config small --steps 2 --warmup 1
        done
    else
        step sanitizer "compute-sanitizer not found" false
    fi
fi
if want bench; then
    # With a per-operation profile (CUDA events; every operation in OUT/profile-*.csv).
    for p in bf16 f32; do
        step bench "paper config, $p, B 16, profiled" "$NDT" bench --device cuda --config paper \
            --precision "$p" --batch-size 16 --profile "$OUT/profile-$p-b16.csv"
    done
    step bench "paper config, bf16, B 64, profiled" "$NDT" bench --device cuda --config paper \
        --batch-size 64 --profile "$OUT/profile-bf16-b64.csv"
    step bench "paper config, bf16, B 16, no CUDA graph" env NDT_CUDA_GRAPHS=0 "$NDT" bench \
        --device cuda --config paper --batch-size 16
    step bench "paper config, bf16, B 16, scalar GEMM loads (A/B of the float4 loads)" \
        env NDT_GEMM_SCALAR_LOADS=1 "$NDT" bench --device cuda --config paper --batch-size 16
    step bench "paper config, bf16, B 16, no ldmatrix (A/B of the ldmatrix fragment loads)" \
        env NDT_GEMM_NO_LDMATRIX=1 "$NDT" bench --device cuda --config paper --batch-size 16
    step bench "paper config, bf16, B 16, every layer's attention probabilities kept (A/B of the recompute)" \
        env NDT_ATTENTION_KEEP=1 "$NDT" bench --device cuda --config paper --batch-size 16
    step bench "paper config, bf16, B 16, every activation stored as f32 (A/B of the bf16 storage)" \
        env NDT_STORE_F32=1 "$NDT" bench --device cuda --config paper --batch-size 16
    for b in 16 64; do
        step bench "paper config, bf16, B $b, unfused attention (A/B of the fused forward)" \
            env NDT_ATTENTION_UNFUSED=1 "$NDT" bench --device cuda --config paper --batch-size "$b"
    done
fi
if want kernels; then
    if [ -n "${EXE[bench_kernels]}" ]; then
        step kernels "criterion, per kernel family" "${EXE[bench_kernels]}" --bench
    elif [ -z "$BIN" ]; then
        step kernels "criterion, per kernel family" cargo bench --locked --bench cuda_kernels
    fi
fi
if want torch; then
    step torch "ndt vs PyTorch, paper config, B 16 and 64" bench/compare.sh --ndt "$NDT" \
        --python python3 --out "$OUT/compare"
fi
if want recipe; then
    recipe() {
        "$NDT" synth --preset rs --sessions 1 --animals 1 --trials 500 --neurons 1000 \
            --bins 150 --seed 5 --out "$WORK/recipe-data" >/dev/null &&
            "$NDT" train "$WORK/recipe-data" --config paper --epochs 1000 --batch-size 16 \
                --device cuda --out "$WORK/recipe-run" &&
            tail -n 1 "$WORK/recipe-run/log.jsonl"
    }
    step recipe "paper recipe, 1 session, 1000 epochs, B 16 (time = the figure)" recipe
fi

{
    echo "# GPU checks ($(date -u +%Y-%m-%d), $(hostname -s 2>/dev/null || hostname))"
    echo
    echo "Command: \`tools/gpu-validate.sh run${BIN:+ --bin DIR}${SKIP:+ --skip $SKIP}${ONLY:+ --steps-only $ONLY}\`"
    echo "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo "?")"
    echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none)"
    if [ -n "${NDT_CUDA_EMU:-}" ] && [ "$NDT_CUDA_EMU" != 0 ]; then
        echo
        echo "NDT_CUDA_EMU=$NDT_CUDA_EMU: the CUDA steps ran on the CPU kernel emulator, not on a GPU."
    fi
    echo
    echo "| # | step | what | exit | time | log |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
exit "$FAILED"

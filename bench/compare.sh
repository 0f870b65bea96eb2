#!/usr/bin/env bash
# ndt against the PyTorch NDT (bench/torch_ndt.py) on one GPU: the training step at the paper's
# config with B=16 and B=64, both sides in one call, then one Markdown table (ms/step, tokens/s,
# peak memory, ndt's speed-up over every PyTorch mode, and the fraction of the FLOP floor reached).
# Results go to bench/results/<date>-<device>.md and .json. See bench/README.md.
#
#   bench/compare.sh [--steps N] [--warmup N] [--batches "16 64"] [--modes LIST]
#                    [--ndt PATH] [--python PATH] [--out BASE]
#   bench/compare.sh --dry-run     both sides at a tiny config on the CPU (tests this script)
#
# ndt: --ndt, else $NDT, else target/release/ndt, else `ndt` on PATH.
# Python with torch: --python, else $NDT_PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
STEPS=""
WARMUP=""
BATCHES=""
MODES=""
OUT=""
NDT_BIN=${NDT:-}
PY=${NDT_PYTHON:-}

die() { echo "compare.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --steps) STEPS=${2:?--steps needs a value}; shift ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift ;;
        --batches) BATCHES=${2:?--batches needs a value}; shift ;;
        --modes) MODES=${2:?--modes needs a value}; shift ;;
        --ndt) NDT_BIN=${2:?--ndt needs a path}; shift ;;
        --python) PY=${2:?--python needs a path}; shift ;;
        --out) OUT=${2:?--out needs a path}; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -z "$NDT_BIN" ]; then
    if [ -x target/release/ndt ]; then NDT_BIN=target/release/ndt
    elif command -v ndt >/dev/null 2>&1; then NDT_BIN=$(command -v ndt)
    fi
fi

"$PY" -c "import torch" 2>/dev/null \
    || die "$PY cannot import torch: install PyTorch into it (bench/README.md), or pass --python"

if [ "$DRY" = 1 ]; then
    # A tiny model on the CPU: the same flags on both sides, a few steps; numbers mean nothing.
    DEVICE=cpu
    DEVICE_NAME="cpu (dry run)"
    STEPS=${STEPS:-3}
    WARMUP=${WARMUP:-1}
    BATCHES=${BATCHES:-4 8}
    printf 'preset = "small"\n[model]\nd_model = 64\nn_layers = 2\nn_heads = 4\nd_ff = 128\nd_tok = 48\nd_embed_hidden = 96\n' \
        > "${TMPDIR:-/tmp}/ndt-compare-tiny.toml"
    NDT_CONFIG=(--config "${TMPDIR:-/tmp}/ndt-compare-tiny.toml" --bins 20 --neurons 30 --threads 1)
    TORCH_CONFIG=(--d-model 64 --n-layers 2 --n-heads 4 --d-ff 128 --d-tok 48
                  --n-bins 20 --n-neurons 30 --threads 1)
    MODES=${MODES:-eager-fp32}
    MATMUL=(--matmul-size 256 --threads 1)
else
    command -v nvidia-smi >/dev/null 2>&1 \
        || die "no NVIDIA GPU here (nvidia-smi not found). This comparison needs a GPU machine" \
               "(bench/README.md); 'bench/compare.sh --dry-run' tests the script on the CPU."
    DEVICE_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) \
        || die "nvidia-smi found no usable GPU"
    [ -n "$DEVICE_NAME" ] || die "nvidia-smi lists no GPU"
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || die "PyTorch in $PY sees no CUDA device (a CPU-only torch build?)"
    DEVICE=cuda
    STEPS=${STEPS:-100}
    WARMUP=${WARMUP:-20}
    BATCHES=${BATCHES:-16 64}
    NDT_CONFIG=(--config paper --bins 150 --neurons 1000)
    TORCH_CONFIG=(--d-model 512 --n-layers 5 --n-heads 8 --d-ff 1024 --d-tok 668
                  --n-bins 150 --n-neurons 1000)
    MATMUL=()
fi
[ -n "$NDT_BIN" ] && [ -x "$NDT_BIN" ] || [ "$DRY" = 1 ] \
    || die "no ndt binary (build it with 'cargo build --release' and copy target/release/ndt," \
           "or pass --ndt PATH)"

DATE=$(date -u +%Y-%m-%d)
SLUG=$(printf '%s' "$DEVICE_NAME" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9' '-' | tr -s '-' | sed 's/^-//; s/-$//')
if [ -z "$OUT" ]; then
    if [ "$DRY" = 1 ]; then
        OUT=$(mktemp -d "${TMPDIR:-/tmp}/ndt-compare.XXXXXX")/dry-run
    else
        mkdir -p bench/results
        OUT=bench/results/$DATE-$SLUG
        n=2
        while [ -e "$OUT.md" ]; do OUT=bench/results/$DATE-$SLUG-$n; n=$((n + 1)); done
    fi
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ndt-compare-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
COMMAND="bench/compare.sh"
[ "$DRY" = 1 ] && COMMAND+=" --dry-run"
COMMAND+=" --steps $STEPS --warmup $WARMUP --batches \"$BATCHES\""
[ -n "$MODES" ] && COMMAND+=" --modes $MODES"

status=0
pairs=()
for B in $BATCHES; do
    ndt_json=$WORK/ndt-$B.json
    torch_json=$WORK/torch-$B.json
    echo "compare.sh: B=$B: ndt bench ..." >&2
    if [ -z "$NDT_BIN" ]; then
        echo "compare.sh: no ndt binary: the ndt side is left out" >&2
        ndt_json=-
        status=1
    elif ! "$NDT_BIN" bench --device "$DEVICE" "${NDT_CONFIG[@]}" --batch-size "$B" --steps "$STEPS" \
            --warmup "$WARMUP" --scheme forward --json >"$ndt_json" 2>"$WORK/ndt-$B.log"; then
        echo "compare.sh: B=$B: ndt bench failed; its last lines:" >&2
        tail -n 5 "$WORK/ndt-$B.log" | sed 's/^/    /' >&2
        ndt_json=-
        status=1
    fi
    echo "compare.sh: B=$B: torch_ndt.py ..." >&2
    modes_arg=()
    [ -n "$MODES" ] && modes_arg=(--modes "$MODES")
    if ! "$PY" bench/torch_ndt.py --device "$DEVICE" "${TORCH_CONFIG[@]}" --batch "$B" \
            --steps "$STEPS" --warmup "$WARMUP" "${modes_arg[@]}" --json "$torch_json"; then
        echo "compare.sh: B=$B: a PyTorch mode failed (see the table)" >&2
        status=1
    fi
    [ -s "$torch_json" ] || die "B=$B: torch_ndt.py wrote no results"
    pairs+=(--pair "$B" "$ndt_json" "$torch_json")
done

echo "compare.sh: bf16 matmul rate ..." >&2
"$PY" bench/torch_ndt.py --device "$DEVICE" --matmul-rate "${MATMUL[@]}" --json "$WORK/matmul.json" \
    || die "the matmul rate measurement failed"

mkdir -p "$(dirname "$OUT")"
"$PY" bench/report.py "${pairs[@]}" --matmul "$WORK/matmul.json" --device "$DEVICE_NAME" \
    --date "$DATE" --command "$COMMAND" --out "$OUT" --strict || status=1
[ -s "$OUT.md" ] || die "the report was not written"
echo >&2
echo "compare.sh: wrote $OUT.md and $OUT.json" >&2
[ "$status" = 0 ] || echo "compare.sh: incomplete: one side or mode failed (see above)" >&2
exit "$status"

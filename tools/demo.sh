#!/usr/bin/env bash
# The main job, end to end on a small RS-like synthetic dataset:
#   build -> synthesise 8 sessions -> pretrain on 7 -> finetune on the held-out one (full mode)
#   -> baseline from scratch on the held-out one alone -> evaluate both on its test split
#   -> one table: pretrained vs baseline, the four bits-per-spike tasks and choice decoding.
#
# Usage: tools/demo.sh [OUT_DIR]        (default: out/demo in the repository)
#
# Writes OUT_DIR/{data,runs,eval,logs,demo.toml,report.md}. Running it again clears exactly those
# entries first (OUT_DIR carries a .ndt-demo marker; a non-empty folder without it is refused).
# Uses the GPU when one can be used (--device auto), else the CPU. Settings and measured output:
# docs/demo.md.
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    -*) echo "demo.sh: unknown flag '$1'" >&2; usage >&2; exit 1 ;;
esac
if [ $# -gt 1 ]; then
    echo "demo.sh: at most one argument (OUT_DIR)" >&2
    exit 1
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/out/demo}

# ---- settings (docs/demo.md says why) -----------------------------------------------------------
SYNTH_ARGS=(--preset rs --sessions 8 --animals 2 --trials 120..160 --neurons 100..150
    --bins 60 --onset-bin 10 --rate 20 --seed 1)
HELD_OUT=syn-0000
PRETRAIN_SESSIONS=syn-0001,syn-0002,syn-0003,syn-0004,syn-0005,syn-0006,syn-0007
PRETRAIN_EPOCHS=40
FINETUNE_EPOCHS=100 # the baseline gets the same number of epochs on the same session
DEVICE=auto

# ---- the output folder --------------------------------------------------------------------------
MARKER=.ndt-demo
OWN=(data runs eval logs demo.toml report.md "$MARKER")
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
    echo "demo.sh: $OUT exists and is not a directory" >&2
    exit 1
fi
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/$MARKER" ]; then
    echo "demo.sh: $OUT is not empty and was not written by demo.sh; choose another OUT_DIR" >&2
    exit 1
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for entry in "${OWN[@]}"; do
    rm -rf "${OUT:?}/$entry"
done
touch "$OUT/$MARKER"
mkdir -p "$OUT/logs" "$OUT/eval"

START=$(date +%s.%N)
elapsed() { awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
COMMANDS=()

# run NAME CMD...: runs CMD in OUT with its output in logs/NAME.log; records the command.
run() {
    local name=$1
    shift
    local shown=ndt arg # every step runs the ndt just built
    for arg in "${@:2}"; do
        if [[ $arg =~ ^[A-Za-z0-9_./,:=+-]+$ ]]; then shown+=" $arg"; else shown+=" $(printf '%q' "$arg")"; fi
    done
    COMMANDS+=("$shown")
    printf '[%6ss] %-9s %s\n' "$(elapsed)" "$name" "${COMMANDS[-1]}"
    local t0 rc=0
    t0=$(date +%s.%N)
    (cd "$OUT" && "$@") >"$OUT/logs/$name.log" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        echo "demo.sh: step '$name' failed (exit $rc); the end of $OUT/logs/$name.log:" >&2
        tail -n 20 "$OUT/logs/$name.log" >&2
        exit $rc
    fi
    STEP_TIMES+=("$name $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')")
}
STEP_TIMES=()

# ---- build --------------------------------------------------------------------------------------
echo "[$(printf '%6s' "$(elapsed)")s] build     cargo build --release --locked"
(cd "$ROOT" && cargo build --release --locked) >"$OUT/logs/build.log" 2>&1 || {
    echo "demo.sh: cargo build failed; the end of $OUT/logs/build.log:" >&2
    tail -n 30 "$OUT/logs/build.log" >&2
    exit 1
}
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
NDT=$TARGET/release/ndt
STEP_TIMES+=("build $(elapsed)")

# The model and training settings, a preset plus overrides (docs/training.md).
cat >"$OUT/demo.toml" <<'EOF'
# tools/demo.sh: a model small enough to pretrain on two CPU cores in under two minutes.
preset = "small"
[model]
d_model = 64
d_tok = 64
d_embed_hidden = 128
n_layers = 3
n_heads = 4
d_ff = 128
[train]
lr = 2e-3
val_every = 5
EOF

# ---- the pipeline -------------------------------------------------------------------------------
run synth "$NDT" synth "${SYNTH_ARGS[@]}" --out data
run pretrain "$NDT" train data --sessions "$PRETRAIN_SESSIONS" --config demo.toml \
    --epochs "$PRETRAIN_EPOCHS" --device "$DEVICE" --out runs/pretrain
run finetune "$NDT" finetune runs/pretrain/best.safetensors data --session "$HELD_OUT" \
    --mode full --config demo.toml --epochs "$FINETUNE_EPOCHS" --device "$DEVICE" \
    --out runs/finetune
run baseline "$NDT" train data --sessions "$HELD_OUT" --config demo.toml \
    --epochs "$FINETUNE_EPOCHS" --device "$DEVICE" --out runs/baseline
run eval-ft "$NDT" eval runs/finetune/best.safetensors data --session "$HELD_OUT" \
    --device "$DEVICE" --out eval/pretrained.json
run eval-base "$NDT" eval runs/baseline/best.safetensors data --session "$HELD_OUT" \
    --device "$DEVICE" --out eval/baseline.json
TOTAL=$(elapsed)

# ---- the table ----------------------------------------------------------------------------------
# metric FILE KEY: the value of KEY in the "metrics" map of an eval JSON (null if absent).
metric() {
    awk -v key="\"$2\":" '
        /"metrics": \{/ { inside = 1; next }
        inside && /\}/ { inside = 0 }
        inside && $1 == key { v = $2; sub(/,$/, "", v); print v; found = 1; exit }
        END { if (!found) print "null" }' "$1"
}
# top FILE KEY: a top-level number of an eval JSON.
top() {
    awk -v key="\"$2\":" '/^  "/ && $1 == key { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}
fmt() { awk -v v="$1" -v p="$2" 'BEGIN { if (v == "null") print "-"; else printf "%.*f", p, v }'; }
diff_of() {
    awk -v a="$1" -v b="$2" -v p="$3" 'BEGIN {
        if (a == "null" || b == "null") print "-"; else printf "%+.*f", p, a - b }'
}
# val_losses LOG: "epoch val_loss" per line of a run's log.jsonl (val_loss empty when not validated).
val_losses() {
    grep -o '"epoch":[0-9]*\|"val_loss":[-0-9.e]*' "$1" | paste - - | sed 's/"epoch"://; s/"val_loss"://'
}

PRE=$OUT/eval/pretrained.json
BASE=$OUT/eval/baseline.json
TABLE=$(
    printf '| metric | pretrained + finetuned | baseline (from scratch) | difference |\n'
    printf '|---|---:|---:|---:|\n'
    for task in co-smooth forward inter-region intra-region; do
        for conv in "" .pooled; do
            a=$(metric "$PRE" "$task$conv")
            b=$(metric "$BASE" "$task$conv")
            if [ -n "$conv" ]; then label="$task bps (pooled)"; else label="$task bps (per-neuron)"; fi
            printf '| %s | %s | %s | %s |\n' "$label" "$(fmt "$a" 4)" "$(fmt "$b" 4)" "$(diff_of "$a" "$b" 4)"
        done
    done
    a=$(metric "$PRE" choice)
    b=$(metric "$BASE" choice)
    printf '| choice accuracy | %s | %s | %s |\n' "$(fmt "$a" 3)" "$(fmt "$b" 3)" "$(diff_of "$a" "$b" 3)"
    a=$(metric "$PRE" choice.majority)
    b=$(metric "$BASE" choice.majority)
    printf '| choice majority rate | %s | %s | |\n' "$(fmt "$a" 3)" "$(fmt "$b" 3)"
)
N_TRIALS=$(top "$PRE" n_trials)
N_NEURONS=$(top "$PRE" n_neurons)
VAL_SUMMARY=$(val_losses "$OUT/runs/pretrain/log.jsonl" | awk '
    $2 == "" { next }
    n++ == 0 { first = sprintf("%.4f (epoch %s)", $2, $1) }
    best == "" || $2 + 0 < best + 0 { best = $2; be = $1 }
    { last = sprintf("%.4f (epoch %s)", $2, $1) }
    END { printf "first %s, last %s, best %.4f (epoch %s)", first, last, best, be }')
if grep -q 'running on the CPU' "$OUT/logs/pretrain.log"; then
    DEVICE_LINE="CPU, $(nproc 2>/dev/null || echo '?') cores (no usable GPU)"
else
    DEVICE_LINE="GPU (CUDA backend)"
fi

{
    echo "# ndt demo: pretrained vs baseline on a held-out RS-like session"
    echo
    echo "Held-out session \`$HELD_OUT\`, test split: $N_TRIALS trials, $N_NEURONS neurons."
    echo "Pretrained on $PRETRAIN_SESSIONS ($PRETRAIN_EPOCHS epochs), then finetuned (full) on"
    echo "\`$HELD_OUT\` for $FINETUNE_EPOCHS epochs; the baseline trains from scratch on \`$HELD_OUT\` alone"
    echo "for the same $FINETUNE_EPOCHS epochs. Bits per spike > 0 beats each neuron's mean rate."
    echo
    echo "$TABLE"
    echo
    echo "Pretraining validation loss: $VAL_SUMMARY."
    echo "Device: $DEVICE_LINE."
    steps=$(printf '%s s, ' "${STEP_TIMES[@]}")
    echo "Wall time: ${TOTAL} s in all (${steps%, })."
    echo
    echo "## Commands"
    echo
    echo "Run in \`$OUT\`, with \`ndt\` = \`$NDT\` (built by \`cargo build --release --locked\`);"
    echo "\`demo.toml\` is the model and training configuration in this folder."
    echo
    echo '```sh'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
    echo "Files: \`data/\` (the dataset), \`runs/{pretrain,finetune,baseline}/\` (checkpoints, \`log.jsonl\`),"
    echo "\`eval/{pretrained,baseline}.json\` (the evaluations), \`logs/\` (each step's output)."
} >"$OUT/report.md"

echo
echo "held-out session $HELD_OUT, test split: $N_TRIALS trials, $N_NEURONS neurons"
echo "$TABLE"
echo
echo "pretraining validation loss: $VAL_SUMMARY"
echo "device: $DEVICE_LINE; wall time ${TOTAL} s; report: $OUT/report.md"

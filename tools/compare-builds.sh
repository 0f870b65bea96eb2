#!/usr/bin/env bash
# Checks that two ndt binaries compute the same bits, for a change that should not alter any
# result (a restructuring, a refactor):
#   1. the report of every fixture (`check-fixture --json`), byte for byte;
#   2. the demo's pipeline (tools/demo.sh's settings: synth, pretrain, finetune, baseline, eval on
#      the CPU): the data, every checkpoint and the evaluation metrics, byte for byte;
#   3. a 3-epoch training on the CUDA kernel emulator (NDT_CUDA_EMU=1, bf16): the checkpoints
#      and the losses of every epoch, byte for byte.
# A checkpoint is compared as its tensors' bytes and its header (tensor names, shapes, offsets and
# metadata) as sorted JSON, since builds before 2026-12-02 wrote the header's metadata keys in a
# random order.
#
# Usage: tools/compare-builds.sh BEFORE_NDT AFTER_NDT [WORK_DIR]
# Prints one line per comparison and "same: N of N"; exit 1 when anything differs.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 1
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
WORK=${3:-$(mktemp -d)}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
PY=python3
[ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python

same=0
total=0
differ=()
# A checkpoint's header as sorted JSON and the SHA-256 of its data.
ckpt() {
    "$PY" -c '
import hashlib, json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
print(json.dumps(json.loads(b[8:8 + n]), sort_keys=True))
print(hashlib.sha256(b[8 + n:]).hexdigest())
' "$1"
}
check_ckpt() { # check_ckpt LABEL FILE_BEFORE FILE_AFTER
    ckpt "$2" >"$2.cmp"
    ckpt "$3" >"$3.cmp"
    check "$1" "$2.cmp" "$3.cmp"
}
check() { # check LABEL FILE_BEFORE FILE_AFTER
    total=$((total + 1))
    if cmp -s "$2" "$3"; then
        same=$((same + 1))
        echo "same     $1"
    else
        differ+=("$1")
        echo "DIFFERS  $1 ($2 vs $3)"
    fi
}

# ---- 1. fixture reports ---------------------------------------------------------------------------
for which in before after; do
    mkdir -p "$WORK/$which/fixtures"
done
for f in "$ROOT"/fixtures/*.safetensors; do
    b=$(basename "$f" .safetensors)
    "$BEFORE" check-fixture "$f" --json >"$WORK/before/fixtures/$b.json"
    "$AFTER" check-fixture "$f" --json >"$WORK/after/fixtures/$b.json"
    check "fixture $b" "$WORK/before/fixtures/$b.json" "$WORK/after/fixtures/$b.json"
done

# ---- 2. the demo's pipeline on the CPU --------------------------------------------------------------
cat >"$WORK/demo.toml" <<'EOF'
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
demo() { # demo NDT DIR
    local ndt=$1 dir=$2
    rm -rf "$dir/demo"
    mkdir -p "$dir/demo"
    (
        cd "$dir/demo"
        "$ndt" synth --preset rs --sessions 8 --animals 2 --trials 120..160 --neurons 100..150 \
            --bins 60 --onset-bin 10 --rate 20 --seed 1 --out data
        "$ndt" train data --sessions syn-0001,syn-0002,syn-0003,syn-0004,syn-0005,syn-0006,syn-0007 \
            --config "$WORK/demo.toml" --epochs 40 --device cpu --out runs/pretrain
        "$ndt" finetune runs/pretrain/best.safetensors data --session syn-0000 --mode full \
            --config "$WORK/demo.toml" --epochs 100 --device cpu --out runs/finetune
        "$ndt" train data --sessions syn-0000 --config "$WORK/demo.toml" --epochs 100 \
            --device cpu --out runs/baseline
        "$ndt" eval runs/finetune/best.safetensors data --session syn-0000 --device cpu \
            --out pretrained.json
        "$ndt" eval runs/baseline/best.safetensors data --session syn-0000 --device cpu \
            --out baseline.json
    ) >"$dir/demo.log" 2>&1
}
# The metrics of an eval report, and the per-epoch losses of a run's log, without timings.
metrics() { "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["metrics"], sort_keys=True))' "$1"; }
losses() {
    "$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(json.dumps({k: v for k, v in e.items() if "loss" in k or k in ("epoch", "step", "lr")}, sort_keys=True))
' "$1"
}
demo "$BEFORE" "$WORK/before"
demo "$AFTER" "$WORK/after"
for s in "$WORK"/before/demo/data/sessions/*/spikes.npy; do
    rel=${s#"$WORK/before/demo/"}
    check "demo $rel" "$s" "$WORK/after/demo/$rel"
done
for run in pretrain finetune baseline; do
    for ck in best last; do
        check_ckpt "demo runs/$run/$ck.safetensors" "$WORK/before/demo/runs/$run/$ck.safetensors" \
            "$WORK/after/demo/runs/$run/$ck.safetensors"
    done
    losses "$WORK/before/demo/runs/$run/log.jsonl" >"$WORK/before/$run.losses"
    losses "$WORK/after/demo/runs/$run/log.jsonl" >"$WORK/after/$run.losses"
    check "demo runs/$run losses per epoch" "$WORK/before/$run.losses" "$WORK/after/$run.losses"
done
for e in pretrained baseline; do
    metrics "$WORK/before/demo/$e.json" >"$WORK/before/$e.metrics"
    metrics "$WORK/after/demo/$e.json" >"$WORK/after/$e.metrics"
    check "demo eval $e metrics" "$WORK/before/$e.metrics" "$WORK/after/$e.metrics"
done

# ---- 3. three epochs on the kernel emulator ------------------------------------------------------
cat >"$WORK/emu.toml" <<'EOF'
preset = "small"
[model]
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 2
n_heads = 2
d_ff = 64
[train]
batch_size = 8
val_every = 1
EOF
emu() { # emu NDT DIR
    local ndt=$1 dir=$2
    rm -rf "$dir/emu"
    mkdir -p "$dir/emu"
    (
        cd "$dir/emu"
        "$ndt" synth --preset rs --sessions 2 --animals 1 --trials 24..24 --neurons 20..20 \
            --bins 30 --onset-bin 5 --rate 20 --seed 3 --out data
        NDT_CUDA_EMU=1 NDT_CUDA_PRECISION=bf16 "$ndt" train data --config "$WORK/emu.toml" \
            --epochs 3 --device cuda --out run
    ) >"$dir/emu.log" 2>&1
}
emu "$BEFORE" "$WORK/before"
emu "$AFTER" "$WORK/after"
for ck in best last; do
    check_ckpt "emulator run/$ck.safetensors" "$WORK/before/emu/run/$ck.safetensors" \
        "$WORK/after/emu/run/$ck.safetensors"
done
losses "$WORK/before/emu/run/log.jsonl" >"$WORK/before/emu.losses"
losses "$WORK/after/emu/run/log.jsonl" >"$WORK/after/emu.losses"
check "emulator run losses per epoch" "$WORK/before/emu.losses" "$WORK/after/emu.losses"

echo "same: $same of $total"
[ ${#differ[@]} -eq 0 ]

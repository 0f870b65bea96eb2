#!/usr/bin/env bash
# The mini-study of docs/experiments.md: synthetic RS-like data with four animals along a line
# of dynamics (graded implicit heterogeneity), session ranking, a sweep over pretraining sizes
# and orders, and the report (tables + SVG plots). Results: docs/mini-study/README.md.
# Resumable: run it again after an interruption and finished jobs are kept.
#
#   tools/mini-study.sh [--jobs K]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
NDT=target/release/ndt
OUT=out/mini-study
SYNTH=(--preset rs --sessions 16 --animals 4 --animal-layout line --animal-strength 2.5
    --trials 160 --neurons 150 --bins 50 --onset-bin 10 --rate 20 --seed 11)
mkdir -p "$OUT"
# The data and the sweep belong to one set of synth flags; other flags start both afresh.
if [ "$(cat "$OUT/synth.args" 2>/dev/null || true)" != "${SYNTH[*]}" ]; then
    if [ -e "$OUT/data" ] || [ -e "$OUT/sweep" ]; then
        echo "mini-study.sh: synth flags changed: removing $OUT/data and $OUT/sweep" >&2
    fi
    rm -rf "$OUT/data" "$OUT/sweep" "$OUT/synth.args"
fi
if [ ! -f "$OUT/data/manifest.json" ]; then
    rm -rf "$OUT/data"
    "$NDT" synth "${SYNTH[@]}" --out "$OUT/data"
    echo "${SYNTH[*]}" >"$OUT/synth.args"
fi
"$NDT" rank docs/mini-study/plan.toml --threads 2 | tee docs/mini-study/ranking.txt
"$NDT" sweep docs/mini-study/plan.toml --jobs 2 --threads 1 "$@"
"$NDT" report docs/mini-study/plan.toml --out docs/mini-study/report > /dev/null
echo "report: docs/mini-study/report/report.md" >&2

#!/usr/bin/env bash
# The mini-study of docs/experiments.md: synthetic RS-like data with four animals, session
# ranking, a sweep over pretraining sizes and orders, and the report (tables + SVG plots).
# Resumable: run it again after an interruption and finished jobs are kept.
#
#   tools/mini-study.sh [--jobs K]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
NDT=target/release/ndt
OUT=out/mini-study
mkdir -p "$OUT"
if [ ! -f "$OUT/data/manifest.json" ]; then
    "$NDT" synth --preset rs --sessions 12 --animals 4 --trials 150..200 --neurons 40..60 \
        --bins 50 --onset-bin 10 --rate 20 --seed 11 --out "$OUT/data"
fi
"$NDT" rank docs/mini-study/plan.toml --threads 2 | tee docs/mini-study/ranking.txt
"$NDT" sweep docs/mini-study/plan.toml --jobs 2 --threads 1 "$@"
"$NDT" report docs/mini-study/plan.toml --out docs/mini-study/report > /dev/null
echo "report: docs/mini-study/report/report.md" >&2

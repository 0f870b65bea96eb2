#!/usr/bin/env bash
# One CPU training step of ndt (the criterion bench `cpu_step`) against the same step of the JAX
# reference under jax.jit (tools/reference/bench_step.py), at the demo and the paper configs, on
# the same machine in one call, both sides pinned to the same CPUs. Prints one Markdown table
# (ms/step, tokens/s, JAX ÷ ndt) and writes it to bench/results/<date>-cpu-<hostname>.md.
#
#   bench/cpu_vs_jax.sh [--threads N] [--configs "demo paper"] [--rounds R] [--python PATH]
#                       [--out FILE]
#
# Threads: N (default: all cores) on both sides. Both run under `taskset -c 0-(N-1)`; ndt also
# gets NDT_THREADS=N (its rayon pool and GEMMs), and XLA sizes its thread pool from the CPUs the
# process may run on, so JAX gets N as well.
# Rounds: each config is measured R times (default 1), the side that goes first alternating; the
# table keeps each side's best round, and lists them all. On a shared machine use R >= 2.
# Python with JAX: --python, else $NDT_PYTHON, else .venv/bin/python (tools/setup.sh --reference).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=""
CONFIGS="demo paper"
ROUNDS=1
OUT=""
PY=${NDT_PYTHON:-}

die() { echo "cpu_vs_jax.sh: $*" >&2; exit 1; }
trap 'echo "cpu_vs_jax.sh: failed at line $LINENO" >&2' ERR

while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS=${2:?--threads needs a value}; shift ;;
        --configs) CONFIGS=${2:?--configs needs a value}; shift ;;
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
        --python) PY=${2:?--python needs a path}; shift ;;
        --out) OUT=${2:?--out needs a path}; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

CORES=$(nproc)
THREADS=${THREADS:-$CORES}
case "$THREADS" in ''|*[!0-9]*|0) die "--threads must be a positive integer" ;; esac
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds must be a positive integer" ;; esac
[ "$THREADS" -le "$CORES" ] || die "--threads $THREADS: this machine has $CORES cores"
for c in $CONFIGS; do
    case "$c" in demo|paper) ;; *) die "unknown config '$c' (demo, paper)" ;; esac
done
if [ -z "$PY" ]; then PY=.venv/bin/python; fi
"$PY" -c "import jax" 2>/dev/null \
    || die "$PY cannot import jax: run 'tools/setup.sh --reference', or pass --python"

PIN=()
if command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c "0-$((THREADS - 1))")
else
    echo "cpu_vs_jax.sh: taskset not found: both sides run unpinned" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ndt-cpu-vs-jax.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

echo "cpu_vs_jax.sh: building the ndt bench ..." >&2
cargo bench --bench cpu_step --no-run >"$WORK/build.log" 2>&1 \
    || { tail -n 20 "$WORK/build.log" >&2; die "cargo bench --no-run failed"; }

run_ndt() { # config round
    echo "cpu_vs_jax.sh: $1: ndt (criterion, $THREADS threads), round $2 ..." >&2
    local l0 home="$WORK/criterion-$2"
    l0=$(load)
    CRITERION_HOME="$home" NDT_THREADS=$THREADS "${PIN[@]}" \
        cargo bench --bench cpu_step -- "^cpu_step/$1/" >"$WORK/ndt-$1-$2.log" 2>&1 \
        || { tail -n 20 "$WORK/ndt-$1-$2.log" >&2; die "$1: cargo bench failed"; }
    local dir="$home/cpu_step/${1}_threads=$THREADS/new"
    [ -s "$dir/estimates.json" ] || die "$1: criterion wrote no $dir/estimates.json"
    rows+=("$1" ndt "$2" "$dir" "$l0" "$(load)")
}

run_jax() { # config round
    echo "cpu_vs_jax.sh: $1: JAX (jax.jit, $THREADS CPUs), round $2 ..." >&2
    local l0
    l0=$(load)
    "${PIN[@]}" "$PY" tools/reference/bench_step.py --config "$1" >"$WORK/jax-$1-$2.json" \
        2>"$WORK/jax-$1-$2.log" \
        || { tail -n 20 "$WORK/jax-$1-$2.log" >&2; die "$1: bench_step.py failed"; }
    rows+=("$1" jax "$2" "$WORK/jax-$1-$2.json" "$l0" "$(load)")
}

# Rounds alternate which side goes first, so a burst of other work is less likely to land on
# one side only.
rows=()
for c in $CONFIGS; do
    for r in $(seq 1 "$ROUNDS"); do
        if [ $((r % 2)) = 1 ]; then run_ndt "$c" "$r"; run_jax "$c" "$r"
        else run_jax "$c" "$r"; run_ndt "$c" "$r"; fi
    done
done

DATE=$(date -u +%Y-%m-%d)
HOST=$(hostname -s 2>/dev/null || hostname)
if [ -z "$OUT" ]; then
    mkdir -p bench/results
    OUT=bench/results/$DATE-cpu-$HOST.md
    n=2
    while [ -e "$OUT" ]; do OUT=bench/results/$DATE-cpu-$HOST-$n.md; n=$((n + 1)); done
fi
COMMAND="bench/cpu_vs_jax.sh --threads $THREADS --configs \"$CONFIGS\" --rounds $ROUNDS"
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
AVX512=$(grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes || echo no)
RUSTC=$(rustc --version)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
DIRTY=$({ git status --porcelain --untracked-files=no -- src benches Cargo.toml 2>/dev/null || true; } \
    | wc -l)

"$PY" - "$OUT" "$COMMAND" "$DATE" "$HOST" "$CPU_MODEL" "$CORES" "$AVX512" "$THREADS" \
    "$RUSTC" "$COMMIT" "$DIRTY" "${rows[@]}" <<'EOF'
import json, os, sys

out, command, date, host, cpu, cores, avx512, threads, rustc, commit, dirty = sys.argv[1:12]
rest = sys.argv[12:]
tokens = 16 * 150  # B·T of both configs

# One run: (median ms, min ms, load before → after); several rounds per (config, side).
runs, jax_version = {}, "?"
for i in range(0, len(rest), 6):
    config, side, rnd, path, load0, load1 = rest[i:i + 6]
    if side == "ndt":
        with open(os.path.join(path, "estimates.json")) as f:
            med = json.load(f)["median"]["point_estimate"] / 1e6
        with open(os.path.join(path, "sample.json")) as f:
            sample = json.load(f)
        best = min(t / n for t, n in zip(sample["times"], sample["iters"])) / 1e6
    else:
        with open(path) as f:
            j = json.loads(f.read().strip().splitlines()[-1])
        med, best = j["step_s_median"] * 1e3, j["step_s_min"] * 1e3
        jax_version = j["jax"]
    runs.setdefault((config, side), []).append((med, best, f"{load0}→{load1}"))


def summary(config, side):
    """Best round median, overall min, and every round's median with its load."""
    rs = runs[(config, side)]
    return (min(r[0] for r in rs), min(r[1] for r in rs),
            ", ".join(f"{r[0]:.0f} ({r[2]})" for r in rs))


t = int(threads)
lines = [
    f"# ndt CPU step against JAX ({date}, {host})",
    "",
    f"Command: `{command}`",
    "",
    f"Machine: {cpu}, {cores} cores, AVX-512: {avx512}. Threads: {threads} on both sides "
    f"(`taskset -c 0-{t - 1}`; ndt `NDT_THREADS={threads}`, XLA sizes its pool from the "
    "allowed CPUs).",
    f"ndt {commit}{' with uncommitted changes' if dirty != '0' else ''}, {rustc}; "
    f"JAX {jax_version} (jax.jit).",
    "",
    "One training step: forward with dropout 0.2 (forward scheme, causal), backward, grad-norm "
    "clip 1.0, AdamW; f32, B 16, T 150. demo: D 128, 2 blocks, 4 heads, FFN 256, D_tok 128, "
    "N 64. paper: D 512, 5 blocks, 8 heads, FFN 1024, D_tok 668, N 1000. ndt: criterion "
    "(`cargo bench --bench cpu_step`), median of its samples, min = fastest sample mean; JAX: "
    "`tools/reference/bench_step.py`, median and min of its timed steps.",
    "",
    "| config | side | ms/step (median) | ms/step (min) | tokens/s | JAX ÷ ndt (median) "
    "| JAX ÷ ndt (min) | rounds: median (load avg before→after) |",
    "|---|---|---|---|---|---|---|---|",
]
for config in dict.fromkeys(k[0] for k in runs):
    for side in ("ndt", "jax"):
        if (config, side) not in runs:
            continue
        med, best, detail = summary(config, side)
        r_med = r_min = ""
        if side == "ndt" and (config, "jax") in runs:
            jmed, jbest, _ = summary(config, "jax")
            r_med, r_min = f"{jmed / med:.2f}", f"{jbest / best:.2f}"
        lines.append(f"| {config} | {side} | {med:.1f} | {best:.1f} | {tokens / med * 1e3:,.0f} "
                     f"| {r_med} | {r_min} | {detail} |")
lines += [
    "",
    "JAX ÷ ndt above 1: ndt's step is that many times faster. With several rounds the median "
    "column is the best round's. The load average counts the benchmark itself (about "
    f"{threads} while a side runs); more than that means other work shared the machine.",
]
text = "\n".join(lines) + "\n"
with open(out, "w") as f:
    f.write(text)
print(text)
EOF
echo "cpu_vs_jax.sh: wrote $OUT" >&2

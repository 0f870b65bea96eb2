#!/usr/bin/env bash
# Models per device on the ranking stage: the frozen-core finetunes (and their val evaluations)
# of the ranking of two held-out sessions over a pool of 16 single-session models, at the
# mini-study's model size, run
#   - one at a time on all --threads threads (`--models-per-device 1`),
#   - K side by side for each K of --ks (`--models-per-device K`, threads split between them),
#   - without fusion as two processes of one thread each, one held-out session each (what
#     `ndt sweep --jobs 2 --threads 1` does with two points that need two rankings),
# all in one run on the same single-session models (trained once, first, and copied into each
# variant's results folder), printing per variant: wall time, jobs, the summed step time, jobs
# per hour, and whether its rankings equal K = 1's to the last bit.
#
#   bench/per-device.sh [--out FILE.md] [--threads N] [--ks "1 2 4 8"] [--work DIR] [--pool N]
#   NDT=target/release/ndt bench/per-device.sh --out bench/results/DATE-per-device-cpu.md
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="bench/per-device.sh $*"
OUT=""
THREADS=2
KS="1 2 4 8"
WORK=""
POOL=16
die() { echo "per-device.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=${2:?--out needs a path}; shift ;;
        --threads) THREADS=${2:?--threads needs a number}; shift ;;
        --ks) KS=${2:?--ks needs a list}; shift ;;
        --work) WORK=${2:?--work needs a path}; shift ;;
        --pool) POOL=${2:?--pool needs a number}; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
NDT=${NDT:-target/release/ndt}
[ -x "$NDT" ] || die "not an executable: $NDT (cargo build --release, or set NDT)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/ndt-per-device.XXXXXX")
mkdir -p "$WORK"

# Data: POOL + 2 sessions of 150 neurons, 50 bins, 160 trials (the mini-study's sizes).
DATA=$WORK/data
if [ ! -f "$DATA/manifest.json" ]; then
    "$NDT" synth --preset rs --out "$DATA" --sessions $((POOL + 2)) --animals 4 \
        --animal-layout line --animal-strength 2.5 --trials 160 --neurons 150 --bins 50 \
        --onset-bin 10 --rate 20 --seed 11 >/dev/null
fi
ids=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(' '.join(s['id'] for s in m['sessions']))" "$DATA/manifest.json")
read -r -a IDS <<<"$ids"
H1=${IDS[-2]}; H2=${IDS[-1]}

# $1 results folder, $2 held-out list (TOML), $3 rank epochs.
plan() {
    cat <<TOML
dataset = "$DATA"
results = "$1"
heldout = $2
sizes = [1]
orders = ["ranked"]
seeds = [42]
device = "cpu"
[model]
preset = "small"
d_model = 64
d_tok = 64
d_embed_hidden = 128
n_layers = 2
n_heads = 4
d_ff = 128
[single]
epochs = 12
lr = 5e-3
schemes = ["forward"]
[rank]
epochs = ${3}
lr = 5e-3
mode = "frozen-core"
schemes = ["forward"]
TOML
}

# The single-session models, once (their jobs do not depend on the rank stage).
BASE=$WORK/base
if [ ! -d "$BASE/jobs" ]; then
    plan "$BASE" "[\"$H1\", \"$H2\"]" 1 >"$WORK/base.toml"
    "$NDT" rank "$WORK/base.toml" --threads "$THREADS" >/dev/null 2>"$WORK/base.log"
    rm -rf "$BASE"/jobs/rankft-* "$BASE/rankings"
fi

# A variant's results folder holding the single-session models only.
fresh() {
    rm -rf "$1"
    mkdir -p "$1/jobs"
    cp -r "$BASE"/jobs/pretrain-* "$1/jobs/"
    # The pretrain results name their checkpoint by absolute path: point them at this copy.
    find "$1/jobs" -name result.json -exec sed -i "s#$BASE/#$1/#g" {} +
}

# Summed step_s of the rankft jobs' logs in $1, and their count.
sums() {
    python3 - "$1" <<'PY'
import glob, json, os, sys
step = 0.0
jobs = 0
for d in glob.glob(os.path.join(sys.argv[1], "jobs", "rankft-*")):
    if not os.path.exists(os.path.join(d, "result.json")):
        continue
    jobs += 1
    for line in open(os.path.join(d, "work", "run", "log.jsonl")):
        step += json.loads(line).get("step_s", 0.0)
print(f"{step:.3f} {jobs}")
PY
}

# The rankings of $1 as "session score" lines (exact JSON numbers).
rankings() {
    python3 - "$1" <<'PY'
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "rankings", "*.json"))):
    d = json.load(open(f))
    for r in d["ranking"]:
        print(d["heldout"], r["session"], repr(r["forward_bps_val"]))
PY
}

now() { date +%s.%N; }
: >"$WORK/rows.txt"
EPOCHS=8
for k in $KS; do
    res=$WORK/k$k
    fresh "$res"
    plan "$res" "[\"$H1\", \"$H2\"]" $EPOCHS >"$WORK/k$k.toml"
    t0=$(now)
    "$NDT" rank "$WORK/k$k.toml" --threads "$THREADS" --models-per-device "$k" >/dev/null \
        2>"$WORK/k$k.log"
    t1=$(now)
    rankings "$res" >"$WORK/k$k.rank"
    echo "K=$k $(python3 -c "print(f'{$t1-$t0:.3f}')") $(sums "$res") $THREADS" \
        | tee -a "$WORK/rows.txt" >&2
done
# Two processes, one thread each, one held-out session each, into one results folder.
res=$WORK/procs
fresh "$res"
plan "$res" "[\"$H1\", \"$H2\"]" $EPOCHS >"$WORK/procs.toml"
t0=$(now)
"$NDT" rank "$WORK/procs.toml" --heldout "$H1" --threads 1 >/dev/null 2>"$WORK/procs-1.log" &
p1=$!
"$NDT" rank "$WORK/procs.toml" --heldout "$H2" --threads 1 >/dev/null 2>"$WORK/procs-2.log" &
p2=$!
wait $p1 && wait $p2 || die "a ranking process failed (see $WORK/procs-*.log)"
t1=$(now)
rankings "$res" >"$WORK/procs.rank"
echo "2-processes $(python3 -c "print(f'{$t1-$t0:.3f}')") $(sums "$res") 1+1" \
    | tee -a "$WORK/rows.txt" >&2

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
first=$(echo $KS | cut -d' ' -f1)
python3 - "$WORK" "$CMDLINE" "$LOAD0 -> $LOAD1" "$first" "$POOL" <<'PY' | tee "${OUT:-/dev/null}"
import datetime, os, platform, subprocess, sys
work, cmd, load, first, pool = sys.argv[1:6]
model = "unknown CPU"
try:
    for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if l.startswith("Model name:"):
            model = l.split(":", 1)[1].strip()
except OSError:
    pass
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
ref = open(os.path.join(work, f"k{first}.rank")).read()
print(f"# Models per device, ranking stage, {datetime.date.today()}\n")
print(f"Machine: {model}, {cores} cores ({platform.machine()}). Command: `{cmd}`. Work folder: "
      f"`{work}`. Load average (1, 5, 15 min) before -> after: {load}.\n")
print(f"The ranking of 2 held-out sessions over a pool of {pool} single-session models: "
      f"{2 * int(pool)} frozen-core finetunes of 8 epochs (mini-study model: D 64, 2 blocks, "
      "4 heads, FFN 128; 128 train trials, batch 16) and their val evaluations.\n")
print("| variant | threads | jobs | wall s | Σ step s | jobs / hour | vs K=1 | rankings equal K=1's |")
print("|---|---|---|---|---|---|---|---|")
rows = [l.split() for l in open(os.path.join(work, "rows.txt")) if l.strip()]
base = None
for name, wall, step, jobs, threads in rows:
    wall, step, jobs = float(wall), float(step), int(jobs)
    jph = jobs / wall * 3600
    if base is None:
        base = jph
    tag = name[2:] if name.startswith("K=") else "procs"
    same = open(os.path.join(work, f"k{tag}.rank" if tag != "procs" else "procs.rank")).read() == ref
    print(f"| {name} | {threads} | {jobs} | {wall:.2f} | {step:.2f} | {jph:.0f} | "
          f"{jph / base:.2f}x | {'yes' if same else 'NO'} |")
print("\nwall s: the `ndt rank` command(s), the single-session models already trained; Σ step s: "
      "the logged `step_s` of the finetunes (training steps only; side by side they overlap, "
      "so it can exceed the wall time); 2-processes: two `ndt rank` processes of one thread each "
      "at once, one held-out session each, no fusion.")
PY

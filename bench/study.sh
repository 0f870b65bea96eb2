#!/usr/bin/env bash
# The study at the speed of its steps: a reduced SPEC §4 job mix (`ndt rank`, then `ndt sweep`)
# on synthetic data at the mini-study's model size, run by one or more ndt builds on the same
# data, and per build and stage: wall time, the summed epoch and step times the runs logged, their
# ratio (the overhead), bytes written, the results' size on disk and jobs per hour.
#
#   bench/study.sh [--out FILE.md] [--threads N] [--work DIR] [--no-paper]
#                  [--paper-only "[LABEL=]NDT[ FLAGS...]"] [LABEL=]NDT[ FLAGS...] ...
#   NDT=target/release/ndt bench/study.sh
#
# Each argument is one build: `old=/tmp/ndt-old/target/release/ndt` or
# `every-epoch=target/release/ndt --checkpoint-every 0` (FLAGS go to `ndt rank` and `ndt sweep`).
# Without one, $NDT, else target/release/ndt. The Markdown table goes to stdout and, with --out,
# to FILE.md (with the machine, the date and this command line). --no-paper skips the last stage,
# one `ndt train --config paper` of 4 epochs; --paper-only adds a build to that stage alone.
# See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="bench/study.sh $*"
OUT=""
PAPER=1
THREADS=2
WORK=""
BUILDS=()
PONLY=()
die() { echo "study.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=${2:?--out needs a path}; shift ;;
        --threads) THREADS=${2:?--threads needs a number}; shift ;;
        --work) WORK=${2:?--work needs a path}; shift ;;
        --no-paper) PAPER=0 ;;
        --paper-only) PONLY+=("${2:?--paper-only needs a build}"); shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) BUILDS+=("$1") ;;
    esac
    shift
done
if [ ${#BUILDS[@]} -eq 0 ]; then
    BUILDS=("${NDT:-target/release/ndt}")
fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/ndt-study.XXXXXX")
mkdir -p "$WORK"
PY=python3

first_bin=""
for b in "${BUILDS[@]}" "${PONLY[@]}"; do
    spec=$b
    if [[ "$b" =~ ^[A-Za-z0-9_.-]+= ]]; then spec=${b#*=}; fi
    bin=${spec%% *}
    [ -x "$bin" ] || die "not an executable: $bin"
    [ -n "$first_bin" ] || first_bin=$bin
done

# Data: 8 sessions of 150 neurons, 50 bins, 160 trials (the mini-study's trials, neurons and
# bins; half its sessions). Made once, by the first build.
DATA=$WORK/data
if [ ! -f "$DATA/manifest.json" ]; then
    "$first_bin" synth --preset rs --out "$DATA" --sessions 8 --animals 4 --animal-layout line \
        --animal-strength 2.5 --trials 160 --neurons 150 --bins 50 --onset-bin 10 --rate 20 \
        --seed 11 >/dev/null
fi

PDATA=$WORK/paper-data
if [ "$PAPER" = 1 ] && [ ! -f "$PDATA/manifest.json" ]; then
    "$first_bin" synth --preset rs --out "$PDATA" --sessions 1 --trials 200 --neurons 1000 \
        --bins 150 --onset-bin 10 --rate 10 --seed 12 >/dev/null
fi

# The mix: the ranking of two held-out sessions over a pool of six single-session models, then
# sizes 1, 3 and all x random and ranked orders, the baselines, finetunes and evaluation. The
# mini-study's model (D 64, 2 blocks, 4 heads, FFN 128) and learning rate; fewer epochs.
plan() {
    cat <<TOML
dataset = "$DATA"
results = "$1"
heldout_last = 2
sizes = [1, 3, "all"]
orders = ["random", "ranked"]
shuffles = 1
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
[pretrain]
epochs = 12
lr = 5e-3
schemes = ["forward"]
[finetune]
epochs = 12
lr = 5e-3
mode = "frozen-core"
schemes = ["forward"]
[single]
epochs = 12
lr = 5e-3
schemes = ["forward"]
[rank]
epochs = 8
lr = 5e-3
mode = "frozen-core"
schemes = ["forward"]
TOML
}

# Runs "$@" under a shell whose /proc/PID/io then holds the counts of the command (the kernel
# adds a reaped child's I/O to its parent's). Prints "wall_s rchar wchar write_bytes".
measured() {
    bash -c '
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>>"$LOG" || { echo "FAILED: $*" >&2; exit 1; }
        t1=$(date +%s.%N)
        awk -v t0="$t0" -v t1="$t1" "/^wchar/{w=\$2} /^write_bytes/{b=\$2} END{printf \"%.3f %s %s\n\", t1-t0, w, b}" /proc/$$/io
    ' measured "$@"
}

# Summed `time_s` and `step_s` of the log lines of the given job folders, the evaluation time
# (a job's result.json written after its run's last log line) and the job count.
sums() {
    $PY - "$@" <<'PY'
import json, os, sys
epoch = step = evals = 0.0
have_step = True
jobs = 0
for d in sys.argv[1:]:
    d = d.rstrip("/")
    res = os.path.join(d, "result.json")
    log = os.path.join(d, "work", "run", "log.jsonl")
    if os.path.exists(os.path.join(d, "log.jsonl")):
        log = os.path.join(d, "log.jsonl")  # a plain run folder
    elif not os.path.exists(res):
        continue
    jobs += 1
    if not os.path.exists(log):
        continue
    for line in open(log):
        try:
            l = json.loads(line)
        except ValueError:
            continue
        epoch += l.get("time_s", 0.0)
        if "step_s" in l:
            step += l["step_s"]
        else:
            have_step = False
    if os.path.basename(d).startswith("eval"):
        evals += max(0.0, os.path.getmtime(res) - os.path.getmtime(log))
print(f"{epoch:.3f} {step if have_step else 'nan'} {evals:.3f} {jobs}")
PY
}

: >"$WORK/rows.txt"
ALL=("${BUILDS[@]}")
for b in "${PONLY[@]}"; do ALL+=("paper-only:$b"); done
for b in "${ALL[@]}"; do
    only_paper=0
    if [ "${b#paper-only:}" != "$b" ]; then only_paper=1; b=${b#paper-only:}; fi
    if [[ "$b" =~ ^[A-Za-z0-9_.-]+= ]]; then
        label=${b%%=*}; spec=${b#*=}
    else
        label=$(basename "${b%% *}"); spec=$b
    fi
    read -r -a argv <<<"$spec"
    bin=${argv[0]}; flags=("${argv[@]:1}")
    res=$WORK/results-$label
    rm -rf "$res"
    plan "$res" >"$WORK/plan-$label.toml"
    export LOG=$WORK/stderr-$label.log
    : >"$LOG"
    for stage in rank sweep; do
        [ "$only_paper" = 0 ] || continue
        before=$(ls -d "$res"/jobs/*/ 2>/dev/null | sort || true)
        if [ "$stage" = rank ]; then
            m=$(measured "$bin" rank "$WORK/plan-$label.toml" --threads "$THREADS" "${flags[@]}")
        else
            m=$(measured "$bin" sweep "$WORK/plan-$label.toml" --threads "$THREADS" "${flags[@]}")
        fi
        after=$(ls -d "$res"/jobs/*/ 2>/dev/null | sort || true)
        new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
        # shellcheck disable=SC2086
        s=$(sums $new)
        size=$(du -sb "$res" | cut -f1)
        echo "$label $stage $m $s $size" | tee -a "$WORK/rows.txt" >&2
    done
    if [ "$PAPER" = 1 ]; then
        # One `ndt train` at the paper's config (D 512, 5 blocks; one session of 1000 neurons,
        # 150 bins), 4 epochs: the job size at which a checkpoint write costs most.
        run=$WORK/paper-$label
        rm -rf "$run"
        m=$(measured "$bin" train "$PDATA" --out "$run" --config paper --epochs 4 \
            --schemes forward --device cpu --threads "$THREADS" "${flags[@]}")
        s=$(sums "$run")
        size=$(du -sb "$run" | cut -f1)
        echo "$label paper-train $m $s $size" | tee -a "$WORK/rows.txt" >&2
    fi
done

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
$PY - "$WORK" "$CMDLINE" "$THREADS" "$LOAD0 -> $LOAD1" "$WORK/rows.txt" <<'PY' | tee "${OUT:-/dev/null}"
import math, platform, subprocess, sys, datetime
work, cmd, threads, load = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [l for l in open(sys.argv[5]).read().splitlines() if l.strip()]
model = "unknown CPU"
try:
    for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if l.startswith("Model name:"):
            model = l.split(":", 1)[1].strip()
except OSError:
    pass
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"# Study benchmark, {datetime.date.today()}\n")
print(f"Machine: {model}, {cores} cores ({platform.machine()}), --threads {threads}. "
      f"Command: `{cmd}`. Work folder: `{work}`. Load average (1, 5, 15 min) before -> after: "
      f"{load} (a shared machine: other work ran alongside).\n")
print("| build | stage | jobs | wall s | Σ epoch s | Σ step s | eval s | wall ÷ Σ step | wall ÷ (Σ epoch + eval) | MB written | MB written / job | results MB | jobs / hour |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    label, stage, wall, wchar, wbytes, epoch, step, evals, jobs, size = r.split()
    wall, epoch, evals, jobs = float(wall), float(epoch), float(evals), int(jobs)
    step = float(step)
    mb = int(wchar) / 1e6
    ratio_step = f"{wall / step:.2f}" if step == step and step > 0 else "–"
    step_txt = f"{step:.2f}" if step == step else "– (not logged)"
    ratio_all = f"{wall / (epoch + evals):.2f}" if epoch + evals > 0 else "–"
    per_job = f"{mb / jobs:.2f}" if jobs else "–"
    jph = f"{jobs / wall * 3600:.0f}" if wall > 0 else "–"
    print(f"| {label} | {stage} | {jobs} | {wall:.2f} | {epoch:.2f} | {step_txt} | {evals:.2f} | "
          f"{ratio_step} | {ratio_all} | {mb:.1f} | {per_job} | {int(size) / 1e6:.1f} | {jph} |")
print("\nΣ epoch s: the runs' logged `time_s` (training steps and validation); Σ step s: the "
      "logged `step_s` (training steps only; builds whose log lacks it show –); eval s: for each "
      "evaluation job, its result.json time minus its run's last log write; MB written: `wchar` "
      "of /proc/PID/io for the stage's process and its children (bytes passed to write calls).")
PY

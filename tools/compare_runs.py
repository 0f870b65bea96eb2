#!/usr/bin/env python3
"""Two training runs of ndt side by side: the per-epoch train and validation losses of their
log.jsonl files, the relative difference of each, and an exit status of 1 when the largest
relative difference passes --tol (or the runs logged different epochs).

    python3 tools/compare_runs.py RUN_A RUN_B [--tol 1e-3]

RUN_A and RUN_B are `ndt train --out` folders (or their log.jsonl files). Used by
tools/gpu-validate.sh to check that a GPU run tracks the CPU run of the same config and seed.
"""
import argparse
import json
import math
import os
import sys


def read_log(path):
    if os.path.isdir(path):
        path = os.path.join(path, "log.jsonl")
    rows = {}
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                except ValueError as e:
                    sys.exit(f"compare_runs.py: {path}:{n}: not JSON ({e})")
                if "epoch" in r and "train_loss" in r:
                    rows[r["epoch"]] = r
    except OSError as e:
        sys.exit(f"compare_runs.py: {path}: {e.strerror}")
    if not rows:
        sys.exit(f"compare_runs.py: {path}: no epoch lines")
    return path, rows


def rel(a, b):
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="largest relative difference of any logged loss (default 1e-3)")
    args = ap.parse_args()
    pa, a = read_log(args.run_a)
    pb, b = read_log(args.run_b)
    print(f"A: {pa}\nB: {pb}")
    if sorted(a) != sorted(b):
        print(f"epochs differ: A {sorted(a)}, B {sorted(b)}")
        return 1
    print("| epoch | step | train A | train B | rel | val A | val B | rel |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for e in sorted(a):
        ra, rb = a[e], b[e]
        dt = rel(ra["train_loss"], rb["train_loss"])
        dv = rel(ra.get("val_loss"), rb.get("val_loss"))
        worst = max(worst, dt, dv)
        print(f"| {e} | {ra.get('step', '')} | {ra['train_loss']:.6f} | {rb['train_loss']:.6f} "
              f"| {dt:.2e} | {ra.get('val_loss') or float('nan'):.6f} "
              f"| {rb.get('val_loss') or float('nan'):.6f} | {dv:.2e} |")
    ok = worst <= args.tol
    print(f"largest relative difference {worst:.3e} (tolerance {args.tol:g}): "
          f"{'ok' if ok else 'TOO LARGE'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

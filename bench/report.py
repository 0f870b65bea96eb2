#!/usr/bin/env python3
"""Joins `ndt bench --json` and `torch_ndt.py --json` results into one Markdown table (and a JSON
record), with ndt's speed ratio to every PyTorch mode and the FLOP floor of the training step.

  report.py --pair 16 ndt-16.json torch-16.json --pair 64 ndt-64.json torch-64.json \
            --matmul matmul.json --device NAME --date DATE --command CMD --out bench/results/BASE

Writes BASE.md and BASE.json (when --out is given) and prints the Markdown. Plain Python: no torch.

FLOPs of one training step (multiply-adds count 2; elementwise work, LayerNorm, softmax, the loss
and the optimizer are left out; backward counted as twice the forward):
  forward = B * [ T * 2 * (N*Dtok + Dtok*De + De*D)                  stitcher in, embedding MLP
                + L * S * 2 * (3*D*D + D*D + 2*D*F)                   qkv, out, mlp (S = T + 2)
                + L * 2 * 2 * P * D                                    q.k^T and p.v over all heads
                + T * 2 * D * N ]                                      stitcher out
  P = S*(S+1)/2 query-key pairs when causal (forward scheme), S*S otherwise
  step = 3 * forward
"""

import argparse
import json
import math
import os
import sys


class UserError(Exception):
    pass


def step_flops(cfg, batch, causal):
    """Analytic FLOPs of one training step (see the module doc)."""
    t = cfg["n_bins"]
    s = t + 2
    d, dt, f, layers = cfg["d_model"], cfg["d_tok"], cfg["d_ff"], cfg["n_layers"]
    de = cfg.get("d_embed_hidden") or 2 * dt
    n = next(iter(cfg["sessions"].values()))  # the timed batch's session
    pairs = s * (s + 1) / 2 if causal else s * s
    fwd = batch * (
        t * 2 * (n * dt + dt * de + de * d)
        + layers * s * 2 * (3 * d * d + d * d + 2 * d * f)
        + layers * 2 * 2 * pairs * d
        + t * 2 * d * n
    )
    return 3 * fwd


def load_json(path, what):
    try:
        with open(path) as fh:
            return json.load(fh)
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} results: {e.strerror}") from e
    except ValueError as e:
        raise UserError(f"{path}: the {what} results are not JSON: {e}") from e


def find_key(obj, names):
    """First value under one of `names`, searching dicts breadth-first (top level first)."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if isinstance(cur, dict):
            for k in names:
                if k in cur and isinstance(cur[k], (int, float)) and not isinstance(cur[k], bool):
                    return float(cur[k])
            queue.extend(v for v in cur.values() if isinstance(v, (dict, list)))
        elif isinstance(cur, list):
            queue.extend(v for v in cur if isinstance(v, (dict, list)))
    return None


def ndt_numbers(obj, tokens):
    """ms/step, tokens/s and peak bytes from ndt's JSON; the train-step section when present."""
    for key in ("train_step", "train", "step"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = {**obj, **obj[key]}
            break
    ms = find_key(obj, ["ms_per_step", "median_ms", "step_ms", "ms_median", "ms"])
    if ms is None:
        s = find_key(obj, ["s_per_step", "seconds_per_step"])
        ms = s * 1e3 if s is not None else None
    tps = find_key(obj, ["tokens_per_s", "tokens_per_sec", "tok_per_s"])
    if tps is None and ms:
        tps = tokens / (ms / 1e3)
    peak = find_key(obj, ["peak_memory_bytes", "peak_mem_bytes", "peak_bytes", "peak_device_bytes"])
    if peak is None:
        mib = find_key(obj, ["peak_mem_mib", "peak_mib", "peak_memory_mib"])
        peak = mib * 2**20 if mib is not None else None
    return ms, tps, peak


def config_mismatch(ndt_obj, cfg, batch):
    """Differences between the config ndt reports (if any) and the one PyTorch timed."""
    out = []
    for key in ("d_model", "d_tok", "n_layers", "n_heads", "d_ff", "n_bins"):
        got = find_key(ndt_obj, [key])
        if got is not None and int(got) != cfg[key]:
            out.append(f"{key} ndt {int(got)} vs torch {cfg[key]}")
    got = find_key(ndt_obj, ["batch", "batch_size"])
    if got is not None and int(got) != batch:
        out.append(f"batch ndt {int(got)} vs torch {batch}")
    return out


def fmt(v, spec, none="n/a"):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def build(args):
    matmul = load_json(args.matmul, "matmul") if args.matmul else None
    rate = matmul.get("flops_per_s") if matmul else None
    runs, lines, warnings = [], [], []
    torch_version = None
    for b_text, ndt_path, torch_path in args.pair:
        batch = int(b_text)
        tr = load_json(torch_path, "PyTorch")
        cfg = tr["config"]
        torch_version = tr.get("torch", torch_version)
        tokens = batch * cfg["n_bins"]
        causal = tr.get("scheme", "forward") == "forward"
        flops = step_flops(cfg, batch, causal)
        ndt_obj, ndt_err = None, None
        if ndt_path == "-" or not os.path.exists(ndt_path):
            ndt_err = "no result (ndt bench missing or failed: see compare.sh output)"
        else:
            try:
                ndt_obj = load_json(ndt_path, "ndt")
            except UserError as e:
                ndt_err = str(e)
        rows = []
        ndt_ms = None
        if ndt_obj is not None:
            ndt_ms, tps, peak = ndt_numbers(ndt_obj, tokens)
            if ndt_ms is None:
                ndt_err = f"{ndt_path}: no ms_per_step in ndt's JSON"
            else:
                rows.append(("ndt", ndt_ms, tps, peak))
            warnings += [f"B={batch}: {m}" for m in config_mismatch(ndt_obj, cfg, batch)]
        if ndt_err:
            warnings.append(f"B={batch}: ndt: {ndt_err}")
        for m in tr["modes"]:
            if "error" in m:
                warnings.append(f"B={batch}: torch {m['mode']}: {m['error']}")
                rows.append((f"torch {m['mode']}", None, None, None))
            else:
                rows.append((f"torch {m['mode']}", m["ms_per_step"], m["tokens_per_s"],
                             m.get("peak_mem_bytes")))
        floor_ms = flops / rate * 1e3 if rate else None
        runs.append({
            "batch": batch, "tokens_per_step": tokens, "flops_per_step": flops,
            "floor_ms": floor_ms, "ndt": ndt_obj, "ndt_error": ndt_err, "torch": tr,
            "rows": [
                {"side": r[0], "ms_per_step": r[1], "tokens_per_s": r[2], "peak_mem_bytes": r[3]}
                for r in rows
            ],
        })
        lines.append(f"### B = {batch} ({tokens} tokens/step, {flops / 1e9:.4g} GFLOP/step, "
                     f"FLOP floor {fmt(floor_ms, '.3f')} ms)")
        lines.append("")
        lines.append("| side | ms/step | tokens/s | peak mem (MiB) | ndt speed-up | TFLOP/s "
                     "| of bf16 matmul rate |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for side, ms, tps, peak in rows:
            speed = None
            if ms and ndt_ms:
                speed = ms / ndt_ms
            tflops = flops / (ms / 1e3) / 1e12 if ms else None
            frac = tflops * 1e12 / rate if (tflops and rate) else None
            pct = fmt(frac * 100, ".1f") + " %" if frac else "n/a"
            lines.append(
                f"| {side} | {fmt(ms, '.3f')} | {fmt(tps, ',.0f')} "
                f"| {fmt(peak / 2**20 if peak is not None else None, ',.0f')} "
                f"| {fmt(speed, '.2f') + 'x' if speed else '—'} | {fmt(tflops, '.2f')} "
                f"| {pct} |"
            )
        lines.append("")
    cfg0 = runs[0]["torch"]["config"] if runs else {}
    n0 = next(iter(cfg0.get("sessions", {"": None}).values()))
    tr0 = runs[0]["torch"] if runs else {}
    head = [
        f"# ndt vs PyTorch NDT: training step, {args.device}",
        "",
        f"- date: {args.date}",
        f"- device: {args.device}",
        f"- command: `{args.command}`",
        f"- PyTorch {torch_version}; config d_model {cfg0.get('d_model')}, layers "
        f"{cfg0.get('n_layers')}, heads {cfg0.get('n_heads')}, d_ff {cfg0.get('d_ff')}, d_tok "
        f"{cfg0.get('d_tok')}, T {cfg0.get('n_bins')}, N {n0}; "
        f"scheme {tr0.get('scheme')}, dropout {tr0.get('dropout')}; "
        f"median of {tr0.get('steps')} steps after {tr0.get('warmup')} warm-up",
        f"- bf16 matmul rate: {fmt(rate / 1e12 if rate else None, '.1f')} TFLOP/s "
        f"({matmul.get('matmul_n') if matmul else '-'}^3 torch.matmul)",
        "- ndt speed-up = PyTorch ms/step / ndt ms/step (above 1: ndt is faster); "
        "TFLOP/s = analytic step FLOPs / step time; FLOP floor = step FLOPs / bf16 matmul rate",
        "",
    ]
    if warnings:
        head += ["Warnings:", ""] + [f"- {w}" for w in warnings] + [""]
    md = "\n".join(head + lines)
    record = {
        "date": args.date, "device": args.device, "command": args.command,
        "matmul": matmul, "warnings": warnings, "runs": runs,
    }
    return md, record, warnings


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=3, action="append", required=True,
                   metavar=("B", "NDT_JSON", "TORCH_JSON"), help="NDT_JSON '-' when ndt failed")
    p.add_argument("--matmul", default=None, help="torch_ndt.py --matmul-rate JSON")
    p.add_argument("--device", default="unknown device")
    p.add_argument("--date", default="")
    p.add_argument("--command", default="")
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 (after writing) when a side or mode has no result")
    args = p.parse_args(argv)
    try:
        md, record, warnings = build(args)
    except (UserError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out:
        write_atomic(args.out + ".md", md + "\n")
        write_atomic(args.out + ".json", json.dumps(record, indent=2) + "\n")
    print(md)
    incomplete = any(r["ndt_error"] for r in record["runs"]) or any(
        "error" in m for r in record["runs"] for m in r["torch"]["modes"]
    )
    return 1 if (args.strict and incomplete) else 0


if __name__ == "__main__":
    sys.exit(main())

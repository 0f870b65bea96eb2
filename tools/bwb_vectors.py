#!/usr/bin/env python3
"""ndt's Poisson D² and bits per spike against IBL BrainWideBench's own scorers (ibl-bwb-eval 0.1.0).

Two modes.

  .venv/bin/python tools/bwb_vectors.py
      Writes fixtures/bwb_vectors.json: seeded log-rates and counts, and what
      `ibl_bwb_eval.metrics.PoissonD2Score` (per-unit mean D²) and `ibl_bwb_eval.metrics.BPS`
      (pooled bits per spike over units with spikes) return for them. Each scorer runs twice:
        - in float64: torch's default dtype float64 (the scorer's constants, e.g. the ln 2 of
          `BPS.compute`, which is float32 under the stock default: a 2.7e-9 relative error), the
          metric states set to float64 (`Metric.set_dtype`) and the counts handed over as a
          tensor whose `.float()` keeps float64 (its `update` casts them with `.float()`, which
          would round `x·ln x` to float32), so that the scorer's own formulas run in f64 end to
          end; these values are what ndt must match to 1e-9;
        - stock, as `ibl_bwb_eval.scoring.ts2.score_file` runs it (float32 predictions, float32
          states): recorded for reference.
      Also the pooled D² (ndt's: one minus the sum of the units' model deviances over the sum of
      their null deviances) computed from the float64 scorer's accumulated states.

  .venv/bin/python tools/bwb_vectors.py --check PRED_DIR GT_DIR EVAL_JSON
      Checks prediction files that `ndt eval --bwb PRED_DIR --bwb-ground-truth GT_DIR` wrote:
      the layout (`label/task/recording_id/seed_{s}.safetensors`), the metadata keys, the array
      names, dtypes and shapes; then scores them with `ibl_bwb_eval.scoring.ts2.score_dir` (the
      benchmark's scorer, float32) and compares its D² and bps with the values in EVAL_JSON (the
      `--out` of the same `ndt eval`): `tasks[..].d2` and `tasks[..].pooled_bwb`, to 2e-5.
      Exits 1 on any mismatch.

Needs ibl-bwb-eval and its scorers' dependencies (torch, torchmetrics, safetensors, rich,
scikit-learn): tools/setup.sh installs them.
"""
import json
import math
import os
import sys

import numpy as np
import torch

from ibl_bwb_eval.metrics import BPS, PoissonD2Score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"ts2-co_smoothing": "co-smooth", "ts2-forecasting": "forward"}


class _KeepF64(torch.Tensor):
    """Counts whose `.float()` stays float64 (see the module docstring)."""

    def float(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def score_f64(log_rates, counts):
    # torch's default dtype float64 for the scorers' own constants (`BPS.compute` divides by
    # `torch.log(torch.tensor(2.0))`, float32 ln 2 under the stock default).
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _score_f64(log_rates, counts)
    finally:
        torch.set_default_dtype(old)


def _score_f64(log_rates, counts):
    n = log_rates.shape[1]
    preds = torch.tensor(log_rates, dtype=torch.float64)
    target = torch.tensor(counts, dtype=torch.float64).as_subclass(_KeepF64)
    d2 = PoissonD2Score(num_outputs=n)
    d2.set_dtype(torch.float64)
    bps = BPS(num_outputs=n)
    bps.set_dtype(torch.float64)
    d2.update(preds, target)
    bps.update(preds, target)
    # ndt's pooled D², from the scorer's accumulated states (same validity rule).
    st = {k: getattr(d2, k).double() for k in
          ("sum_exp_rate", "sum_interaction", "sum_tgt_log_tgt", "sum_target")}
    num = (st["sum_exp_rate"] - st["sum_interaction"]) - (st["sum_target"] - st["sum_tgt_log_tgt"])
    null = st["sum_target"] / d2.num_samples.double()
    den = st["sum_tgt_log_tgt"] - st["sum_target"] * torch.log(null.clamp(min=d2.eps))
    valid = (st["sum_target"] > 0) & (den.abs() >= d2.eps)
    pooled = 1 - num[valid].sum() / den[valid].sum() if valid.any() else torch.tensor(float("nan"))
    return {
        "d2": float(d2.compute()),
        "bps": float(bps.compute()),
        "d2_pooled": float(pooled),
        "n_units_d2": int(valid.sum()),
    }


def score_stock(log_rates, counts):
    preds = torch.tensor(log_rates).float()
    target = torch.tensor(counts).float()
    d2, bps = PoissonD2Score(), BPS()
    d2.update(preds, target)
    bps.update(preds, target)
    return {"d2": float(d2.compute()), "bps": float(bps.compute())}


def case(name, log_rates, counts):
    f64 = score_f64(log_rates, counts)
    return {
        "name": name,
        "shape": list(counts.shape),
        "log_rates": log_rates.ravel().tolist(),
        "counts": counts.ravel().tolist(),
        "scorer_f64": f64,
        "scorer_stock_f32": score_stock(log_rates, counts),
    }


def vectors():
    rng = np.random.default_rng(20261202)
    cases = []
    true = rng.gamma(2.0, 0.4, size=(400, 9))
    counts = rng.poisson(true).astype(np.float64)
    lr = np.log(true * rng.lognormal(0.0, 0.3, size=true.shape))
    cases.append(case("random", lr, counts))

    # A silent unit and a unit whose counts are all one (zero null deviance): both left out.
    counts = rng.poisson(rng.gamma(2.0, 0.5, size=(120, 6))).astype(np.float64)
    counts[:, 1] = 0.0
    counts[:, 4] = 1.0
    lr = rng.normal(-0.5, 0.8, size=counts.shape)
    cases.append(case("silent_and_constant_units", lr, counts))

    # A poor model (negative D² and bps) with large counts.
    true = rng.gamma(3.0, 2.0, size=(200, 5))
    counts = rng.poisson(true).astype(np.float64)
    lr = np.log(true[::-1].copy()) + rng.normal(0.0, 1.0, size=true.shape)
    cases.append(case("poor_model", lr, counts))

    # Extreme log-rates: very small and large predicted rates.
    counts = rng.poisson(0.3, size=(150, 4)).astype(np.float64)
    lr = rng.uniform(-30.0, 4.0, size=counts.shape)
    cases.append(case("extreme_log_rates", lr, counts))

    out = {
        "generator": "tools/bwb_vectors.py",
        "ibl_bwb_eval": __import__("ibl_bwb_eval").__version__,
        "torch": torch.__version__,
        "cases": cases,
    }
    path = os.path.join(ROOT, "fixtures", "bwb_vectors.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: {len(cases)} cases")


def fail(msg):
    print(f"bwb check: {msg}", file=sys.stderr)
    sys.exit(1)


def check(pred_dir, gt_dir, eval_json):
    import ibl_bwb_eval
    from pathlib import Path

    from ibl_bwb_eval.predictions import version_of
    from ibl_bwb_eval.scoring.ts2 import score_dir
    from ibl_bwb_eval.tasks import SUITE_TASKS, is_task_of, task_of
    from safetensors import safe_open

    with open(eval_json) as f:
        report = json.load(f)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    files = sorted(pred_dir.rglob("seed_*.safetensors"))
    if not files:
        fail(f"no prediction files under {pred_dir}")
    seen = {}
    for p in files:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            preds = f.get_tensor("predictions") if "predictions" in keys else None
            ts = f.get_tensor("window_timestamps") if "window_timestamps" in keys else None
        for k in ("label", "task", "seed", "recording_id", "ibl_bwb_eval_version"):
            if k not in meta:
                fail(f"{p}: metadata lacks {k!r} ({meta})")
        if version_of(meta) != ibl_bwb_eval.__version__:
            fail(f"{p}: written for ibl_bwb_eval {version_of(meta)}, installed {ibl_bwb_eval.__version__}")
        task = meta["task"]
        if not is_task_of("ts2", task) or task_of("ts2", task) not in SUITE_TASKS["ts2"]:
            fail(f"{p}: task {task!r} is not a TS2 task")
        want = pred_dir / meta["label"] / task / meta["recording_id"] / f"seed_{meta['seed']}.safetensors"
        if p != want:
            fail(f"{p}: expected at {want}")
        if keys != {"predictions", "window_timestamps"}:
            fail(f"{p}: tensors {sorted(keys)}")
        if preds.dtype != torch.float32 or preds.ndim != 3:
            fail(f"{p}: predictions {preds.dtype} {tuple(preds.shape)}")
        if ts.ndim != 1 or ts.shape[0] != preds.shape[0]:
            fail(f"{p}: window_timestamps {tuple(ts.shape)} for predictions {tuple(preds.shape)}")
        seen[(meta["label"], task, meta["recording_id"], int(meta["seed"]))] = tuple(preds.shape)
    raw = score_dir(pred_dir, gt_dir)
    if set(raw) != set(seen):
        fail(f"the scorer scored {sorted(raw)}, files {sorted(seen)}")
    rows = []
    for key, scores in sorted(raw.items()):
        label, task, rec, seed = key
        if rec != report["session"]:
            fail(f"{key}: recording {rec}, the report is of {report['session']}")
        ndt = report["tasks"][TASKS[task]]
        for ours, theirs in (("d2", "poisson_d2"), ("pooled_bwb", "bps")):
            a, b = ndt[ours], scores[theirs]
            if a is None or not math.isfinite(b) or abs(a - b) > 2e-5 * max(1.0, abs(b)):
                fail(f"{key}: ndt {ours} = {a}, ibl_bwb_eval {theirs} = {b}")
            rows.append({"task": task, "ndt": ours, "scorer": theirs, "ndt_value": a, "scorer_value": b})
    print(json.dumps({"ok": True, "files": len(files), "compared": rows}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        if len(sys.argv) != 5:
            fail("usage: bwb_vectors.py --check PRED_DIR GT_DIR EVAL_JSON")
        check(*sys.argv[2:5])
    else:
        vectors()

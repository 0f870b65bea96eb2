#!/usr/bin/env python3
"""Test vectors for ndt's smoothed-spikes Poisson GLM baseline (src/eval/glm.rs), computed with
scipy and scikit-learn the way the Neural Latents Benchmark's smoothing baseline computes them
(nlb_tools examples/baselines/smoothing/run_smoothing.py):

  window = scipy.signal.windows.gaussian(int(6 * kern_sd / bin), int(kern_sd / bin), sym=True),
           normalised to sum 1;
  smoothed = np.convolve(counts_of_one_unit_in_one_trial, window, 'same');
  features = ln(smoothed + 1e-4) of every unit but the held-out one;
  sklearn.linear_model.PoissonRegressor(alpha) per held-out unit, fit on the fit trials;
  predicted rates on the evaluated trials clipped to [1e-9, 1e20].

NLB runs PoissonRegressor with its default L-BFGS solver (tol 1e-4, max_iter 500), which stops
near the optimum; here the solver is `newton-cholesky` with tol 1e-12, so the coefficients are
the optimum itself to ~1e-10 and ndt's Newton fit can be compared to 1e-6. The L-BFGS result
at NLB's settings is recorded too (`lbfgs_*`), for reference.

Writes fixtures/glm_vectors.json. Run from the crate root:
  tools/setup.sh --reference && .venv/bin/python tools/glm_vectors.py
"""
import json
import os
import warnings

import numpy as np
import scipy
import sklearn
from scipy.signal import windows
from sklearn.linear_model import PoissonRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_OFFSET = 1e-4


def smooth_log(counts, window):
    sm = np.apply_along_axis(lambda x: np.convolve(x, window, "same"), 1, counts)
    return np.log(sm.reshape(-1, counts.shape[2]) + LOG_OFFSET)


def make_case(name, rng, trials, t, n, n_fit, bin_ms, kern_sd, alpha, base):
    # Rates from two smooth latent factors, so other units carry information about each unit.
    tt = np.arange(t)
    phases = rng.uniform(0, 2 * np.pi, size=(trials, 2))
    f = np.stack([np.sin(2 * np.pi * tt[None, :] / t * (k + 1) + phases[:, [k]]) for k in range(2)], -1)
    load = rng.normal(0.0, 0.8, size=(2, n))
    rates = base * np.exp(f @ load)
    counts = rng.poisson(rates).astype(np.float64)
    fit, ev = counts[:n_fit], counts[n_fit:]

    window = windows.gaussian(int(6 * kern_sd / bin_ms), int(kern_sd / bin_ms), sym=True)
    window /= np.sum(window)
    xf, xe = smooth_log(fit, window), smooth_log(ev, window)
    yf = fit.reshape(-1, n)
    units = []
    eval_rates = np.zeros_like(xe)
    for j in range(n):
        cols = [k for k in range(n) if k != j]
        pr = PoissonRegressor(alpha=alpha, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        pr.fit(xf[:, cols], yf[:, j])
        eval_rates[:, j] = np.clip(pr.predict(xe[:, cols]), 1e-9, 1e20)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lb = PoissonRegressor(alpha=alpha, max_iter=500).fit(xf[:, cols], yf[:, j])
        units.append({
            "intercept": float(pr.intercept_),
            "coef": pr.coef_.tolist(),
            "n_iter": int(pr.n_iter_),
            "lbfgs_intercept": float(lb.intercept_),
            "lbfgs_coef": lb.coef_.tolist(),
        })
    return {
        "name": name,
        "trials": trials,
        "t": t,
        "n": n,
        "n_fit": n_fit,
        "bin_ms": bin_ms,
        "kernel_sd_ms": kern_sd,
        "alpha": alpha,
        "window": window.tolist(),
        "counts": counts.ravel().tolist(),
        "fit_features": xf.ravel().tolist(),
        "eval_features": xe.ravel().tolist(),
        "units": units,
        "eval_rates": eval_rates.ravel().tolist(),
    }


def main():
    rng = np.random.default_rng(20261202)
    cases = [
        make_case("nlb_mc_maze_settings", rng, 40, 30, 6, 30, 20.0, 50.0, 0.01, 0.6),
        make_case("strong_penalty_5ms_bins", rng, 24, 60, 5, 16, 5.0, 30.0, 0.1, 0.3),
        make_case("weak_penalty", rng, 30, 25, 7, 22, 10.0, 40.0, 0.001, 1.0),
    ]
    out = {
        "generator": "tools/glm_vectors.py",
        "sklearn": sklearn.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "log_offset": LOG_OFFSET,
        "cases": cases,
    }
    path = os.path.join(ROOT, "fixtures", "glm_vectors.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()

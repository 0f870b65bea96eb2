#!/usr/bin/env python3
"""Test vectors for ndt's evaluation metrics, computed with the ecosystem's own tools.

Writes
  fixtures/nlb_bps.json        bits per spike: pooled by `nlb_tools.evaluation.bits_per_spike`
                               itself, per-neuron (MtM's convention: that function on each neuron
                               alone, averaged over neurons that spiked) on the same arrays;
  fixtures/choice_logreg.json  logistic regression by scikit-learn: coefficients of
                               StandardScaler + LogisticRegression at fixed C, and the C chosen by
                               GridSearchCV(cv=StratifiedKFold(4)) with its test accuracy.

NaN spike counts are written as JSON null. Run from the crate root:
  tools/setup.sh --reference && .venv/bin/python tools/nlb_vectors.py
"""
import json
import os
import warnings

import numpy as np
from nlb_tools.evaluation import bits_per_spike
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def per_neuron_bps(rates, spikes):
    """MtM: nlb's bits_per_spike on each neuron alone, mean over neurons with spikes."""
    vals = []
    for j in range(spikes.shape[-1]):
        s = spikes[..., [j]]
        if np.nansum(s) == 0:
            continue
        vals.append(bits_per_spike(rates[..., [j]].copy(), s.copy()))
    return float(np.mean(vals)) if vals else None


def bps_case(name, rates, spikes):
    pooled = bits_per_spike(rates.copy(), spikes.copy())
    return {
        "name": name,
        "shape": list(spikes.shape),
        "rates": rates.ravel().tolist(),
        "spikes": [None if np.isnan(v) else float(v) for v in spikes.ravel()],
        "pooled": float(pooled),
        "per_neuron": per_neuron_bps(rates, spikes),
    }


def bps_cases():
    rng = np.random.default_rng(20240611)
    cases = []

    # Random rates, Poisson spikes from nearby rates (positive bits per spike).
    true = rng.gamma(2.0, 0.3, size=(8, 20, 6))
    spikes = rng.poisson(true).astype(np.float64)
    rates = true * rng.lognormal(0.0, 0.2, size=true.shape)
    cases.append(bps_case("random", rates, spikes))

    # Rates unrelated to the spikes (negative bits per spike).
    cases.append(bps_case("random_bad", rng.gamma(1.0, 1.0, size=true.shape), spikes))

    # Some predicted rates exactly zero (replaced by 1e-9), including where spikes occurred.
    r = rates.copy()
    r[rng.random(r.shape) < 0.1] = 0.0
    cases.append(bps_case("zero_rates", r, spikes))

    # Silent neurons: two neurons never spike (null rate 0 -> 1e-9).
    s = spikes.copy()
    s[..., 1] = 0.0
    s[..., 4] = 0.0
    cases.append(bps_case("silent_neurons", rates, s))

    # NaN spikes: scattered entries and one neuron entirely NaN (left out by nlb_tools).
    s = spikes.copy()
    s[rng.random(s.shape) < 0.15] = np.nan
    s[..., 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cases.append(bps_case("nan_spikes", rates, s))

    # Two-dimensional input (rows x neurons), larger counts.
    true2 = rng.gamma(3.0, 2.0, size=(500, 9))
    spikes2 = rng.poisson(true2).astype(np.float64)
    rates2 = true2 * rng.lognormal(0.0, 0.1, size=true2.shape)
    cases.append(bps_case("two_dim_high_rates", rates2, spikes2))

    # Sparse spiking typical of 20 ms bins (most counts zero), one neuron with a single spike.
    true3 = rng.gamma(0.5, 0.05, size=(30, 40, 12))
    spikes3 = rng.poisson(true3).astype(np.float64)
    spikes3[..., 5] = 0.0
    spikes3[3, 7, 5] = 1.0
    rates3 = np.clip(true3 * rng.lognormal(0.0, 0.3, size=true3.shape), 1e-6, None)
    cases.append(bps_case("sparse", rates3, spikes3))
    return cases


def choice_vectors():
    rng = np.random.default_rng(7)
    n, d = 200, 12
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=d) + rng.normal(size=d) * 3.0
    x[:, 7] = 2.5  # a constant feature (scale 1 after standardisation)
    w = rng.normal(size=d) * 1.2
    w[7] = 0.0
    z = ((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)) @ w + 0.3
    y = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-z)), 1, -1)
    fit, test = np.arange(160), np.arange(160, 200)
    xf, yf, xt, yt = x[fit], y[fit], x[test], y[test]

    def lr(c):
        return LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000)

    fixed = []
    for c in [1e-2, 1.0, 1e2]:
        pipe = make_pipeline(StandardScaler(), lr(c)).fit(xf, yf)
        scaler, model = pipe[0], pipe[1]
        fixed.append({
            "c": c,
            "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0]),
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "test_accuracy": float(pipe.score(xt, yt)),
        })

    grid = np.logspace(-4, 4, 9)
    cv = StratifiedKFold(4)
    folds = np.zeros(len(yf), dtype=int)
    for k, (_, te) in enumerate(cv.split(xf, yf)):
        folds[te] = k
    search = GridSearchCV(make_pipeline(StandardScaler(), lr(1.0)),
                          {"logisticregression__C": grid}, cv=cv, scoring="accuracy")
    search.fit(xf, yf)
    counts = np.bincount((yt > 0).astype(int), minlength=2)
    return {
        "d": d,
        "x_fit": xf.ravel().tolist(),
        "y_fit": yf.tolist(),
        "x_test": xt.ravel().tolist(),
        "y_test": yt.tolist(),
        "folds": folds.tolist(),
        "fixed": fixed,
        "grid": grid.tolist(),
        "cv_accuracy": search.cv_results_["mean_test_score"].tolist(),
        "best_c": float(search.best_params_["logisticregression__C"]),
        "test_accuracy": float(search.score(xt, yt)),
        "majority": float(counts.max() / counts.sum()),
    }


def main():
    out = os.path.join(ROOT, "fixtures")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "nlb_bps.json"), "w") as f:
        json.dump({"source": "nlb_tools.evaluation.bits_per_spike", "cases": bps_cases()}, f)
    with open(os.path.join(out, "choice_logreg.json"), "w") as f:
        json.dump({"source": "scikit-learn LogisticRegression", **choice_vectors()}, f)


if __name__ == "__main__":
    main()

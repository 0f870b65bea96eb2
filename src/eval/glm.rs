//! The smoothed-spikes Poisson GLM: the classical co-smoothing baseline of the Neural Latents
//! Benchmark (`nlb_tools` `examples/baselines/smoothing`), in f64.
//!
//! For each held-out unit `j`, the other units' counts of each trial are smoothed over time with
//! a normalised Gaussian window (NLB's: `int(6·sd/bin)` bins long, standard deviation
//! `int(sd/bin)` bins, `np.convolve(.., 'same')`), shifted and logged (`ln(smoothed + 1e-4)`),
//! and a Poisson GLM with log link from those features to unit `j`'s counts is fit on the fit
//! trials. Its objective is scikit-learn's `PoissonRegressor`'s:
//!
//! ```text
//! (1/n) Σ_i (exp(η_i) − y_i η_i) + (α/2) ‖w‖²,   η_i = b + x_i·w   (the intercept b unpenalised)
//! ```
//!
//! (`sklearn`: half the mean Poisson deviance plus `α/2 ‖w‖²`; the two differ by a constant).
//! It is minimised by Newton's method with a Cholesky solve and a backtracking line search, to
//! a gradient below `tol` in the max norm; the optimum is unique for `α > 0`, so the result
//! does not depend on the solver (NLB runs sklearn's L-BFGS with `max_iter = 500`, which stops
//! near the same point). Predicted rates are clipped to `[1e-9, 1e20]` as NLB clips them.
//! Everything is sequential per unit, so the result is deterministic; units run in parallel.

use crate::error::{Result, usage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What NLB adds before taking the log of the smoothed counts.
pub const LOG_OFFSET: f64 = 1e-4;
/// NLB's clip of predicted rates.
pub const RATE_MIN: f64 = 1e-9;
pub const RATE_MAX: f64 = 1e20;

/// The baseline's settings (recorded with its scores).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlmSettings {
    /// Standard deviation of the Gaussian smoothing kernel, in ms (NLB: 30-60 ms by dataset;
    /// 50 ms for MC_Maze, the reaching dataset).
    pub kernel_sd_ms: f64,
    /// L2 penalty `α` of sklearn's `PoissonRegressor` (NLB: 0.01 for MC_Maze).
    pub alpha: f64,
    /// Newton stops when the gradient's max norm is below this.
    pub tol: f64,
    pub max_iter: usize,
}

impl Default for GlmSettings {
    fn default() -> Self {
        GlmSettings {
            kernel_sd_ms: 50.0,
            alpha: 0.01,
            tol: 1e-10,
            max_iter: 200,
        }
    }
}

/// NLB's smoothing window for bins of `bin_ms`: `scipy.signal.windows.gaussian(int(6·sd/bin),
/// int(sd/bin))`, normalised to sum 1.
pub fn gaussian_window(kernel_sd_ms: f64, bin_ms: f64) -> Result<Vec<f64>> {
    if !(kernel_sd_ms.is_finite() && kernel_sd_ms > 0.0 && bin_ms.is_finite() && bin_ms > 0.0) {
        return Err(usage(format!(
            "--glm-kernel-ms {kernel_sd_ms} with {bin_ms} ms bins: both must be positive"
        )));
    }
    let len = (6.0 * kernel_sd_ms / bin_ms).floor();
    let sd = (kernel_sd_ms / bin_ms).floor();
    if sd < 1.0 {
        return Err(usage(format!(
            "--glm-kernel-ms {kernel_sd_ms} is under one {bin_ms} ms bin (NLB's window takes a \
             whole number of bins as its standard deviation)"
        )));
    }
    if len > 10_000.0 {
        return Err(usage(format!(
            "--glm-kernel-ms {kernel_sd_ms} spans over 10000 bins"
        )));
    }
    let m = len as usize;
    let c = (m as f64 - 1.0) / 2.0;
    let mut w: Vec<f64> = (0..m)
        .map(|i| {
            let d = i as f64 - c;
            (-d * d / (2.0 * sd * sd)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    Ok(w)
}

/// `np.convolve(x, w, 'same')` for `len(x) ≥ len(w)` (and its natural extension, the centred
/// `len(x)` entries of the full convolution, otherwise).
pub fn convolve_same(x: &[f64], w: &[f64], out: &mut [f64]) {
    let (n, m) = (x.len(), w.len());
    let start = (m.saturating_sub(1)) / 2;
    for (k, o) in out.iter_mut().enumerate().take(n) {
        // full[k + start] = Σ_i x[i] w[k + start − i], 0 ≤ k + start − i < m
        let f = k + start;
        let lo = (f + 1).saturating_sub(m);
        let hi = f.min(n - 1);
        let mut s = 0.0;
        for i in lo..=hi {
            s += x[i] * w[f - i];
        }
        *o = s;
    }
}

/// Log-smoothed features `[trials·T, N]` of counts `[trials, T, N]`.
pub fn log_smoothed(counts: &[f64], t: usize, n: usize, w: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; counts.len()];
    if t == 0 || n == 0 {
        return out;
    }
    let mut col = vec![0.0; t];
    let mut sm = vec![0.0; t];
    for (trial, o) in counts.chunks_exact(t * n).zip(out.chunks_exact_mut(t * n)) {
        for j in 0..n {
            for (b, c) in col.iter_mut().enumerate() {
                *c = trial[b * n + j];
            }
            convolve_same(&col, w, &mut sm);
            for (b, &v) in sm.iter().enumerate() {
                o[b * n + j] = (v + LOG_OFFSET).ln();
            }
        }
    }
    out
}

/// One fitted GLM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoissonGlm {
    pub intercept: f64,
    pub coef: Vec<f64>,
    pub n_iter: usize,
    /// Max norm of the objective's gradient at the returned point.
    pub grad_norm: f64,
}

impl PoissonGlm {
    /// The predicted rate of feature row `x`, clipped as NLB clips it.
    pub fn rate(&self, x: impl Iterator<Item = f64>) -> f64 {
        let eta = self.intercept + x.zip(&self.coef).map(|(a, b)| a * b).sum::<f64>();
        eta.exp().clamp(RATE_MIN, RATE_MAX)
    }
}

/// A design matrix: `n` rows of `[1, x_1 .. x_p]`, row-major.
pub struct Design {
    pub n: usize,
    /// Columns including the intercept's (`p + 1`).
    pub q: usize,
    pub x: Vec<f64>,
}

/// Objective at `beta = [b, w..]`; with `grad`, also its gradient; with `hess`, its Hessian
/// (the second member holds the row-scaled design).
fn objective(
    beta: &[f64],
    d: &Design,
    y: &[f64],
    alpha: f64,
    grad: Option<&mut [f64]>,
    hess: Option<(&mut [f64], &mut Vec<f64>)>,
) -> f64 {
    use crate::cpu::gemm::{Accum, Mat, MatMut, matmul_scaled};
    let (n, q) = (d.n, d.q);
    let nf = n as f64;
    let mut f = 0.0;
    let mut mu = vec![0.0; n];
    for (i, (m, &yi)) in mu.iter_mut().zip(y).enumerate() {
        let xi = &d.x[i * q..(i + 1) * q];
        let eta: f64 = xi.iter().zip(beta).map(|(a, b)| a * b).sum();
        *m = eta.exp();
        f += *m - yi * eta;
    }
    let pen: f64 = beta[1..].iter().map(|w| w * w).sum();
    if let Some(g) = grad {
        g.fill(0.0);
        for (i, (&m, &yi)) in mu.iter().zip(y).enumerate() {
            let r = m - yi;
            for (gk, &xk) in g.iter_mut().zip(&d.x[i * q..(i + 1) * q]) {
                *gk += r * xk;
            }
        }
        for (k, gk) in g.iter_mut().enumerate() {
            *gk /= nf;
            if k > 0 {
                *gk += alpha * beta[k];
            }
        }
    }
    if let Some((h, z)) = hess {
        // H = Zᵀ Z / n + α (intercept unpenalised), Z = diag(√μ) X.
        z.resize(n * q, 0.0);
        for (i, &m) in mu.iter().enumerate() {
            let sq = m.sqrt();
            for (zk, &xk) in z[i * q..(i + 1) * q]
                .iter_mut()
                .zip(&d.x[i * q..(i + 1) * q])
            {
                *zk = sq * xk;
            }
        }
        let zm = Mat::new(&z[..], n, q);
        matmul_scaled(MatMut::new(h, q, q), zm.t(), zm, 1.0 / nf, Accum::Set, 1);
        for k in 1..q {
            h[k * q + k] += alpha;
        }
    }
    f / nf + 0.5 * alpha * pen
}

/// The Cholesky factor `L` (`L Lᵀ = h`, row-major lower triangle) of a symmetric `q × q`
/// matrix; None if it is not numerically positive definite.
fn cholesky(h: &[f64], q: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; q * q];
    for i in 0..q {
        for j in 0..=i {
            let mut s = h[i * q + j];
            for k in 0..j {
                s -= l[i * q + k] * l[j * q + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * q + i] = s.sqrt();
            } else {
                l[i * q + j] = s / l[j * q + j];
            }
        }
    }
    Some(l)
}

/// Solves `L Lᵀ d = g`.
fn cholesky_solve(l: &[f64], g: &[f64], q: usize) -> Vec<f64> {
    let mut z = vec![0.0; q];
    for i in 0..q {
        let mut s = g[i];
        for k in 0..i {
            s -= l[i * q + k] * z[k];
        }
        z[i] = s / l[i * q + i];
    }
    let mut d = vec![0.0; q];
    for i in (0..q).rev() {
        let mut s = z[i];
        for k in i + 1..q {
            s -= l[k * q + i] * d[k];
        }
        d[i] = s / l[i * q + i];
    }
    d
}

/// Fits the L2-penalised Poisson GLM of `y` on design `d` (first column the intercept's). `y`
/// must hold some spikes (a unit without any has no finite optimum: the caller predicts the
/// floor rate instead). `h0`: the Hessian at the starting point (intercept `ln mean(y)`,
/// weights 0), if the caller has it.
///
/// Newton's method in which the Hessian's Cholesky factor is kept while it works: after a step
/// that shrinks the gradient's max-norm tenfold the next step reuses it, otherwise (and when
/// its line search fails) the Hessian is recomputed at the current point. It stops at the
/// tolerance, or when a step with a freshly computed Hessian no longer halves the gradient
/// (below 1e-6: the floor f64 rounding puts under it; `grad_norm` records where it stopped). The Hessian is what
/// costs (`n q²`); a reused factor costs a gradient (`n q`). The optimum, and so the result to
/// the tolerance, does not depend on which steps reuse it.
pub fn fit_glm(d: &Design, y: &[f64], s: &GlmSettings, h0: Option<Vec<f64>>) -> PoissonGlm {
    let q = d.q;
    let y = &y[..d.n.min(y.len())];
    let mean = y.iter().sum::<f64>() / d.n.max(1) as f64;
    let mut beta = vec![0.0; q];
    beta[0] = mean.max(RATE_MIN).ln();
    let mut g = vec![0.0; q];
    let mut z = Vec::new();
    let mut f = objective(&beta, d, y, s.alpha, Some(&mut g), None);
    let mut fresh = h0.is_none();
    let mut h = h0.unwrap_or_else(|| {
        let mut h = vec![0.0; q * q];
        objective(&beta, d, y, s.alpha, None, Some((&mut h, &mut z)));
        h
    });
    let mut l = cholesky(&h, q);
    let mut it = 0;
    let gnorm = |g: &[f64]| g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    while it < s.max_iter && gnorm(&g) > s.tol {
        it += 1;
        let dir = match &l {
            Some(l) => cholesky_solve(l, &g, q),
            None if fresh => break,
            None => {
                objective(&beta, d, y, s.alpha, None, Some((&mut h, &mut z)));
                l = cholesky(&h, q);
                fresh = true;
                continue;
            }
        };
        // Backtracking (Armijo) along the Newton direction.
        let slope: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
        let mut step = 1.0;
        let mut next = beta.clone();
        let mut accepted = false;
        for _ in 0..60 {
            for ((nb, &b), &dk) in next.iter_mut().zip(&beta).zip(&dir) {
                *nb = b - step * dk;
            }
            let fn_ = objective(&next, d, y, s.alpha, None, None);
            // Near the optimum the decrease is below the objective's rounding: the full
            // Newton step is then taken as long as it does not raise the objective beyond it.
            let rounding = 16.0 * f64::EPSILON * f.abs().max(1.0);
            if fn_.is_finite()
                && (fn_ <= f - 1e-4 * step * slope || (step == 1.0 && fn_ <= f + rounding))
            {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            if fresh {
                break;
            }
            objective(&beta, d, y, s.alpha, None, Some((&mut h, &mut z)));
            l = cholesky(&h, q);
            fresh = true;
            continue;
        }
        let before = gnorm(&g);
        let used_fresh = fresh;
        beta.clone_from(&next);
        f = objective(&beta, d, y, s.alpha, Some(&mut g), None);
        fresh = false;
        if used_fresh && step == 1.0 && gnorm(&g) < 1e-6 && gnorm(&g) > 0.5 * before {
            // A full Newton step that no longer halves the gradient: the gradient is at the
            // floor that f64 rounding puts under it for this design.
            break;
        }
        if gnorm(&g) > 0.1 * before {
            objective(&beta, d, y, s.alpha, None, Some((&mut h, &mut z)));
            l = cholesky(&h, q);
            fresh = true;
        }
    }
    PoissonGlm {
        intercept: beta[0],
        coef: beta[1..].to_vec(),
        n_iter: it,
        grad_norm: gnorm(&g),
    }
}

/// The design of unit `j`'s GLM: every other column of `feats` (`[rows, n]`), after a column of
/// ones.
pub fn design_without(feats: &[f64], n: usize, j: usize) -> Design {
    let rows = feats.len().checked_div(n).unwrap_or(0);
    let mut x = Vec::with_capacity(rows * n);
    for r in feats.chunks_exact(n) {
        x.push(1.0);
        x.extend(r[..j].iter().chain(&r[j + 1..]));
    }
    Design { n: rows, q: n, x }
}

/// The baseline's co-smoothing predictions: for each unit `j`, a GLM on the other units'
/// log-smoothed counts fit on `fit` (`[trials, T, N]` counts), and its rates on `eval`
/// (`[trials, T, N]`). Returns the rates `[eval trials, T, N]` and each unit's fit (None for a
/// unit without spikes in `fit`, predicted at the floor rate 1e-9).
pub fn cosmooth_rates(
    fit: &[f64],
    eval: &[f64],
    t: usize,
    n: usize,
    w: &[f64],
    s: &GlmSettings,
) -> (Vec<f64>, Vec<Option<PoissonGlm>>) {
    let xf = log_smoothed(fit, t, n, w);
    let xe = log_smoothed(eval, t, n, w);
    let rows_f = fit.len().checked_div(n).unwrap_or(0);
    let rows_e = eval.len().checked_div(n).unwrap_or(0);
    // Every unit's starting Hessian is mean(y_j) · XᵀX / n (+ α) with X = [1, features],
    // unit j's own column left out: one Gram matrix of all columns serves them all.
    let q = n + 1;
    let mut full = Vec::with_capacity(rows_f * q);
    for r in xf.chunks_exact(n.max(1)) {
        full.push(1.0);
        full.extend_from_slice(r);
    }
    let mut gram = vec![0.0; q * q];
    {
        use crate::cpu::gemm::{Accum, Mat, MatMut, matmul_scaled};
        let m = Mat::new(&full[..], rows_f, q);
        let scale = 1.0 / rows_f.max(1) as f64;
        matmul_scaled(MatMut::new(&mut gram, q, q), m.t(), m, scale, Accum::Set, 1);
    }
    drop(full);
    let fits: Vec<Option<PoissonGlm>> = (0..n)
        .into_par_iter()
        .map(|j| {
            let y: Vec<f64> = (0..rows_f).map(|i| fit[i * n + j]).collect();
            if !y.iter().any(|&v| v > 0.0) {
                return None;
            }
            let mean = y.iter().sum::<f64>() / rows_f as f64;
            let keep: Vec<usize> = (0..q).filter(|&c| c != j + 1).collect();
            let mut h0 = Vec::with_capacity(n * n);
            for (a, &ra) in keep.iter().enumerate() {
                for (b, &cb) in keep.iter().enumerate() {
                    let pen = if a == b && a > 0 { s.alpha } else { 0.0 };
                    h0.push(mean * gram[ra * q + cb] + pen);
                }
            }
            Some(fit_glm(&design_without(&xf, n, j), &y, s, Some(h0)))
        })
        .collect();
    let mut rates = vec![RATE_MIN; eval.len()];
    for (j, g) in fits.iter().enumerate() {
        let Some(g) = g else { continue };
        for i in 0..rows_e {
            let r = &xe[i * n..(i + 1) * n];
            let feats = r[..j].iter().chain(&r[j + 1..]).copied();
            rates[i * n + j] = g.rate(feats);
        }
    }
    (rates, fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_nlbs() {
        // 50 ms kernel, 20 ms bins: int(15) = 15 bins long, sd int(2.5) = 2 bins.
        let w = gaussian_window(50.0, 20.0).unwrap();
        assert_eq!(w.len(), 15);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((w[7] / w[5] - (4.0f64 / 8.0).exp()).abs() < 1e-14);
        assert!(gaussian_window(10.0, 20.0).is_err());
    }

    #[test]
    fn convolve_same_matches_the_direct_sum() {
        let x = [1.0, 0.0, 2.0, 3.0, 0.0, 1.0];
        let w = [0.25, 0.5, 0.25];
        let mut o = [0.0; 6];
        convolve_same(&x, &w, &mut o);
        assert_eq!(o, [0.5, 0.75, 1.75, 2.0, 1.0, 0.5]);
    }

    #[test]
    fn newton_reaches_a_stationary_point() {
        // y depends on one feature; the fit's gradient vanishes.
        let xs: Vec<f64> = (0..200).map(|i| ((i * 37) % 17) as f64 / 17.0).collect();
        let y: Vec<f64> = xs
            .iter()
            .map(|&x| ((1.0 + 2.0 * x) as u32) as f64)
            .collect();
        let d = Design {
            n: 200,
            q: 2,
            x: xs.iter().flat_map(|&x| [1.0, x]).collect(),
        };
        let g = fit_glm(&d, &y, &GlmSettings::default(), None);
        assert!(g.grad_norm < 1e-10, "{g:?}");
        assert!(g.coef[0] > 0.5);
    }
}

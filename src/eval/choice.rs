//! Choice decoding (SPEC §5): L2-regularised logistic regression on standardised features,
//! the inverse regularisation strength C chosen by stratified 4-fold cross-validation on the
//! train+val trials, accuracy on the test trials beside the majority-class rate. All in f64.
//!
//! The fit minimises `Σᵢ log(1 + exp(−yᵢ (w·xᵢ + b))) + ‖w‖² / (2C)` (scikit-learn's
//! `LogisticRegression` objective; the intercept is not penalised), by L-BFGS on the objective
//! divided by the number of samples. The folds are scikit-learn's `StratifiedKFold` without
//! shuffling, and standardisation is refitted on each training portion (a scaler + classifier
//! pipeline), so `GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()),
//! cv=StratifiedKFold(4))` reproduces the choice of C.

use crate::error::{Result, usage};

/// Options of the decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct ChoiceOpts {
    /// Candidate values of C, tried in this order (ties go to the earlier one).
    pub grid: Vec<f64>,
    /// Number of cross-validation folds.
    pub folds: usize,
    /// L-BFGS iteration cap per fit.
    pub max_iter: usize,
    /// Convergence: max-norm of the gradient of the per-sample objective.
    pub tol: f64,
}

impl Default for ChoiceOpts {
    /// C over 1e-4 … 1e4 (9 points, one per decade), 4 folds.
    fn default() -> Self {
        ChoiceOpts {
            grid: (-4..=4).map(|e| 10f64.powi(e)).collect(),
            folds: 4,
            max_iter: 1000,
            tol: 1e-9,
        }
    }
}

/// A fitted binary logistic regression; the positive class is +1.
#[derive(Clone, Debug, PartialEq)]
pub struct Logistic {
    pub coef: Vec<f64>,
    pub intercept: f64,
    /// L-BFGS iterations used.
    pub iters: usize,
}

impl Logistic {
    /// Decision value `w·x + b` of one sample.
    pub fn decision(&self, x: &[f64]) -> f64 {
        dot(&self.coef, x) + self.intercept
    }

    /// Predicted label (+1 when the decision value is > 0, else −1, as scikit-learn).
    pub fn predict(&self, x: &[f64]) -> i8 {
        if self.decision(x) > 0.0 { 1 } else { -1 }
    }
}

/// Per-feature standardisation (scikit-learn's `StandardScaler`: population standard deviation,
/// constant features keep scale 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    /// Fits on the rows `rows` of `x` (`[n, d]` row-major).
    pub fn fit(x: &[f64], d: usize, rows: &[usize]) -> Scaler {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for &i in rows {
            for (m, v) in mean.iter_mut().zip(&x[i * d..(i + 1) * d]) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for &i in rows {
            for k in 0..d {
                let z = x[i * d + k] - mean[k];
                var[k] += z * z;
            }
        }
        // A feature counts as constant when its variance is within the error bound of the
        // two-pass algorithm (Chan, Golub & LeVeque), as scikit-learn decides.
        let eps = f64::EPSILON;
        let scale = var
            .iter()
            .zip(&mean)
            .map(|(v, m)| {
                let var = v / n;
                let bound = n * eps * var + (n * m * eps).powi(2);
                if var <= bound { 1.0 } else { var.sqrt() }
            })
            .collect();
        Scaler { mean, scale }
    }

    /// Standardised copy of the rows `rows` of `x`, `[rows.len(), d]`.
    pub fn transform(&self, x: &[f64], d: usize, rows: &[usize]) -> Vec<f64> {
        let mut out = Vec::with_capacity(rows.len() * d);
        for &i in rows {
            for k in 0..d {
                out.push((x[i * d + k] - self.mean[k]) / self.scale[k]);
            }
        }
        out
    }
}

/// What choice decoding reports.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChoiceResult {
    /// Test accuracy of the decoder.
    pub accuracy: f64,
    /// Share of the most frequent choice among the test trials.
    pub majority: f64,
    /// The C chosen by cross-validation.
    pub c: f64,
    /// Mean cross-validated accuracy for each C of the grid.
    pub cv_accuracy: Vec<(f64, f64)>,
    pub n_fit: usize,
    pub n_test: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// `1 / (1 + exp(−z))` without overflow.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Objective divided by n, and its gradient; `theta = [w (d), b]`, labels ±1.
fn objective(x: &[f64], y: &[f64], d: usize, c: f64, theta: &[f64], grad: &mut [f64]) -> f64 {
    let n = y.len();
    let inv_n = 1.0 / n as f64;
    let (w, b) = (&theta[..d], theta[d]);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut f = 0.0;
    for i in 0..n {
        let xi = &x[i * d..(i + 1) * d];
        let m = y[i] * (dot(w, xi) + b);
        f += softplus(-m);
        // d/dz softplus(-y z) = -y σ(-y z)
        let g = -y[i] * sigmoid(-m);
        for (gk, xk) in grad[..d].iter_mut().zip(xi) {
            *gk += g * xk;
        }
        grad[d] += g;
    }
    let reg = 1.0 / (c * n as f64);
    f *= inv_n;
    for k in 0..d {
        grad[k] = grad[k] * inv_n + reg * w[k];
        f += 0.5 * reg * w[k] * w[k];
    }
    grad[d] *= inv_n;
    f
}

/// Fits the logistic regression on standardised `x` (`[n, d]`), labels ±1, from `init` if given.
pub fn fit_logistic(
    x: &[f64],
    y: &[i8],
    d: usize,
    c: f64,
    init: Option<&Logistic>,
    opts: &ChoiceOpts,
) -> Logistic {
    let y: Vec<f64> = y.iter().map(|&v| if v > 0 { 1.0 } else { -1.0 }).collect();
    let p = d + 1;
    let mut theta = vec![0.0; p];
    if let Some(l) = init {
        theta[..d].copy_from_slice(&l.coef);
        theta[d] = l.intercept;
    }
    let hist = 10usize;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut g = vec![0.0; p];
    let mut f = objective(x, &y, d, c, &theta, &mut g);
    let mut g_new = vec![0.0; p];
    let mut iters = 0;
    while iters < opts.max_iter {
        let gmax = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if gmax <= opts.tol {
            break;
        }
        iters += 1;
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            for (qj, yj) in q.iter_mut().zip(&y_hist[i]) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / gmax.max(1.0)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            for (qj, sj) in q.iter_mut().zip(&s_hist[i]) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            dir = g.iter().map(|v| -v / gmax.max(1.0)).collect();
            slope = dot(&g, &dir);
        }
        // Backtracking line search with the Armijo condition.
        let mut step = 1.0;
        let mut trial = vec![0.0; p];
        let mut f_new;
        loop {
            for j in 0..p {
                trial[j] = theta[j] + step * dir[j];
            }
            f_new = objective(x, &y, d, c, &trial, &mut g_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        if f_new > f {
            break;
        }
        let s: Vec<f64> = (0..p).map(|j| trial[j] - theta[j]).collect();
        let yv: Vec<f64> = (0..p).map(|j| g_new[j] - g[j]).collect();
        let sy = dot(&s, &yv);
        theta.copy_from_slice(&trial);
        std::mem::swap(&mut g, &mut g_new);
        let f_old = f;
        f = f_new;
        if sy > 1e-300 {
            if s_hist.len() == hist {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
        }
        if f_old - f <= f64::EPSILON * f.abs().max(1.0) && s_hist.is_empty() {
            break;
        }
    }
    Logistic {
        coef: theta[..d].to_vec(),
        intercept: theta[d],
        iters,
    }
}

/// scikit-learn's `StratifiedKFold(k, shuffle=False)` test-fold index of each sample.
/// Each class's samples, in index order, are cut into contiguous runs, one per fold, with the
/// run lengths of scikit-learn's allocation.
pub fn stratified_folds(y: &[i8], k: usize) -> Vec<usize> {
    // Classes numbered in order of first appearance, as scikit-learn encodes them here.
    let mut classes: Vec<i8> = Vec::new();
    for v in y {
        if !classes.contains(v) {
            classes.push(*v);
        }
    }
    let enc: Vec<usize> = y
        .iter()
        .map(|v| classes.iter().position(|c| c == v).unwrap_or(0))
        .collect();
    let mut sorted = enc.clone();
    sorted.sort_unstable();
    // allocation[f][c] = number of class c among sorted[f], sorted[f + k], ...
    let mut alloc = vec![vec![0usize; classes.len()]; k];
    for (i, &c) in sorted.iter().enumerate() {
        alloc[i % k][c] += 1;
    }
    let mut fold = vec![0usize; y.len()];
    for c in 0..classes.len() {
        let mut runs = alloc
            .iter()
            .enumerate()
            .flat_map(|(f, a)| std::iter::repeat_n(f, a[c]));
        for (i, e) in enc.iter().enumerate() {
            if *e == c {
                fold[i] = runs.next().unwrap_or(k - 1);
            }
        }
    }
    fold
}

/// Fits a scaler on `fit_rows` and a logistic regression on them; returns both.
fn fit_pipeline(
    x: &[f64],
    y: &[i8],
    d: usize,
    fit_rows: &[usize],
    c: f64,
    init: Option<&Logistic>,
    opts: &ChoiceOpts,
) -> (Scaler, Logistic) {
    let scaler = Scaler::fit(x, d, fit_rows);
    let xs = scaler.transform(x, d, fit_rows);
    let ys: Vec<i8> = fit_rows.iter().map(|&i| y[i]).collect();
    let model = fit_logistic(&xs, &ys, d, c, init, opts);
    (scaler, model)
}

fn accuracy(
    scaler: &Scaler,
    model: &Logistic,
    x: &[f64],
    y: &[i8],
    d: usize,
    rows: &[usize],
) -> f64 {
    if rows.is_empty() {
        return f64::NAN;
    }
    let xs = scaler.transform(x, d, rows);
    let hits = rows
        .iter()
        .enumerate()
        .filter(|(r, i)| model.predict(&xs[r * d..(r + 1) * d]) == y[**i])
        .count();
    hits as f64 / rows.len() as f64
}

/// Decodes choice: `x_fit`/`y_fit` are the train+val trials (`[n, d]` features, labels ±1),
/// `x_test`/`y_test` the test trials. Trials with label 0 (unknown) must be removed by the
/// caller. C is chosen by cross-validated accuracy on the fit trials.
pub fn decode_choice(
    x_fit: &[f64],
    y_fit: &[i8],
    x_test: &[f64],
    y_test: &[i8],
    d: usize,
    opts: &ChoiceOpts,
) -> Result<ChoiceResult> {
    if d == 0 || x_fit.len() != y_fit.len() * d || x_test.len() != y_test.len() * d {
        return Err(usage("choice decoding: feature and label sizes disagree"));
    }
    if y_fit.iter().chain(y_test).any(|&v| v != 1 && v != -1) {
        return Err(usage("choice decoding: labels must be -1 or +1"));
    }
    if y_test.is_empty() {
        return Err(usage("choice decoding: no test trials with a known choice"));
    }
    let n_pos = y_fit.iter().filter(|&&v| v > 0).count();
    let n_neg = y_fit.len() - n_pos;
    let test_pos = y_test.iter().filter(|&&v| v > 0).count();
    let majority = test_pos.max(y_test.len() - test_pos) as f64 / y_test.len() as f64;
    if n_pos < opts.folds || n_neg < opts.folds {
        return Err(usage(format!(
            "choice decoding: each choice needs at least {} train+val trials (have {n_neg} left, {n_pos} right)",
            opts.folds
        )));
    }
    let folds = stratified_folds(y_fit, opts.folds);
    let n = y_fit.len();
    let mut cv_accuracy = Vec::with_capacity(opts.grid.len());
    // One warm start per fold, carried along the grid.
    let mut warm: Vec<Option<Logistic>> = vec![None; opts.folds];
    for &c in &opts.grid {
        let mut acc = 0.0;
        for (f, w) in warm.iter_mut().enumerate() {
            let train: Vec<usize> = (0..n).filter(|&i| folds[i] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&i| folds[i] == f).collect();
            let (sc, model) = fit_pipeline(x_fit, y_fit, d, &train, c, w.as_ref(), opts);
            acc += accuracy(&sc, &model, x_fit, y_fit, d, &test);
            *w = Some(model);
        }
        cv_accuracy.push((c, acc / opts.folds as f64));
    }
    let mut best = 0;
    for (i, &(_, a)) in cv_accuracy.iter().enumerate() {
        if a > cv_accuracy[best].1 {
            best = i;
        }
    }
    let c = cv_accuracy[best].0;
    let all: Vec<usize> = (0..n).collect();
    let (sc, model) = fit_pipeline(x_fit, y_fit, d, &all, c, None, opts);
    let test_rows: Vec<usize> = (0..y_test.len()).collect();
    let acc = accuracy(&sc, &model, x_test, y_test, d, &test_rows);
    Ok(ChoiceResult {
        accuracy: acc,
        majority,
        c,
        cv_accuracy,
        n_fit: n,
        n_test: y_test.len(),
    })
}

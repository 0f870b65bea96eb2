//! Small statistics used by the experiment reports: means and standard deviations, rank
//! correlation, log-linear fits and their residual spread, top-k overlap of rankings.

/// Arithmetic mean; NaN for no values.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Percent change of `v` from `base` (relative to |base|).
pub fn pct(v: f64, base: f64) -> f64 {
    100.0 * (v - base) / base.abs()
}

/// Ranks of `v` (1-based, ties get their average rank).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; NaN when either side is constant or shorter than 2.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman rank correlation (Pearson on average ranks); NaN when a value is not finite (a
/// missing score has no rank: ranking it would place it above every real one).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    pearson(&ranks(x), &ranks(y))
}

/// Least-squares fit `y = a + b·log10(x)`; returns (a, b, r²).
pub fn log_linear_fit(x: &[f64], y: &[f64]) -> Option<(f64, f64, f64)> {
    let pts: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| **a > 0.0 && b.is_finite())
        .map(|(a, b)| (a.log10(), *b))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let ss_tot: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = pts.iter().map(|p| (p.1 - a - b * p.0).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    Some((a, b, r2))
}

/// Standard deviation of the residuals of `y = a + b·log10(x)` over the points a fit uses
/// (x > 0, finite y), with n − 2 degrees of freedom; None for fewer than three points.
pub fn log_linear_residual_sd(x: &[f64], y: &[f64], a: f64, b: f64) -> Option<f64> {
    let res: Vec<f64> = x
        .iter()
        .zip(y)
        .filter(|(u, v)| **u > 0.0 && v.is_finite())
        .map(|(u, v)| v - a - b * u.log10())
        .collect();
    if res.len() < 3 {
        return None;
    }
    Some((res.iter().map(|r| r * r).sum::<f64>() / (res.len() - 2) as f64).sqrt())
}

/// Fraction of shared items among the first `k` of two rankings.
pub fn top_k_overlap(a: &[String], b: &[String], k: usize) -> f64 {
    let k = k.min(a.len()).min(b.len());
    if k == 0 {
        return f64::NAN;
    }
    let shared = a[..k].iter().filter(|x| b[..k].contains(x)).count();
    shared as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_maps_is_one() {
        let x = [1.0, 5.0, 2.0, 8.0, 3.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| v.powi(3) + 7.0).collect();
        assert!((spearman(&x, &y) - 1.0).abs() < 1e-12);
        let z: Vec<f64> = x.iter().map(|v| -v).collect();
        assert!((spearman(&x, &z) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_textbook_value() {
        // d = rank differences (0, -1, 1, 0, 0): rho = 1 - 6*2/(5*24) = 0.9
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [1.0, 3.0, 2.0, 4.0, 5.0];
        assert!((spearman(&x, &y) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn spearman_with_a_missing_score_is_undefined() {
        let x = [0.3, 0.2, f64::NAN];
        let y = [3.0, 2.0, 1.0];
        assert!(spearman(&x, &y).is_nan());
        assert!(spearman(&y, &[1.0, f64::INFINITY, 2.0]).is_nan());
    }

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn log_linear_recovers_line() {
        let x = [10.0, 100.0, 1000.0, 10000.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| 0.5 + 0.25 * v.log10()).collect();
        let (a, b, r2) = log_linear_fit(&x, &y).unwrap();
        assert!((a - 0.5).abs() < 1e-12 && (b - 0.25).abs() < 1e-12 && (r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mean_and_sample_sd() {
        assert!(mean(&[]).is_nan());
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        // deviations -2, -1, 3: squares sum to 14, over n - 1 = 2.
        assert!((sd(&[1.0, 2.0, 6.0]) - 7f64.sqrt()).abs() < 1e-12);
        assert_eq!(sd(&[4.0]), 0.0);
    }

    #[test]
    fn residual_sd_uses_n_minus_two() {
        let x = [10.0, 100.0, 1000.0, 10000.0];
        // residuals +0.1, -0.1, +0.1, -0.1 around 1 + 0·log10(x): sqrt(0.04 / 2).
        let y = [1.1, 0.9, 1.1, 0.9];
        let s = log_linear_residual_sd(&x, &y, 1.0, 0.0).unwrap();
        assert!((s - 0.02f64.sqrt()).abs() < 1e-12, "{s}");
        assert!(log_linear_residual_sd(&x[..2], &y[..2], 1.0, 0.0).is_none());
    }

    #[test]
    fn overlap_counts_shared_prefix_items() {
        let a: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let b: Vec<String> = ["b", "x", "a", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(top_k_overlap(&a, &b, 2), 0.5);
        assert_eq!(top_k_overlap(&a, &b, 3), 2.0 / 3.0);
    }
}

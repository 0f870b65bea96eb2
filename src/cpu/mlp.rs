//! defines: gelu_forward, gelu_backward, mlp_forward, mlp_backward
//!
//! The block MLP `fc2(gelu(fc1(x)))` with the exact (erf) GELU.
//! Dimension letters: R rows (tokens), D d_model, F d_ff.
//!
//! In f32, erf is `erf_f32` (a rational function evaluated in f64: within 0.53 ulp of the true
//! value, where libm's `erff` is within 0.87, and free of branches, so the GELU loops vectorise);
//! in f64 (the gradient checks) it is libm's `erf`.

use crate::cpu::float::Float;
use crate::cpu::linear::{linear_backward, linear_forward};
use rayon::prelude::*;

const CHUNK: usize = 4096;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / √(2π)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// erf(x) for |x| ≤ 3.92 as x·P(x²)/Q(x²) in f64, relative error below 2e-9 (a weighted
/// least-squares minimax fit of erf(x)/x on [0, 3.92]); beyond 3.92, erf rounds to ±1 in f32.
#[inline]
fn erf_f32(x: f32) -> f32 {
    const P: [f64; 7] = [
        1.128_379_169_146_202_4,
        0.185_134_746_390_814_54,
        0.054_243_576_730_322_964,
        0.003_838_556_961_829_384,
        0.000_376_743_833_690_786,
        4.608_838_715_814_663e-6,
        -1.279_768_223_557_391_9e-8,
    ];
    const Q: [f64; 6] = [
        1.0,
        0.497_404_803_357_167_47,
        0.113_873_239_636_183_05,
        0.015_429_863_794_413_464,
        0.001_301_491_254_696_046_3,
        6.239_544_800_638_52e-5,
    ];
    let x = (x as f64).clamp(-3.92, 3.92);
    let t = x * x;
    let p = (((((P[6] * t + P[5]) * t + P[4]) * t + P[3]) * t + P[2]) * t + P[1]) * t + P[0];
    let q = ((((Q[5] * t + Q[4]) * t + Q[3]) * t + Q[2]) * t + Q[1]) * t + Q[0];
    (x * p / q) as f32
}

/// erf in the precision of `F` (see the module comment).
#[inline]
fn erf<F: Float>(x: F) -> F {
    if std::mem::size_of::<F>() == 4 {
        F::from_f32(erf_f32(x.to_f32()))
    } else {
        x.erf()
    }
}

/// out = 0.5 · x · (1 + erf(x / √2))
pub fn gelu_forward<F: Float>(out: &mut [F], inp: &[F]) {
    let (half, c) = (F::from_f64(0.5), F::from_f64(FRAC_1_SQRT_2));
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = half * x * (F::ONE + erf(x * c));
            }
        });
}

/// backward of `out = 0.5 · x · (1 + erf(x / √2))`:
/// dinp = dout · (0.5 · (1 + erf(x / √2)) + x · exp(−x² / 2) / √(2π))
pub fn gelu_backward<F: Float>(dinp: &mut [F], dout: &[F], inp: &[F]) {
    let (half, c, k) = (
        F::from_f64(0.5),
        F::from_f64(FRAC_1_SQRT_2),
        F::from_f64(INV_SQRT_2PI),
    );
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((d, g), x)| {
            for ((d, &g), &x) in d.iter_mut().zip(g).zip(x) {
                let cdf = half * (F::ONE + erf(x * c));
                let pdf = k * (-half * x * x).exp();
                *d = g * (cdf + x * pdf);
            }
        });
}

/// pre = fc1(x); act = gelu(pre); out = fc2(act)
pub fn mlp_forward<F: Float>(
    out: &mut [F], // [R, D]
    pre: &mut [F], // [R, F] saved
    act: &mut [F], // [R, F] saved
    x: &[F],       // [R, D]
    w1: &[F],      // [F, D]
    b1: &[F],      // [F]
    w2: &[F],      // [D, F]
    b2: &[F],      // [D]
    r: usize,
    d: usize,
    f: usize,
    threads: usize,
) {
    linear_forward(pre, x, w1, b1, r, d, f, threads);
    gelu_forward(&mut act[..r * f], &pre[..r * f]);
    linear_forward(out, act, w2, b2, r, f, d, threads);
}

/// backward of `mlp_forward`: dx overwritten, dact/dpre scratch, weight gradients accumulate
/// (an empty one, a frozen tensor's, is skipped).
pub fn mlp_backward<F: Float>(
    dx: &mut [F],   // [R, D]
    dact: &mut [F], // [R, F] scratch
    dpre: &mut [F], // [R, F] scratch
    dw1: &mut [F],
    db1: &mut [F],
    dw2: &mut [F],
    db2: &mut [F],
    dout: &[F], // [R, D]
    x: &[F],
    pre: &[F],
    act: &[F],
    w1: &[F],
    w2: &[F],
    r: usize,
    d: usize,
    f: usize,
    threads: usize,
) {
    // out = fc2(act)
    linear_backward(Some(&mut *dact), dw2, db2, dout, act, w2, r, f, d, threads);
    // act = gelu(pre)
    gelu_backward(&mut dpre[..r * f], &dact[..r * f], &pre[..r * f]);
    // pre = fc1(x)
    linear_backward(Some(dx), dw1, db1, dpre, x, w1, r, d, f, threads);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance from the true erf (libm's f64 `erf`) in units of the last place of f32.
    fn ulps(got: f32, x: f32) -> f64 {
        let want = libm::erf(x as f64);
        let w = (want as f32).abs();
        let ulp = (f32::from_bits(w.to_bits() + 1) - w) as f64;
        (got as f64 - want).abs() / ulp
    }

    #[test]
    fn erf_f32_is_as_exact_as_libm() {
        let mut worst = 0f64;
        let mut bits = 0u32;
        while bits < f32::INFINITY.to_bits() {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                worst = worst.max(ulps(erf_f32(x), x));
            }
            bits += 1009;
        }
        assert!(worst <= 0.6, "erf_f32 is {worst} ulp off");
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert!(erf_f32(f32::NAN).is_nan());
        assert_eq!(erf_f32(0.0), 0.0);
    }
}

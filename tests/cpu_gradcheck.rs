//! Finite-difference checks, in f64, of every layer family's backward pass on the CPU reference,
//! and of the whole model on a tiny ragged config for each masking scheme. The f64 runs go
//! through the same generic functions the f32 model uses.

use ndt::batch::Batch;
use ndt::cpu::attention::{attention_backward, attention_forward};
use ndt::cpu::dropout::Dropout;
use ndt::cpu::embed::{embed_backward, embed_forward};
use ndt::cpu::layernorm::{layernorm_backward, layernorm_forward};
use ndt::cpu::linear::{linear_backward, linear_forward};
use ndt::cpu::mlp::{mlp_backward, mlp_forward};
use ndt::cpu::model::{model_backward, model_forward};
use ndt::cpu::poisson::{poisson_backward, poisson_forward};
use ndt::cpu::workspace::Workspace;
use ndt::model::dropout::DropoutCfg;
use ndt::model::init::init_params;
use ndt::model::shape::Layout;
use ndt::model::{ModelConfig, ParamTable};
use ndt::scheme::Scheme;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const H: f64 = 1e-5;

fn rvec(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Central differences of `f` with respect to every element of `x`.
fn numeric(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = xp[i];
            xp[i] = v + H;
            let up = f(&xp);
            xp[i] = v - H;
            let dn = f(&xp);
            xp[i] = v;
            (up - dn) / (2.0 * H)
        })
        .collect()
}

/// Analytic and numeric gradients agree elementwise to 1e-6 relative (1e-8 absolute), and the
/// gradient is not all zero (which would make the comparison vacuous).
fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: lengths");
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-8 + 1e-6 * a.abs().max(n.abs()),
            "{what}[{i}]: analytic {a:e}, numeric {n:e}"
        );
    }
    let norm: f64 = numeric.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm > 1e-6, "{what}: gradient is all zero");
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (r, i, o) = (5, 7, 3);
    let inp = rvec(&mut rng, r * i, 1.0);
    let w = rvec(&mut rng, o * i, 1.0);
    let b = rvec(&mut rng, o, 1.0);
    let wout = rvec(&mut rng, r * o, 1.0);
    let f = |inp: &[f64], w: &[f64], b: &[f64]| {
        let mut out = vec![0.0; r * o];
        linear_forward(&mut out, inp, w, b, r, i, o, 1);
        dot(&out, &wout)
    };
    let mut dinp = vec![f64::NAN; r * i];
    // weight gradients accumulate: start from 1 and subtract it afterwards
    let mut dw = vec![1.0; o * i];
    let mut db = vec![1.0; o];
    linear_backward(
        Some(&mut dinp),
        &mut dw,
        &mut db,
        &wout,
        &inp,
        &w,
        r,
        i,
        o,
        2,
    );
    dw.iter_mut().for_each(|v| *v -= 1.0);
    db.iter_mut().for_each(|v| *v -= 1.0);
    assert_grad("linear dinp", &dinp, &numeric(&inp, |x| f(x, &w, &b)));
    assert_grad("linear dw", &dw, &numeric(&w, |x| f(&inp, x, &b)));
    assert_grad("linear db", &db, &numeric(&b, |x| f(&inp, &w, x)));
}

#[test]
fn softsign_embed_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (r, e, g, d) = (4, 5, 9, 3);
    let h = rvec(&mut rng, r * e, 2.0);
    let w1 = rvec(&mut rng, g * e, 1.0);
    let b1 = rvec(&mut rng, g, 1.0);
    let w2 = rvec(&mut rng, d * g, 1.0);
    let b2 = rvec(&mut rng, d, 1.0);
    let wout = rvec(&mut rng, r * d, 1.0);
    let f = |h: &[f64], w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]| {
        let (mut out, mut a1, mut sg) = (vec![0.0; r * d], vec![0.0; r * g], vec![0.0; r * g]);
        embed_forward(&mut out, &mut a1, &mut sg, h, w1, b1, w2, b2, r, e, g, d, 1);
        dot(&out, &wout)
    };
    let (mut out, mut a1, mut sg) = (vec![0.0; r * d], vec![0.0; r * g], vec![0.0; r * g]);
    embed_forward(
        &mut out, &mut a1, &mut sg, &h, &w1, &b1, &w2, &b2, r, e, g, d, 1,
    );
    let mut dh = vec![0.0; r * e];
    let (mut dsg, mut da1) = (vec![0.0; r * g], vec![0.0; r * g]);
    let (mut dw1, mut db1, mut dw2, mut db2) = (
        vec![0.0; g * e],
        vec![0.0; g],
        vec![0.0; d * g],
        vec![0.0; d],
    );
    embed_backward(
        &mut dh, &mut dsg, &mut da1, &mut dw1, &mut db1, &mut dw2, &mut db2, &wout, &h, &a1, &sg,
        &w1, &w2, r, e, g, d, 1,
    );
    assert_grad("embed dh", &dh, &numeric(&h, |x| f(x, &w1, &b1, &w2, &b2)));
    assert_grad(
        "embed dw1",
        &dw1,
        &numeric(&w1, |x| f(&h, x, &b1, &w2, &b2)),
    );
    assert_grad(
        "embed db1",
        &db1,
        &numeric(&b1, |x| f(&h, &w1, x, &w2, &b2)),
    );
    assert_grad(
        "embed dw2",
        &dw2,
        &numeric(&w2, |x| f(&h, &w1, &b1, x, &b2)),
    );
    assert_grad(
        "embed db2",
        &db2,
        &numeric(&b2, |x| f(&h, &w1, &b1, &w2, x)),
    );
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (r, c) = (4, 37);
    let inp: Vec<f64> = rvec(&mut rng, r * c, 2.0).iter().map(|v| v + 0.5).collect();
    let w = rvec(&mut rng, c, 1.5);
    let b = rvec(&mut rng, c, 1.0);
    let wout = rvec(&mut rng, r * c, 1.0);
    let f = |inp: &[f64], w: &[f64], b: &[f64]| {
        let (mut out, mut m, mut s) = (vec![0.0; r * c], vec![0.0; r], vec![0.0; r]);
        layernorm_forward(&mut out, &mut m, &mut s, inp, w, b, r, c, 1e-5);
        dot(&out, &wout)
    };
    let (mut out, mut m, mut s) = (vec![0.0; r * c], vec![0.0; r], vec![0.0; r]);
    layernorm_forward(&mut out, &mut m, &mut s, &inp, &w, &b, r, c, 1e-5);
    // dinp accumulates: start from 2 and subtract it
    let mut dinp = vec![2.0; r * c];
    let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
    layernorm_backward(&mut dinp, &mut dw, &mut db, &wout, &inp, &w, &m, &s, r, c);
    dinp.iter_mut().for_each(|v| *v -= 2.0);
    assert_grad("layernorm dinp", &dinp, &numeric(&inp, |x| f(x, &w, &b)));
    assert_grad("layernorm dw", &dw, &numeric(&w, |x| f(&inp, x, &b)));
    assert_grad("layernorm db", &db, &numeric(&b, |x| f(&inp, &w, x)));
}

fn check_attention(causal: bool, drop: Dropout, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (b, s, d, h) = (2, 7, 6, 2);
    let qkv = rvec(&mut rng, b * s * 3 * d, 1.5);
    let wout = rvec(&mut rng, b * s * d, 1.0);
    let bhss = b * h * s * s;
    let run = |qkv: &[f64]| {
        let (mut y, mut att, mut attd) = (vec![0.0; b * s * d], vec![0.0; bhss], vec![0.0; bhss]);
        attention_forward(&mut y, &mut att, &mut attd, qkv, b, s, d, h, causal, drop);
        (y, att, attd)
    };
    let (_, att, attd) = run(&qkv);
    let mut dqkv = vec![f64::NAN; b * s * 3 * d];
    let mut datt = vec![f64::NAN; bhss];
    attention_backward(
        &mut dqkv, &mut datt, &wout, &qkv, &att, &attd, b, s, d, h, drop,
    );
    let num = numeric(&qkv, |x| dot(&run(x).0, &wout));
    assert_grad(
        &format!("attention causal={causal} p={} dqkv", drop.p),
        &dqkv,
        &num,
    );
}

#[test]
fn attention_backward_matches_finite_differences() {
    check_attention(false, Dropout::OFF, 4);
    check_attention(true, Dropout::OFF, 5);
    check_attention(false, Dropout::new(0.3, 9, 1), 6);
    check_attention(true, Dropout::new(0.3, 9, 4), 7);
}

#[test]
fn gelu_mlp_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (r, d, ff) = (5, 4, 11);
    let x = rvec(&mut rng, r * d, 2.0);
    let w1 = rvec(&mut rng, ff * d, 1.0);
    let b1 = rvec(&mut rng, ff, 1.0);
    let w2 = rvec(&mut rng, d * ff, 1.0);
    let b2 = rvec(&mut rng, d, 1.0);
    let wout = rvec(&mut rng, r * d, 1.0);
    let f = |x: &[f64], w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64]| {
        let (mut out, mut pre, mut act) = (vec![0.0; r * d], vec![0.0; r * ff], vec![0.0; r * ff]);
        mlp_forward(&mut out, &mut pre, &mut act, x, w1, b1, w2, b2, r, d, ff, 1);
        dot(&out, &wout)
    };
    let (mut out, mut pre, mut act) = (vec![0.0; r * d], vec![0.0; r * ff], vec![0.0; r * ff]);
    mlp_forward(
        &mut out, &mut pre, &mut act, &x, &w1, &b1, &w2, &b2, r, d, ff, 1,
    );
    let mut dx = vec![0.0; r * d];
    let (mut dact, mut dpre) = (vec![0.0; r * ff], vec![0.0; r * ff]);
    let (mut dw1, mut db1, mut dw2, mut db2) = (
        vec![0.0; ff * d],
        vec![0.0; ff],
        vec![0.0; d * ff],
        vec![0.0; d],
    );
    mlp_backward(
        &mut dx, &mut dact, &mut dpre, &mut dw1, &mut db1, &mut dw2, &mut db2, &wout, &x, &pre,
        &act, &w1, &w2, r, d, ff, 1,
    );
    assert_grad("mlp dx", &dx, &numeric(&x, |v| f(v, &w1, &b1, &w2, &b2)));
    assert_grad("mlp dw1", &dw1, &numeric(&w1, |v| f(&x, v, &b1, &w2, &b2)));
    assert_grad("mlp db1", &db1, &numeric(&b1, |v| f(&x, &w1, v, &w2, &b2)));
    assert_grad("mlp dw2", &dw2, &numeric(&w2, |v| f(&x, &w1, &b1, v, &b2)));
    assert_grad("mlp db2", &db2, &numeric(&b2, |v| f(&x, &w1, &b1, &w2, v)));
}

#[test]
fn poisson_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 23;
    let r = rvec(&mut rng, n, 1.5);
    let x: Vec<f64> = (0..n).map(|_| rng.random_range(0..4) as f64).collect();
    let target: Vec<u8> = (0..n).map(|i| (i % 3 != 1) as u8).collect();
    let (loss, nt) = poisson_forward(&r, &x, &target);
    assert_eq!(nt, target.iter().filter(|&&t| t == 1).count());
    // the loss by its definition, written out here
    let want: f64 = (0..n)
        .filter(|&i| target[i] == 1)
        .map(|i| r[i].exp() - x[i] * r[i])
        .sum::<f64>()
        / nt as f64;
    assert!((loss - want).abs() < 1e-12);
    let mut dr = vec![f64::NAN; n];
    poisson_backward(&mut dr, &r, &x, &target, nt);
    assert_grad(
        "poisson dr",
        &dr,
        &numeric(&r, |v| poisson_forward(v, &x, &target).0),
    );
    assert!(poisson_forward(&r, &x, &vec![0u8; n]).0.is_nan());
}

/// A tiny ragged config: odd T, 2 sessions with N = 5 and 3, sizes that divide nothing.
fn tiny_config() -> ModelConfig {
    ModelConfig {
        d_model: 8,
        d_tok: 6,
        d_embed_hidden: 10,
        n_layers: 2,
        n_heads: 2,
        d_ff: 12,
        n_bins: 7,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("s0".to_string(), 5), ("s1".to_string(), 3)]),
    }
}

fn tiny_batch(cfg: &ModelConfig, sid: &str, scheme: Scheme, b: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (t, n) = (cfg.n_bins, cfg.sessions[sid]);
    let len = b * t * n;
    let counts: Vec<f32> = (0..len).map(|_| rng.random_range(0..4) as f32).collect();
    let mut mask: Vec<u8> = (0..len).map(|_| rng.random_bool(0.3) as u8).collect();
    mask[0] = 1;
    Batch {
        session: 0,
        session_id: sid.to_string(),
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        target: mask.clone(),
        mask,
        scheme,
    }
}

fn check_model(scheme: Scheme, sid: &str, drop: DropoutCfg, seed: u64) {
    let cfg = tiny_config();
    let table = ParamTable::new(&cfg);
    let lay = Layout::new(&cfg, &table);
    // Larger-than-init weights so that every layer contributes visibly to the gradient.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let params: Vec<f64> = init_params(&cfg, &table, seed)
        .iter()
        .map(|&v| v as f64 * 1.5 + rng.random_range(-0.05..0.05))
        .collect();
    let batch = tiny_batch(&cfg, sid, scheme, 3, seed + 100);
    let mut ws = Workspace::<f64>::new();
    let (_, nt) = model_forward(&mut ws, &params, &lay, &cfg, &batch, drop, 2);
    let mut grads = vec![0.0; table.total];
    model_backward(
        &mut ws, &mut grads, &params, &lay, &cfg, &batch, nt, drop, 2,
    );
    let num = numeric(&params, |p| {
        let mut ws = Workspace::<f64>::new();
        model_forward(&mut ws, p, &lay, &cfg, &batch, drop, 1).0
    });
    for e in &table.entries {
        let what = format!("model {scheme} {sid} p={} {}", drop.p, e.name);
        let (a, n) = (&grads[e.range()], &num[e.range()]);
        if e.session.as_deref().is_some_and(|s| s != sid) {
            assert!(
                a.iter().all(|&v| v == 0.0),
                "{what}: other session got gradient"
            );
            continue;
        }
        if e.name == "mask_tokens" {
            // only the batch scheme's row gets a gradient
            let d = cfg.d_model;
            for row in 0..4 {
                let r = row * d..(row + 1) * d;
                if row == scheme.index() {
                    assert_grad(&what, &a[r.clone()], &n[r]);
                } else {
                    assert!(a[r.clone()].iter().all(|&v| v == 0.0), "{what} row {row}");
                    assert!(n[r].iter().all(|&v| v.abs() < 1e-9), "{what} row {row}");
                }
            }
            continue;
        }
        assert_grad(&what, a, n);
    }
}

#[test]
fn model_backward_matches_finite_differences_for_each_scheme() {
    check_model(Scheme::CoSmooth, "s0", DropoutCfg::OFF, 11);
    check_model(Scheme::Forward, "s1", DropoutCfg::OFF, 12);
    check_model(Scheme::InterRegion, "s1", DropoutCfg::OFF, 13);
    check_model(Scheme::IntraRegion, "s0", DropoutCfg::OFF, 14);
}

#[test]
fn model_backward_with_dropout_matches_finite_differences() {
    // The draws are a pure function of (seed, stream, index): the perturbed passes see the
    // same masks, so the dropped-out model is differentiable as a fixed function.
    let drop = DropoutCfg { p: 0.2, seed: 77 };
    check_model(Scheme::Forward, "s0", drop, 15);
    check_model(Scheme::CoSmooth, "s1", drop, 16);
}

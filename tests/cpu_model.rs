//! Behaviour of the CPU reference model: dropout, causality, AdamW against torch's formula,
//! the training step's wiring (clipping, frozen elements, determinism), f32 against f64, and
//! checkpoints (bit-exact round trip, bad files rejected with the file named).

use ndt::backend::{Backend, ForwardOpts, StepHyper};
use ndt::batch::Batch;
use ndt::cpu::CpuBackend;
use ndt::cpu::adamw::{adamw_update, clip_coef};
use ndt::cpu::attention::attention_forward;
use ndt::cpu::dropout::{Dropout, dropout_add_forward, dropout_forward};
use ndt::cpu::model::{model_backward, model_forward};
use ndt::cpu::workspace::Workspace;
use ndt::model::checkpoint::{load, save, transfer};
use ndt::model::dropout::DropoutCfg;
use ndt::model::init::{init_params, init_session};
use ndt::model::shape::Layout;
use ndt::model::{ModelConfig, ParamTable};
use ndt::rng;
use ndt::scheme::Scheme;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn small_config() -> ModelConfig {
    ModelConfig {
        d_model: 16,
        d_tok: 10,
        d_embed_hidden: 20,
        n_layers: 3,
        n_heads: 4,
        d_ff: 24,
        n_bins: 9,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("a".to_string(), 7), ("b".to_string(), 4)]),
    }
}

fn batch(cfg: &ModelConfig, sid: &str, scheme: Scheme, b: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (t, n) = (cfg.n_bins, cfg.sessions[sid]);
    let len = b * t * n;
    let counts: Vec<f32> = (0..len).map(|_| rng.random_range(0..5) as f32).collect();
    let mut mask: Vec<u8> = (0..len).map(|_| rng.random_bool(0.3) as u8).collect();
    mask[len - 1] = 1;
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

fn backend(cfg: &ModelConfig, seed: u64) -> CpuBackend {
    let table = ParamTable::new(cfg);
    let mut be = CpuBackend::new(cfg.clone(), 2);
    be.set_params(&init_params(cfg, &table, seed)).unwrap();
    be
}

fn hyper(step: u64) -> StepHyper {
    StepHyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        clip: 1.0,
        dropout: 0.2,
        step,
        seed: 1000 + step,
    }
}

// ---------------------------------------------------------------- dropout

#[test]
fn dropout_with_p_zero_is_identity() {
    let x: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut out = vec![f32::NAN; x.len()];
    dropout_forward(&mut out, &x, Dropout::new(0.0, 5, 3), 0);
    assert_eq!(out, x);
    let mut z = vec![1.0f32; x.len()];
    dropout_add_forward(&mut z, &x, Dropout::new(0.0, 5, 3));
    assert!(z.iter().zip(&x).all(|(z, x)| *z == 1.0 + x));
    // The model with p = 0 in training equals the evaluation pass.
    let cfg = small_config();
    let b = batch(&cfg, "a", Scheme::CoSmooth, 3, 1);
    let mut be = backend(&cfg, 1);
    let eval = be.forward(&b, &ForwardOpts::default()).unwrap();
    let table = ParamTable::new(&cfg);
    let lay = Layout::new(&cfg, &table);
    let params = be.params().unwrap();
    let mut ws = Workspace::<f32>::new();
    let drop = DropoutCfg { p: 0.0, seed: 99 };
    let (loss, _) = model_forward(&mut ws, &params, &lay, &cfg, &b, drop, 2);
    assert_eq!(loss as f32, eval.loss);
    assert_eq!(&ws.r[..eval.log_rates.len()], &eval.log_rates[..]);
}

#[test]
fn dropout_follows_the_documented_counter_rule() {
    let (p, seed, stream) = (0.25f32, 17u64, 5u64);
    let n = 40_000;
    let x = vec![2.0f32; n];
    let mut out = vec![0.0f32; n];
    let base = 123;
    dropout_forward(&mut out, &x, Dropout::new(p, seed, stream), base);
    let key = rng::key(seed, stream);
    let mut dropped = 0;
    for (i, &o) in out.iter().enumerate() {
        let keep = rng::uniform(key, base + i as u64) >= p;
        if keep {
            assert!((o - 2.0 / 0.75).abs() < 1e-6);
        } else {
            assert_eq!(o, 0.0);
            dropped += 1;
        }
    }
    let frac = dropped as f64 / n as f64;
    assert!((frac - 0.25).abs() < 0.01, "dropped fraction {frac}");
}

#[test]
fn training_dropout_depends_on_the_seed_only() {
    let cfg = small_config();
    let b = batch(&cfg, "b", Scheme::Forward, 2, 3);
    let table = ParamTable::new(&cfg);
    let lay = Layout::new(&cfg, &table);
    let params = init_params(&cfg, &table, 4);
    let run = |seed: u64, threads: usize| {
        let mut ws = Workspace::<f32>::new();
        let drop = DropoutCfg { p: 0.2, seed };
        model_forward(&mut ws, &params, &lay, &cfg, &b, drop, threads).0
    };
    assert_eq!(run(1, 1), run(1, 2));
    assert_ne!(run(1, 2), run(2, 2));
    assert_ne!(run(1, 2), {
        let mut ws = Workspace::<f32>::new();
        model_forward(&mut ws, &params, &lay, &cfg, &b, DropoutCfg::OFF, 2).0
    });
}

// ---------------------------------------------------------------- causality

#[test]
fn causal_attention_output_ignores_later_positions() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (b, s, d, h) = (2, 11, 12, 3);
    let qkv: Vec<f32> = (0..b * s * 3 * d)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let bhss = b * h * s * s;
    let run = |qkv: &[f32], causal: bool| {
        let mut y = vec![0.0f32; b * s * d];
        let (mut att, mut attd) = (vec![0.0; bhss], vec![0.0; bhss]);
        attention_forward(
            &mut y,
            &mut att,
            &mut attd,
            qkv,
            b,
            s,
            d,
            h,
            causal,
            Dropout::OFF,
        );
        y
    };
    for i in [0, 4, s - 2] {
        let mut changed = qkv.clone();
        for bi in 0..b {
            for row in i + 1..s {
                for v in &mut changed[(bi * s + row) * 3 * d..(bi * s + row + 1) * 3 * d] {
                    *v += 1.5;
                }
            }
        }
        let (y0, y1) = (run(&qkv, true), run(&changed, true));
        for bi in 0..b {
            let r = bi * s * d..(bi * s + i + 1) * d;
            assert_eq!(y0[r.clone()], y1[r], "causal output up to row {i} changed");
        }
        // the same change does reach earlier rows without the causal mask
        assert_ne!(run(&qkv, false)[..d], run(&changed, false)[..d]);
    }
}

#[test]
fn forward_scheme_log_rates_ignore_later_bins() {
    let cfg = small_config();
    let mut be = backend(&cfg, 8);
    let b0 = batch(&cfg, "a", Scheme::Forward, 2, 9);
    let n = b0.n;
    let t0 = 4;
    let mut b1 = b0.clone();
    for bi in 0..b1.b {
        for t in t0 + 1..b1.t {
            for j in 0..n {
                let k = (bi * b1.t + t) * n + j;
                b1.counts[k] += 3.0;
                b1.mask[k] = 0;
            }
        }
    }
    let r0 = be.forward(&b0, &ForwardOpts::default()).unwrap().log_rates;
    let r1 = be.forward(&b1, &ForwardOpts::default()).unwrap().log_rates;
    for bi in 0..b0.b {
        let r = bi * b0.t * n..(bi * b0.t + t0 + 1) * n;
        assert_eq!(r0[r.clone()], r1[r], "bins ≤ {t0} saw the future");
        let later = (bi * b0.t + t0 + 1) * n..(bi + 1) * b0.t * n;
        assert_ne!(r0[later.clone()], r1[later]);
    }
    // Without causal attention (co-smoothing prompt) the early bins do see the change.
    let (mut c0, mut c1) = (b0.clone(), b1.clone());
    c0.scheme = Scheme::CoSmooth;
    c1.scheme = Scheme::CoSmooth;
    let r0 = be.forward(&c0, &ForwardOpts::default()).unwrap().log_rates;
    let r1 = be.forward(&c1, &ForwardOpts::default()).unwrap().log_rates;
    assert_ne!(r0[..n], r1[..n]);
}

// ---------------------------------------------------------------- AdamW

#[test]
fn adamw_matches_torch_formula_for_three_steps() {
    // torch.optim.AdamW, written out in f64:
    //   p ← p·(1 − lr·wd); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
    //   p ← p − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + eps)
    let p0 = [0.5f32, -1.25, 2.0, 0.0, 3.0];
    let grads = [
        [0.1f32, -0.4, 2.5, 1e-4, 7.0],
        [-0.3, 0.2, 1.5, -2e-4, 7.0],
        [0.05, 0.9, -3.0, 3e-4, 7.0],
    ];
    let trainable = [1u8, 1, 1, 1, 0];
    let scale = 0.5f32; // a clipping factor applied to the gradients first
    let (lr, b1, b2, eps, wd) = (0.01f64, 0.9f64, 0.999f64, 1e-8f64, 0.1f64);
    let mut p = p0;
    let (mut m, mut v) = ([0f32; 5], [0f32; 5]);
    let mut want: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    let (mut wm, mut wv) = (vec![0f64; 5], vec![0f64; 5]);
    for (t, g) in grads.iter().enumerate() {
        let step = t as u64 + 1;
        let hp = StepHyper {
            lr: lr as f32,
            beta1: b1 as f32,
            beta2: b2 as f32,
            eps: eps as f32,
            weight_decay: wd as f32,
            clip: 1.0,
            dropout: 0.0,
            step,
            seed: 0,
        };
        adamw_update(&mut p, &mut m, &mut v, g, &trainable, &hp, scale);
        for i in 0..4 {
            let g = g[i] as f64 * scale as f64;
            want[i] *= 1.0 - lr * wd;
            wm[i] = b1 * wm[i] + (1.0 - b1) * g;
            wv[i] = b2 * wv[i] + (1.0 - b2) * g * g;
            let mhat = wm[i] / (1.0 - b1.powi(step as i32));
            let vhat = wv[i] / (1.0 - b2.powi(step as i32));
            want[i] -= lr * mhat / (vhat.sqrt() + eps);
        }
        for i in 0..4 {
            let err = (p[i] as f64 - want[i]).abs();
            assert!(
                err <= 2e-6 * want[i].abs().max(1e-3),
                "step {step} element {i}: got {}, want {}",
                p[i],
                want[i]
            );
        }
        assert_eq!(p[4], 3.0, "frozen element moved");
        assert_eq!((m[4], v[4]), (0.0, 0.0));
    }
    assert!((clip_coef(4.0, 1.0) - 1.0 / (4.0 + 1e-6)).abs() < 1e-9);
    assert_eq!(clip_coef(0.5, 1.0), 1.0);
    assert_eq!(clip_coef(100.0, 0.0), 1.0);
}

// ---------------------------------------------------------------- the training step

#[test]
fn train_step_reports_the_gradient_norm_and_leaves_frozen_elements() {
    let cfg = small_config();
    let table = ParamTable::new(&cfg);
    let b = batch(&cfg, "b", Scheme::IntraRegion, 3, 10);
    let mut be = backend(&cfg, 11);
    let p0 = be.params().unwrap();
    let (out, g) = be.loss_and_grad(&b).unwrap();
    let trainable = table.session_only_mask("b");
    let norm: f64 = g
        .iter()
        .zip(&trainable)
        .filter(|(_, t)| **t == 1)
        .map(|(g, _)| *g as f64 * *g as f64)
        .sum::<f64>()
        .sqrt();
    be.set_trainable(&trainable).unwrap();
    let mut hp = hyper(1);
    hp.dropout = 0.0;
    let st = be.train_step(&b, &hp).unwrap();
    assert_eq!(st.loss, out.loss);
    assert!(
        (st.grad_norm as f64 - norm).abs() <= 1e-6 * norm,
        "{} vs {norm}",
        st.grad_norm
    );
    assert_eq!(st.n_targets, b.target.iter().filter(|&&t| t == 1).count());
    let p1 = be.params().unwrap();
    for (i, ((a, b), t)) in p0.iter().zip(&p1).zip(&trainable).enumerate() {
        if *t == 0 {
            assert_eq!(a, b, "frozen element {i} changed");
        }
    }
    let moved = table.slice(&p1, "sessions.b.token") != table.slice(&p0, "sessions.b.token");
    assert!(moved, "trainable session token did not move");
}

#[test]
fn train_step_equals_loss_and_grad_then_clip_then_adamw() {
    let cfg = small_config();
    let b = batch(&cfg, "a", Scheme::CoSmooth, 2, 12);
    let mut be = backend(&cfg, 13);
    let mut hp = hyper(1);
    hp.dropout = 0.0;
    hp.clip = 0.05; // small enough to clip
    let p0 = be.params().unwrap();
    let (_, g) = be.loss_and_grad(&b).unwrap();
    let st = be.train_step(&b, &hp).unwrap();
    assert!(st.grad_norm > hp.clip);
    let (mut p, mut m, mut v) = (p0, vec![0.0; g.len()], vec![0.0; g.len()]);
    let coef = clip_coef(st.grad_norm, hp.clip);
    adamw_update(&mut p, &mut m, &mut v, &g, &vec![1; g.len()], &hp, coef);
    assert_eq!(be.params().unwrap(), p);
    assert_eq!(be.moments().unwrap(), (m, v));
}

#[test]
fn training_is_bit_reproducible_and_resumable() {
    let cfg = small_config();
    let batches = [
        batch(&cfg, "a", Scheme::Forward, 3, 20),
        batch(&cfg, "b", Scheme::CoSmooth, 2, 21),
        batch(&cfg, "a", Scheme::InterRegion, 3, 22),
        batch(&cfg, "b", Scheme::Forward, 3, 23),
    ];
    let run = |be: &mut CpuBackend, steps: std::ops::Range<usize>| {
        for s in steps {
            be.train_step(&batches[s], &hyper(s as u64 + 1)).unwrap();
        }
    };
    let mut a = backend(&cfg, 30);
    run(&mut a, 0..4);
    let mut b = backend(&cfg, 30);
    run(&mut b, 0..2);
    // resume from params and moments into a fresh backend
    let (m, v) = b.moments().unwrap();
    let mut c = CpuBackend::new(cfg.clone(), 2);
    c.set_params(&b.params().unwrap()).unwrap();
    c.set_moments(&m, &v).unwrap();
    run(&mut c, 2..4);
    assert_eq!(a.params().unwrap(), c.params().unwrap());
    assert_eq!(a.moments().unwrap(), c.moments().unwrap());
    assert_ne!(a.params().unwrap(), backend(&cfg, 30).params().unwrap());
}

#[test]
fn f32_model_agrees_with_f64_model() {
    let cfg = small_config();
    let table = ParamTable::new(&cfg);
    let lay = Layout::new(&cfg, &table);
    let b = batch(&cfg, "a", Scheme::Forward, 4, 40);
    let p32 = init_params(&cfg, &table, 41);
    let p64: Vec<f64> = p32.iter().map(|&v| v as f64).collect();
    let drop = DropoutCfg { p: 0.1, seed: 5 };
    let mut w32 = Workspace::<f32>::new();
    let mut w64 = Workspace::<f64>::new();
    let (l32, nt) = model_forward(&mut w32, &p32, &lay, &cfg, &b, drop, 2);
    let (l64, _) = model_forward(&mut w64, &p64, &lay, &cfg, &b, drop, 2);
    assert!((l32 - l64).abs() <= 1e-5 * l64.abs(), "{l32} vs {l64}");
    let mut g32 = vec![0f32; table.total];
    let mut g64 = vec![0f64; table.total];
    model_backward(&mut w32, &mut g32, &p32, &lay, &cfg, &b, nt, drop, 2);
    model_backward(&mut w64, &mut g64, &p64, &lay, &cfg, &b, nt, drop, 2);
    for e in &table.entries {
        let (a, w) = (&g32[e.range()], &g64[e.range()]);
        let num: f64 = a.iter().zip(w).map(|(&a, &w)| (a as f64 - w).powi(2)).sum();
        let den: f64 = w.iter().map(|w| w * w).sum();
        if den == 0.0 {
            assert!(a.iter().all(|&v| v == 0.0), "{}", e.name);
        } else {
            assert!(
                (num / den).sqrt() < 1e-4,
                "{}: rel err {}",
                e.name,
                (num / den).sqrt()
            );
        }
    }
}

#[test]
fn features_are_block_outputs_without_prefix() {
    let cfg = small_config();
    let mut be = backend(&cfg, 50);
    let b = batch(&cfg, "b", Scheme::CoSmooth, 2, 51);
    let last = cfg.n_layers - 1;
    let out = be
        .forward(
            &b,
            &ForwardOpts {
                capture_block: Some(last),
            },
        )
        .unwrap();
    let f = out.features.unwrap();
    let d = cfg.d_model;
    assert_eq!(f.len(), b.b * b.t * d);
    // log-rates = stitch_out(LN_f(features of the last block)), recomputed here in f64
    let table = ParamTable::new(&cfg);
    let p = be.params().unwrap();
    let (lw, lb) = (table.slice(&p, "ln_f.weight"), table.slice(&p, "ln_f.bias"));
    let (ow, ob) = (
        table.slice(&p, "sessions.b.stitch_out.weight"),
        table.slice(&p, "sessions.b.stitch_out.bias"),
    );
    for (row, x) in f.chunks(d).enumerate() {
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let y: Vec<f64> = (0..d)
            .map(|j| (x[j] as f64 - mean) / (var + 1e-5).sqrt() * lw[j] as f64 + lb[j] as f64)
            .collect();
        for k in 0..b.n {
            let r: f64 = ob[k] as f64 + (0..d).map(|j| ow[k * d + j] as f64 * y[j]).sum::<f64>();
            let got = out.log_rates[row * b.n + k] as f64;
            assert!((got - r).abs() < 1e-4, "row {row} neuron {k}: {got} vs {r}");
        }
    }
    assert!(
        be.forward(
            &b,
            &ForwardOpts {
                capture_block: Some(cfg.n_layers)
            }
        )
        .is_err()
    );
}

#[test]
fn batches_that_do_not_fit_are_rejected() {
    let cfg = small_config();
    let mut be = backend(&cfg, 60);
    let mut b = batch(&cfg, "a", Scheme::CoSmooth, 2, 61);
    b.session_id = "zzz".into();
    let e = be
        .forward(&b, &ForwardOpts::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("zzz"), "{e}");
    let mut b = batch(&cfg, "a", Scheme::CoSmooth, 2, 61);
    b.session_id = "b".into();
    assert!(be.loss_and_grad(&b).is_err());
    let b = batch(&cfg, "a", Scheme::CoSmooth, 2, 61);
    let mut hp = hyper(1);
    hp.dropout = 1.0;
    assert!(be.train_step(&b, &hp).is_err());
}

// ---------------------------------------------------------------- checkpoints

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ndt-cpu-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn assert_rejected(path: &Path, needle: &str) {
    let e = load(path).expect_err("bad checkpoint accepted").to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    assert!(
        e.contains(needle),
        "error '{e}' does not mention '{needle}'"
    );
}

#[test]
fn checkpoint_round_trip_is_bit_exact() {
    let cfg = small_config();
    let table = ParamTable::new(&cfg);
    let mut params = init_params(&cfg, &table, 70);
    params[3] = f32::from_bits(0x0000_0001); // a subnormal survives
    params[4] = -0.0;
    let meta = BTreeMap::from([
        ("step".to_string(), "123".to_string()),
        ("config".to_string(), "ignored".to_string()),
    ]);
    let path = tmp("round.safetensors");
    save(&path, &cfg, &table, &params, &meta).unwrap();
    let (cfg2, p2, meta2) = load(&path).unwrap();
    assert_eq!(cfg2, cfg);
    assert_eq!(
        params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        p2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(
        meta2,
        BTreeMap::from([("step".to_string(), "123".to_string())])
    );
}

/// Writes a safetensors file from (name, shape, dtype) triples with the given config JSON.
fn write_raw(path: &Path, tensors: &[(String, Vec<usize>, Dtype)], config: Option<&str>) {
    let bufs: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, s, dt)| vec![0u8; s.iter().product::<usize>() * dt.bitsize() / 8])
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bufs)
        .map(|((n, s, dt), b)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    let meta = config.map(|c| HashMap::from([("config".to_string(), c.to_string())]));
    std::fs::write(path, safetensors::tensor::serialize(views, meta).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints_are_rejected_naming_the_file() {
    let cfg = small_config();
    let table = ParamTable::new(&cfg);
    let json = serde_json::to_string(&cfg).unwrap();
    let good: Vec<(String, Vec<usize>, Dtype)> = table
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.shape.clone(), Dtype::F32))
        .collect();

    let p = tmp("ok.safetensors");
    write_raw(&p, &good, Some(&json));
    assert!(load(&p).is_ok());

    let mut extra = good.clone();
    extra.push(("sessions.zzz.token".into(), vec![16], Dtype::F32));
    let p = tmp("extra.safetensors");
    write_raw(&p, &extra, Some(&json));
    assert_rejected(&p, "unknown tensor 'sessions.zzz.token'");

    let p = tmp("missing.safetensors");
    write_raw(&p, &good[1..], Some(&json));
    assert_rejected(&p, "missing tensor 'sessions.a.stitch_in.weight'");

    let mut shape = good.clone();
    shape[0].1 = vec![10, 8];
    let p = tmp("shape.safetensors");
    write_raw(&p, &shape, Some(&json));
    assert_rejected(&p, "shape");

    let mut dtype = good.clone();
    dtype[2].2 = Dtype::F16;
    let p = tmp("dtype.safetensors");
    write_raw(&p, &dtype, Some(&json));
    assert_rejected(&p, "dtype");

    let p = tmp("noconfig.safetensors");
    write_raw(&p, &good, None);
    assert_rejected(&p, "config");

    let p = tmp("badconfig.safetensors");
    write_raw(&p, &good, Some("{\"d_model\": 3}"));
    assert_rejected(&p, "config");

    let mut heads = cfg.clone();
    heads.n_heads = 5;
    let p = tmp("heads.safetensors");
    write_raw(&p, &good, Some(&serde_json::to_string(&heads).unwrap()));
    assert_rejected(&p, "n_heads");

    let mut huge = cfg.clone();
    huge.d_model = 1 << 40;
    let p = tmp("huge.safetensors");
    write_raw(&p, &good, Some(&serde_json::to_string(&huge).unwrap()));
    assert_rejected(&p, "d_model");

    // a good file cut short, and a file that is not safetensors at all
    let ok = std::fs::read(tmp("ok.safetensors")).unwrap();
    let p = tmp("truncated.safetensors");
    std::fs::write(&p, &ok[..ok.len() - 10]).unwrap();
    assert_rejected(&p, "safetensors");
    let p = tmp("garbage.safetensors");
    std::fs::write(&p, b"this is not a checkpoint").unwrap();
    assert_rejected(&p, "safetensors");
    let p = tmp("absent.safetensors");
    assert!(
        load(&p)
            .unwrap_err()
            .to_string()
            .contains("absent.safetensors")
    );
}

#[test]
fn transfer_copies_matching_tensors_and_a_new_session_gets_fresh_init() {
    let cfg = small_config();
    let table = ParamTable::new(&cfg);
    let src = init_params(&cfg, &table, 80);
    let mut dcfg = cfg.clone();
    dcfg.sessions = BTreeMap::from([("b".to_string(), 4), ("new".to_string(), 6)]);
    let dt = ParamTable::new(&dcfg);
    let mut dst = vec![0f32; dt.total];
    let n = transfer(&cfg, &src, &dcfg, &mut dst);
    // the core and session b's five tensors
    let core = table.entries.iter().filter(|e| e.session.is_none()).count();
    assert_eq!(n, core + 5);
    assert_eq!(
        dt.slice(&dst, "blocks.2.mlp.fc2.weight"),
        table.slice(&src, "blocks.2.mlp.fc2.weight")
    );
    assert_eq!(
        dt.slice(&dst, "sessions.b.token"),
        table.slice(&src, "sessions.b.token")
    );
    assert!(
        dt.slice(&dst, "sessions.new.token")
            .iter()
            .all(|&v| v == 0.0)
    );
    init_session(&dcfg, &dt, &mut dst, "new", 81);
    assert!(
        dt.slice(&dst, "sessions.new.token")
            .iter()
            .any(|&v| v != 0.0)
    );
    assert_eq!(dt.slice(&dst, "pos"), table.slice(&src, "pos"));
}

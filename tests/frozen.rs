//! Frozen-core finetuning on the CPU backend (SPEC §4): a tensor frozen whole costs no
//! gradient, reduction or optimizer work, and the trainable tensors get the bits of the full
//! computation with the per-element mask (`CpuBackend::set_skip_frozen(false)`): loss, gradient
//! norm, parameters and both moments, step after step; frozen values never move. The CUDA
//! backend's twin tests are in `tests/cuda_backend.rs`.

use ndt::backend::{Backend, StepHyper};
use ndt::batch::Batch;
use ndt::cpu::CpuBackend;
use ndt::cpu::adamw::{adamw_update, adamw_update_runs, grad_norm, grad_norm_runs};
use ndt::cpu::model::{model_backward, model_backward_trainable, model_forward};
use ndt::cpu::workspace::Workspace;
use ndt::mask::{Regions, make_masks};
use ndt::model::dropout::DropoutCfg;
use ndt::model::params::{TensorTrain, TrainRun, TrainableSet};
use ndt::model::shape::Layout;
use ndt::model::{ModelConfig, ParamTable, init::init_params};
use ndt::scheme::Scheme;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn config() -> ModelConfig {
    ModelConfig {
        d_model: 64,
        d_tok: 48,
        d_embed_hidden: 96,
        n_layers: 2,
        n_heads: 4,
        d_ff: 128,
        n_bins: 20,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("a".to_string(), 37), ("b".to_string(), 19)]),
    }
}

fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

fn batch(cfg: &ModelConfig, sid: &str, b: usize, t: usize, scheme: Scheme, seed: u64) -> Batch {
    let n = cfg.sessions[sid];
    let mut r = rng(seed);
    let counts: Vec<f32> = (0..b * t * n)
        .map(|_| r.random_range(0..4u8) as f32 * r.random_range(0..2u8) as f32)
        .collect();
    let (mut mask, mut target) = (vec![0u8; b * t * n], vec![0u8; b * t * n]);
    let key = ndt::rng::key(seed, 9);
    let regions = Regions::single(n);
    make_masks(scheme, b, t, n, &regions, 0.3, key, &mut mask, &mut target);
    Batch {
        session: 0,
        session_id: sid.to_string(),
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        mask,
        target,
        scheme,
    }
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
        seed: 500 + step,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Index and values of the first element where `a` and `b` differ in bits.
fn first_diff(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (&x, &y))| (i, x, y))
}

fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some((i, x, y)) = first_diff(a, b) {
        panic!("{what}: element {i} is {x:e}, expected {y:e}");
    }
}

/// Session b trains; the core, and session a, are frozen.
fn frozen_core(table: &ParamTable) -> Vec<u8> {
    table.session_only_mask("b")
}

/// Session b, a few whole core tensors, and some tensors in part.
fn mixed(table: &ParamTable) -> Vec<u8> {
    let mut m = table.session_only_mask("b");
    m[table.entry("blocks.1.mlp.fc2.bias").range()].fill(1);
    m[table.entry("ln_f.weight").range()].fill(1);
    let pos = table.entry("pos").range();
    m[pos.start..pos.start + 3 * 64].fill(1);
    let qkv = table.entry("blocks.0.attn.qkv.weight").range();
    for i in qkv.step_by(3) {
        m[i] = 1;
    }
    m
}

/// Training steps from the same parameters on two backends, one skipping the frozen work and
/// one doing the full computation: the same bits throughout, and no frozen element moves.
fn skip_gives_the_full_steps(what: &str, mask_of: fn(&ParamTable) -> Vec<u8>) {
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let mask = mask_of(&table);
    let params = init_params(&cfg, &table, 3);
    let mut skip = CpuBackend::new(cfg.clone(), 2);
    let mut full = CpuBackend::new(cfg.clone(), 2);
    full.set_skip_frozen(false);
    for be in [&mut skip, &mut full] {
        be.set_params(&params).unwrap();
        be.set_trainable(&mask).unwrap();
    }
    // A batch of session a trains nothing under this mask but still decays session b's
    // moments: the step must agree there too.
    let batches = [
        batch(&cfg, "b", 3, 20, Scheme::Forward, 1),
        batch(&cfg, "b", 4, 17, Scheme::CoSmooth, 2),
        batch(&cfg, "a", 3, 20, Scheme::Forward, 3),
        batch(&cfg, "b", 2, 20, Scheme::CoSmooth, 4),
        batch(&cfg, "b", 3, 20, Scheme::Forward, 5),
    ];
    for (i, bt) in batches.iter().enumerate() {
        let hp = hyper(i as u64 + 1);
        let s = skip.train_step(bt, &hp).unwrap();
        let f = full.train_step(bt, &hp).unwrap();
        assert_eq!(s.loss.to_bits(), f.loss.to_bits(), "{what} step {i} loss");
        assert_eq!(
            s.grad_norm.to_bits(),
            f.grad_norm.to_bits(),
            "{what} step {i} grad norm {} vs {}",
            s.grad_norm,
            f.grad_norm
        );
        assert_eq!(s.n_targets, f.n_targets);
        assert!(s.loss.is_finite(), "{what} step {i}");
        // A batch of session b has a gradient on the tensors that train.
        assert!(bt.session_id == "a" || s.grad_norm > 0.0, "{what} step {i}");
    }
    let (ps, pf) = (skip.params().unwrap(), full.params().unwrap());
    same_bits(&format!("{what} parameters"), &ps, &pf);
    let ((ms, vs), (mf, vf)) = (skip.moments().unwrap(), full.moments().unwrap());
    same_bits(&format!("{what} first moments"), &ms, &mf);
    same_bits(&format!("{what} second moments"), &vs, &vf);
    for (i, ((&p, &p0), &t)) in ps.iter().zip(&params).zip(&mask).enumerate() {
        if t == 0 {
            assert_eq!(
                p.to_bits(),
                p0.to_bits(),
                "{what}: frozen element {i} moved"
            );
            assert_eq!(ms[i], 0.0, "{what}: frozen element {i} has a moment");
        }
    }
    let moved = |name: &str| {
        let r = table.entry(name).range();
        ps[r.clone()] != params[r]
    };
    for name in [
        "sessions.b.stitch_in.weight",
        "sessions.b.stitch_out.weight",
        "sessions.b.token",
    ] {
        assert!(moved(name), "{what}: {name} did not train");
    }
}

#[test]
fn frozen_core_steps_are_the_full_computation_bit_for_bit() {
    skip_gives_the_full_steps("frozen core", frozen_core);
}

#[test]
fn mixed_masks_keep_the_full_steps_bit_for_bit() {
    let table = ParamTable::new(&config());
    let set = TrainableSet::from_mask(&table, &mixed(&table));
    assert_eq!(set.state(&table.entry("pos").range()), TensorTrain::Mixed);
    skip_gives_the_full_steps("mixed mask", mixed);
}

/// The backward with a trainable set writes nothing into a frozen tensor's gradient (here
/// poisoned with NaN: an accumulation there would keep the NaN, a write would replace it) and
/// gives the trainable tensors the bits of the full backward.
#[test]
fn the_backward_does_not_touch_frozen_gradients() {
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let lay = Layout::new(&cfg, &table);
    let params = init_params(&cfg, &table, 4);
    let set = TrainableSet::from_mask(&table, &frozen_core(&table));
    let bt = batch(&cfg, "b", 3, 20, Scheme::Forward, 7);
    let drop = DropoutCfg { p: 0.2, seed: 9 };

    let mut ws = Workspace::new();
    let (_, nt) = model_forward(&mut ws, &params, &lay, &cfg, &bt, drop, 2);
    let mut want = vec![0f32; table.total];
    model_backward(&mut ws, &mut want, &params, &lay, &cfg, &bt, nt, drop, 2);

    let mut ws = Workspace::new();
    let (_, nt) = model_forward(&mut ws, &params, &lay, &cfg, &bt, drop, 2);
    const POISON: u32 = 0x7fc0_1234;
    let mut got = vec![f32::from_bits(POISON); table.total];
    for run in set.runs() {
        got[run.range].fill(0.0);
    }
    model_backward_trainable(
        &mut ws,
        &mut got,
        &params,
        &lay,
        &cfg,
        &bt,
        nt,
        drop,
        2,
        Some(&set),
    );
    let mut frozen = 0;
    for e in &table.entries {
        let r = e.range();
        if set.trains(&r) {
            same_bits(&e.name, &got[r.clone()], &want[r]);
        } else {
            frozen += 1;
            assert!(
                got[r].iter().all(|v| v.to_bits() == POISON),
                "{}: the frozen gradient was written",
                e.name
            );
        }
    }
    // Everything but session b's five tensors.
    assert_eq!(frozen, table.entries.len() - 5);
    // The full gradient of a frozen core tensor is not zero: skipping it is real work saved.
    let qkv = table.entry("blocks.0.attn.qkv.weight").range();
    assert!(want[qkv].iter().any(|&g| g != 0.0));
}

/// The norm and AdamW over runs are the whole-vector forms with the mask, bit for bit: runs
/// inside one block of the norm's sum, across blocks, several in one block, whole and read
/// through the mask.
#[test]
fn norm_and_adamw_over_runs_are_the_masked_forms_bit_for_bit() {
    const B: usize = 4096; // the norm's block
    let n = 5 * B + 123;
    let mut r = rng(11);
    let g: Vec<f32> = (0..n).map(|_| r.random_range(-3.0..3.0f32)).collect();
    let p0: Vec<f32> = (0..n).map(|_| r.random_range(-1.0..1.0f32)).collect();
    let m0: Vec<f32> = (0..n).map(|_| r.random_range(-0.1..0.1f32)).collect();
    let v0: Vec<f32> = (0..n).map(|_| r.random_range(0.0..0.01f32)).collect();
    let run = |a: usize, b: usize, whole: bool| TrainRun { range: a..b, whole };
    let cases: Vec<Vec<TrainRun>> = vec![
        vec![run(0, n, true)],
        vec![run(10, 20, true)],
        vec![run(B - 7, 3 * B + 5, true)],
        vec![
            run(5, 100, true),
            run(300, 301, true),
            run(B - 1, B + 1, false),
        ],
        vec![run(17, 2 * B, false), run(2 * B + 9, n, true)],
        vec![],
    ];
    let hp = hyper(3);
    for (c, runs) in cases.iter().enumerate() {
        // The mask: 1 over whole runs, random over the others, 0 elsewhere.
        let mut mask = vec![0u8; n];
        for run in runs {
            for i in run.range.clone() {
                mask[i] = if run.whole { 1 } else { r.random_range(0..2u8) };
            }
        }
        let want = grad_norm(&g, &mask);
        let got = grad_norm_runs(&g, &mask, runs);
        assert_eq!(got.to_bits(), want.to_bits(), "case {c}: {got} vs {want}");
        if runs.is_empty() {
            assert_eq!(got, 0.0);
        }
        let (mut pa, mut ma, mut va) = (p0.clone(), m0.clone(), v0.clone());
        adamw_update(&mut pa, &mut ma, &mut va, &g, &mask, &hp, 0.5);
        let (mut pb, mut mb, mut vb) = (p0.clone(), m0.clone(), v0.clone());
        adamw_update_runs(&mut pb, &mut mb, &mut vb, &g, &mask, &hp, 0.5, runs);
        assert_eq!(bits(&pa), bits(&pb), "case {c} params");
        assert_eq!(bits(&ma), bits(&mb), "case {c} m");
        assert_eq!(bits(&va), bits(&vb), "case {c} v");
        for i in 0..n {
            if mask[i] == 0 {
                assert_eq!(pb[i].to_bits(), p0[i].to_bits(), "case {c}: frozen {i}");
            }
        }
    }
}

/// The norm is summed in a fixed order: the same bits on every run and any thread count.
#[test]
fn the_gradient_norm_is_reproducible() {
    let n = 40_000;
    let mut r = rng(12);
    let g: Vec<f32> = (0..n).map(|_| r.random_range(-1.0..1.0f32)).collect();
    let mask: Vec<u8> = (0..n).map(|_| r.random_range(0..2u8)).collect();
    let want = grad_norm(&g, &mask);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for _ in 0..3 {
            let got = pool.install(|| grad_norm(&g, &mask));
            assert_eq!(got.to_bits(), want.to_bits(), "{threads} threads");
        }
    }
    let exact: f64 = g
        .iter()
        .zip(&mask)
        .filter(|(_, t)| **t != 0)
        .map(|(&g, _)| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt();
    assert!((want - exact).abs() <= 1e-12 * exact);
}

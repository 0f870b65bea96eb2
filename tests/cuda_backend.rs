//! The CUDA backend against the CPU reference on a small two-session model: loss, log-rates and
//! every gradient tensor (f32 to 1e-5 / 1e-4, bf16 to the tolerances written below), training
//! steps with dropout, graph replay against eager launches, determinism, frozen-core training,
//! features, and a batch without targets.
//!
//! Without a GPU every test prints "SKIPPED: no CUDA device" and passes (docs/cuda.md).

mod cuda_common;

use cuda_common::*;
use ndt::backend::{Backend, ForwardOpts, StepHyper};
use ndt::batch::Batch;
use ndt::cpu::CpuBackend;
use ndt::cuda::{CudaBackend, Gpu, Precision};
use ndt::mask::{Regions, make_masks};
use ndt::model::{ModelConfig, ParamTable, init::init_params};
use ndt::scheme::Scheme;
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

fn batch(cfg: &ModelConfig, sid: &str, b: usize, t: usize, scheme: Scheme, seed: u64) -> Batch {
    let n = cfg.sessions[sid];
    let mut r = rng(seed);
    let counts: Vec<f32> = rand_mask(&mut r, b * t * n, 0.2)
        .iter()
        .zip(rand_mask(&mut r, b * t * n, 0.1))
        .map(|(&a, c)| (a + 2 * c) as f32)
        .collect();
    let (mut mask, mut target) = (vec![0u8; b * t * n], vec![0u8; b * t * n]);
    let key = ndt::rng::key(seed, 9);
    make_masks(
        scheme,
        b,
        t,
        n,
        &Regions::single(n),
        0.3,
        key,
        &mut mask,
        &mut target,
    );
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

fn cuda(g: Gpu, cfg: &ModelConfig, prec: Precision, params: &[f32]) -> CudaBackend {
    let mut be = CudaBackend::new(g, cfg.clone(), prec).expect("cuda backend");
    be.set_params(params).unwrap();
    be
}

fn cpu_backend(cfg: &ModelConfig, params: &[f32]) -> CpuBackend {
    let mut be = CpuBackend::new(cfg.clone(), 2);
    be.set_params(params).unwrap();
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
        seed: 500 + step,
    }
}

/// Per-tensor normalised error of two flat vectors laid out by `table`.
fn check_tensors(what: &str, table: &ParamTable, got: &[f32], want: &[f32], tol: f64) {
    for e in &table.entries {
        let (gt, wt) = (&got[e.range()], &want[e.range()]);
        check(&format!("{what} {}", e.name), gt, &to64(wt), tol);
    }
}

#[test]
fn loss_log_rates_and_gradients_match_the_cpu() {
    let Some(g0) = gpu("loss_log_rates_and_gradients_match_the_cpu") else {
        return;
    };
    drop(g0);
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 3);
    let mut cpu = cpu_backend(&cfg, &params);
    // bf16 tolerances: every product rounds its operands to 8 bits through two blocks.
    for (prec, t_rates, t_grad) in [(Precision::F32, 1e-5, 1e-4), (Precision::Bf16, 2e-2, 1e-1)] {
        let mut gpu_be = cuda(
            Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
            &cfg,
            prec,
            &params,
        );
        for (sid, t, scheme) in [
            ("a", 20, Scheme::Forward),
            ("b", 17, Scheme::CoSmooth),
            ("a", 1, Scheme::CoSmooth),
        ] {
            let bt = batch(&cfg, sid, 3, t, scheme, 11);
            let (want, want_g) = cpu.loss_and_grad(&bt).unwrap();
            let (got, got_g) = gpu_be.loss_and_grad(&bt).unwrap();
            let what = format!("{prec:?} {sid} t={t} {scheme}");
            check(
                &format!("{what} loss"),
                &[got.loss],
                &[want.loss as f64],
                t_rates,
            );
            check(
                &format!("{what} log-rates"),
                &got.log_rates,
                &to64(&want.log_rates),
                t_rates,
            );
            check_tensors(&format!("{what} grad"), &table, &got_g, &want_g, t_grad);
        }
    }
}

#[test]
fn training_steps_match_the_cpu_and_replay_exactly() {
    let Some(g) = gpu("training_steps_match_the_cpu_and_replay_exactly") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 4);
    let mut cpu = cpu_backend(&cfg, &params);
    let mut graphed = cuda(g, &cfg, Precision::F32, &params);
    let mut eager = cuda(
        Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
        &cfg,
        Precision::F32,
        &params,
    );
    eager.set_use_graphs(false);
    let batches = [
        batch(&cfg, "a", 4, 20, Scheme::Forward, 1),
        batch(&cfg, "b", 4, 20, Scheme::CoSmooth, 2),
        batch(&cfg, "a", 4, 20, Scheme::Forward, 3),
        batch(&cfg, "a", 2, 20, Scheme::Forward, 4),
    ];
    for (i, bt) in batches.iter().enumerate() {
        let hp = hyper(i as u64 + 1);
        let want = cpu.train_step(bt, &hp).unwrap();
        let got = graphed.train_step(bt, &hp).unwrap();
        let again = eager.train_step(bt, &hp).unwrap();
        assert_eq!(got.n_targets, want.n_targets);
        check(
            &format!("step {i} loss"),
            &[got.loss],
            &[want.loss as f64],
            1e-5,
        );
        check(
            &format!("step {i} grad norm"),
            &[got.grad_norm],
            &[want.grad_norm as f64],
            1e-4,
        );
        assert_eq!(
            got.loss.to_bits(),
            again.loss.to_bits(),
            "graph and eager step {i}"
        );
    }
    let (p_cpu, p_gpu, p_eager) = (
        cpu.params().unwrap(),
        graphed.params().unwrap(),
        eager.params().unwrap(),
    );
    check_bits("graph replay vs eager launches", &p_gpu, &p_eager);
    // Compare the updates, not the parameters (which the updates barely move).
    let delta = |p: &[f32]| -> Vec<f32> { p.iter().zip(&params).map(|(a, b)| a - b).collect() };
    let (d_cpu, d_gpu) = (delta(&p_cpu), delta(&p_gpu));
    // Adam normalises each coordinate, so a coordinate whose gradient is ~0 moves by an amount
    // set by rounding; the whole-tensor error stays small.
    check_tensors("update after 4 steps", &table, &d_gpu, &d_cpu, 2e-2);
    let (m_cpu, _) = cpu.moments().unwrap();
    let (m_gpu, _) = graphed.moments().unwrap();
    check_tensors("first moment", &table, &m_gpu, &m_cpu, 1e-4);
}

#[test]
fn runs_are_deterministic() {
    let Some(g) = gpu("runs_are_deterministic") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 5);
    let mut one = cuda(g, &cfg, Precision::Bf16, &params);
    let mut two = cuda(
        Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
        &cfg,
        Precision::Bf16,
        &params,
    );
    for i in 0..3 {
        let bt = batch(&cfg, "a", 3, 20, Scheme::Forward, 10 + i);
        one.train_step(&bt, &hyper(i + 1)).unwrap();
        two.train_step(&bt, &hyper(i + 1)).unwrap();
    }
    check_bits(
        "two identical runs",
        &one.params().unwrap(),
        &two.params().unwrap(),
    );
}

/// Three training steps (dropout on, two masking schemes) and then a gradient on two backends
/// that differ only in how they keep the activations: the same losses, norms, parameters and
/// gradients, bit for bit.
/// Two backends from the same parameters (config(), seed 6), one with `switch` off and one
/// with it on.
fn switched_pair(
    prec: Precision,
    switch: fn(&mut CudaBackend, bool),
) -> (CudaBackend, CudaBackend) {
    let cfg = config();
    let params = init_params(&cfg, &ParamTable::new(&cfg), 6);
    let mut off = cuda(
        Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
        &cfg,
        prec,
        &params,
    );
    switch(&mut off, false);
    let mut on = cuda(
        Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
        &cfg,
        prec,
        &params,
    );
    switch(&mut on, true);
    (off, on)
}

fn same_steps(what: &str, prec: Precision, a: &mut CudaBackend, b: &mut CudaBackend) {
    let cfg = config();
    for i in 0..3 {
        let scheme = if i == 1 {
            Scheme::CoSmooth
        } else {
            Scheme::Forward
        };
        let bt = batch(&cfg, "a", 3, 20, scheme, 20 + i);
        let sa = a.train_step(&bt, &hyper(i + 1)).unwrap();
        let sb = b.train_step(&bt, &hyper(i + 1)).unwrap();
        assert_eq!(
            sa.loss.to_bits(),
            sb.loss.to_bits(),
            "{what} {prec:?} step {i} loss"
        );
        assert_eq!(
            sa.grad_norm.to_bits(),
            sb.grad_norm.to_bits(),
            "{what} {prec:?} step {i} grad norm"
        );
    }
    check_bits(
        &format!("{what} {prec:?} parameters after 3 steps"),
        &a.params().unwrap(),
        &b.params().unwrap(),
    );
    let bt = batch(&cfg, "b", 2, 20, Scheme::CoSmooth, 30);
    let (_, ga) = a.loss_and_grad(&bt).unwrap();
    let (_, gb) = b.loss_and_grad(&bt).unwrap();
    check_bits(&format!("{what} {prec:?} gradients"), &ga, &gb);
}

#[test]
fn recomputed_attention_probabilities_give_the_steps_of_kept_ones() {
    let Some(g) = gpu("recomputed_attention_probabilities_give_the_steps_of_kept_ones") else {
        return;
    };
    drop(g);
    for prec in [Precision::F32, Precision::Bf16] {
        let (mut recompute, mut keep) = switched_pair(prec, CudaBackend::set_keep_attention);
        same_steps("recomputed vs kept", prec, &mut recompute, &mut keep);
    }
}

/// In bf16 precision `qkv` and the attention output are stored as bf16 (only products read
/// them, and products round their operands to bf16): the same steps as with f32 storage.
#[test]
fn bf16_storage_gives_the_steps_of_f32_storage() {
    let Some(g) = gpu("bf16_storage_gives_the_steps_of_f32_storage") else {
        return;
    };
    drop(g);
    let (cfg, prec) = (config(), Precision::Bf16);
    let (mut full, mut half) = switched_pair(prec, CudaBackend::set_bf16_store);
    same_steps("bf16 vs f32 storage", prec, &mut half, &mut full);
    let bt = batch(&cfg, "a", 3, 20, Scheme::Forward, 40);
    half.reserve(&bt).unwrap();
    full.reserve(&bt).unwrap();
    assert!(
        half.workspace_bytes() < full.workspace_bytes(),
        "bf16 storage takes {} bytes, f32 storage {}",
        half.workspace_bytes(),
        full.workspace_bytes()
    );
}

/// In bf16 precision the attention forward and the backward's recomputation of the
/// probabilities run as one fused kernel (`attention_fused_*`): the same steps, bit for bit,
/// as the unfused launches, with fewer operations per step.
#[test]
fn fused_attention_gives_the_steps_of_the_unfused_launches() {
    let Some(g) = gpu("fused_attention_gives_the_steps_of_the_unfused_launches") else {
        return;
    };
    drop(g);
    let (cfg, prec) = (config(), Precision::Bf16);
    let (mut unfused, mut fused) = switched_pair(prec, CudaBackend::set_fused_attention);
    same_steps("fused vs unfused attention", prec, &mut fused, &mut unfused);
    let bt = batch(&cfg, "a", 3, 20, Scheme::Forward, 40);
    let names = |be: &mut CudaBackend| -> Vec<String> {
        let ops = be.profile_step(&bt, &hyper(1)).unwrap();
        ops.into_iter().map(|o| o.name.to_string()).collect()
    };
    let (f, u) = (names(&mut fused), names(&mut unfused));
    let count = |v: &[String], k: &str| v.iter().filter(|n| n.starts_with(k)).count();
    // one fused launch per block forward, one per recomputation (every block but the last)
    let blocks = cfg.n_layers;
    assert_eq!(count(&f, "attention_fused"), 2 * blocks - 1, "{f:?}");
    assert_eq!(count(&u, "attention_fused"), 0, "{u:?}");
    assert_eq!(count(&f, "attention_softmax_forward"), 0, "{f:?}");
    assert_eq!(
        f.len() + 3 * blocks - 1,
        u.len(),
        "operations fused {f:?} unfused {u:?}"
    );
}

/// The device keeps every parameter tensor at an offset that is a multiple of 4 floats, whatever
/// the sessions' neuron counts (37 here), so that the products read the weights four at
/// a time: in a profiled step every unbatched product that does not span the neurons runs a
/// quad-load kernel (`_kk`, `_kr`, `_rk`, `_rr`), and parameters, moments and gradients come
/// back in the API layout (the other tests compare them with the CPU's).
#[test]
fn weights_are_read_four_at_a_time_whatever_the_neuron_counts() {
    let Some(g) = gpu("weights_are_read_four_at_a_time_whatever_the_neuron_counts") else {
        return;
    };
    // One session of 37 neurons: its tensors end 1 float past a multiple of 4 (4293 floats),
    // so without the padding every core tensor would be misaligned.
    let cfg = ModelConfig {
        sessions: BTreeMap::from([("a".to_string(), 37)]),
        ..config()
    };
    let table = ParamTable::new(&cfg);
    assert_eq!(table.entry("embed.fc1.weight").offset % 4, 1);
    let params = init_params(&cfg, &table, 6);
    let mut be = cuda(g, &cfg, Precision::Bf16, &params);
    let n = cfg.sessions["a"];
    let ops = be
        .profile_step(&batch(&cfg, "a", 3, 20, Scheme::Forward, 5), &hyper(1))
        .unwrap();
    let mut checked = 0;
    for op in ops.iter().filter(|o| o.file == "gemm.cu") {
        let (dims, z) = op.note.split_once(" z").unwrap();
        let dims: Vec<usize> = dims.split('x').map(|v| v.parse().unwrap()).collect();
        if z != "1" || dims.contains(&n) {
            continue;
        }
        let quad = ["_kk", "_kr", "_rk", "_rr"]
            .iter()
            .any(|q| op.name.contains(q));
        assert!(quad, "{} {} reads one element at a time", op.name, op.note);
        checked += 1;
    }
    // Per block 4 products forward and 8 backward, and the embedding's.
    assert!(checked >= 2 * 12, "{checked} products checked");
    let after = be.params().unwrap();
    assert_eq!(after.len(), table.total);
    assert_ne!(after, params, "the step moved the parameters");
}

#[test]
fn frozen_core_moves_only_the_session() {
    let Some(g) = gpu("frozen_core_moves_only_the_session") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 6);
    let mut be = cuda(g, &cfg, Precision::Bf16, &params);
    let tr = table.session_only_mask("b");
    be.set_trainable(&tr).unwrap();
    be.train_step(&batch(&cfg, "b", 3, 20, Scheme::CoSmooth, 1), &hyper(1))
        .unwrap();
    let after = be.params().unwrap();
    for (i, (&a, &p)) in after.iter().zip(&params).enumerate() {
        if tr[i] == 0 {
            assert_eq!(a.to_bits(), p.to_bits(), "frozen element {i} moved");
        }
    }
    assert!(
        after.iter().zip(&params).any(|(a, p)| a != p),
        "nothing trained"
    );
}

#[test]
fn gradients_of_other_sessions_are_zero_and_features_match() {
    let Some(g) = gpu("gradients_of_other_sessions_are_zero_and_features_match") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 7);
    let mut be = cuda(g, &cfg, Precision::F32, &params);
    let mut cpu = cpu_backend(&cfg, &params);
    be.train_step(&batch(&cfg, "a", 3, 20, Scheme::Forward, 1), &hyper(1))
        .unwrap();
    be.set_params(&params).unwrap();
    let bt = batch(&cfg, "b", 3, 20, Scheme::CoSmooth, 2);
    let (_, grads) = be.loss_and_grad(&bt).unwrap();
    for e in table
        .entries
        .iter()
        .filter(|e| e.session.as_deref() == Some("a"))
    {
        assert!(
            grads[e.range()].iter().all(|&v| v == 0.0),
            "{} has a gradient",
            e.name
        );
    }
    let opts = ForwardOpts {
        capture_block: Some(1),
    };
    let got = be.forward(&bt, &opts).unwrap();
    let want = cpu.forward(&bt, &opts).unwrap();
    check(
        "features",
        got.features.as_ref().unwrap(),
        &to64(want.features.as_ref().unwrap()),
        1e-5,
    );
    check(
        "forward log-rates",
        &got.log_rates,
        &to64(&want.log_rates),
        1e-5,
    );
    assert!(
        be.forward(
            &bt,
            &ForwardOpts {
                capture_block: Some(2)
            }
        )
        .is_err()
    );
}

#[test]
fn a_batch_without_targets_has_a_nan_loss_and_no_update() {
    let Some(g) = gpu("a_batch_without_targets_has_a_nan_loss_and_no_update") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 8);
    let mut be = cuda(g, &cfg, Precision::Bf16, &params);
    let mut bt = batch(&cfg, "a", 2, 20, Scheme::Forward, 3);
    bt.target.fill(0);
    let st = be.train_step(&bt, &hyper(1)).unwrap();
    assert!(st.loss.is_nan());
    assert_eq!(st.n_targets, 0);
    check_bits("params after a NaN loss", &be.params().unwrap(), &params);
}

/// Frozen-core finetuning (session b trains, the core and session a are frozen) in both
/// precisions: steps that skip the frozen work (graphs) give the bits of the full computation
/// with the mask (`set_skip_frozen(false)`, eager launches): losses, norms, parameters and
/// moments; no frozen element moves in four steps; and the steps track the CPU's.
#[test]
fn frozen_core_steps_skip_the_frozen_work_with_the_bits_of_the_full_steps() {
    let Some(g) = gpu("frozen_core_steps_skip_the_frozen_work_with_the_bits_of_the_full_steps")
    else {
        return;
    };
    drop(g);
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 12);
    let tr = table.session_only_mask("b");
    let batches = [
        batch(&cfg, "b", 3, 20, Scheme::Forward, 1),
        batch(&cfg, "b", 4, 17, Scheme::CoSmooth, 2),
        batch(&cfg, "a", 3, 20, Scheme::Forward, 3),
        batch(&cfg, "b", 3, 20, Scheme::CoSmooth, 4),
    ];
    for prec in [Precision::F32, Precision::Bf16] {
        let mut skip = cuda(
            Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
            &cfg,
            prec,
            &params,
        );
        let mut full = cuda(
            Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
            &cfg,
            prec,
            &params,
        );
        full.set_skip_frozen(false);
        full.set_use_graphs(false);
        let mut cpu = cpu_backend(&cfg, &params);
        for be in [&mut skip as &mut dyn Backend, &mut full, &mut cpu] {
            be.set_trainable(&tr).unwrap();
        }
        for (i, bt) in batches.iter().enumerate() {
            let hp = hyper(i as u64 + 1);
            let s = skip.train_step(bt, &hp).unwrap();
            let f = full.train_step(bt, &hp).unwrap();
            let c = cpu.train_step(bt, &hp).unwrap();
            let what = format!("{prec:?} step {i}");
            assert_eq!(s.loss.to_bits(), f.loss.to_bits(), "{what} loss");
            assert_eq!(
                s.grad_norm.to_bits(),
                f.grad_norm.to_bits(),
                "{what} grad norm {} vs {}",
                s.grad_norm,
                f.grad_norm
            );
            let (t_loss, t_norm) = match prec {
                Precision::F32 => (1e-5, 1e-4),
                Precision::Bf16 => (2e-2, 1e-1),
            };
            check(
                &format!("{what} loss vs cpu"),
                &[s.loss],
                &[c.loss as f64],
                t_loss,
            );
            check(
                &format!("{what} norm vs cpu"),
                &[s.grad_norm],
                &[c.grad_norm as f64],
                t_norm,
            );
        }
        let (ps, pf, pc) = (
            skip.params().unwrap(),
            full.params().unwrap(),
            cpu.params().unwrap(),
        );
        check_bits(&format!("{prec:?} skip vs full parameters"), &ps, &pf);
        let ((ms, vs), (mf, vf)) = (skip.moments().unwrap(), full.moments().unwrap());
        check_bits(&format!("{prec:?} skip vs full first moments"), &ms, &mf);
        check_bits(&format!("{prec:?} skip vs full second moments"), &vs, &vf);
        for (i, (&a, &p)) in ps.iter().zip(&params).enumerate() {
            if tr[i] == 0 {
                assert_eq!(
                    a.to_bits(),
                    p.to_bits(),
                    "{prec:?}: frozen element {i} moved"
                );
            }
        }
        // The trainable tensors' updates against the CPU's (tolerances of the full steps).
        let tol = if prec == Precision::F32 { 2e-2 } else { 2e-1 };
        for e in table.entries.iter().filter(|e| tr[e.offset] != 0) {
            let d = |p: &[f32]| -> Vec<f32> {
                p[e.range()]
                    .iter()
                    .zip(&params[e.range()])
                    .map(|(a, b)| a - b)
                    .collect()
            };
            check(
                &format!("{prec:?} update of {}", e.name),
                &d(&ps),
                &to64(&d(&pc)),
                tol,
            );
        }
    }
}

/// A frozen-core step launches the full step's operations less exactly the frozen work:
/// per block the four weight products, the four bias column sums (two launches each), the two
/// LayerNorm parameter reductions (two launches each), the two LayerNorm outputs and the GELU
/// activation rebuilt for weight products only; the final LayerNorm's reduction; the
/// embedding's two weight products and bias sums. Everything else is the same, in the same
/// order.
#[test]
fn a_frozen_core_step_launches_no_frozen_work() {
    let Some(g) = gpu("a_frozen_core_step_launches_no_frozen_work") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 13);
    let mut be = cuda(g, &cfg, Precision::Bf16, &params);
    let bt = batch(&cfg, "b", 3, 20, Scheme::Forward, 5);
    let full = be.profile_step(&bt, &hyper(1)).unwrap();
    be.set_trainable(&table.session_only_mask("b")).unwrap();
    let frozen = be.profile_step(&bt, &hyper(2)).unwrap();
    // A memset's note is its size, and the frozen step zeroes only the trainable gradients.
    let key = |o: &ndt::cuda::profile::OpTime| match o.name {
        "memset" => o.name.to_string(),
        _ => format!("{} {} {}", o.name, o.note, o.flops),
    };
    // The frozen step's operations are the full step's with some left out.
    let mut rest = full.iter();
    let mut removed = Vec::new();
    for op in &frozen {
        loop {
            let f = rest
                .next()
                .unwrap_or_else(|| panic!("{} not in the full step", key(op)));
            if key(f) == key(op) {
                break;
            }
            removed.push(f);
        }
    }
    removed.extend(rest);
    let count = |k: &str| removed.iter().filter(|o| o.name.starts_with(k)).count();
    let l = cfg.n_layers;
    let products = removed.iter().filter(|o| o.file == "gemm.cu").count();
    assert_eq!(products, 4 * l + 2, "weight products removed");
    assert_eq!(count("col_sum_partial"), 4 * l + 2);
    assert_eq!(count("col_sum_final"), 4 * l + 2);
    assert_eq!(count("layernorm_param_partial"), 2 * l + 1);
    assert_eq!(count("layernorm_param_final"), 2 * l + 1);
    assert_eq!(count("layernorm_affine"), 2 * l);
    assert_eq!(count("gelu_forward"), l);
    assert_eq!(removed.len(), 19 * l + 8, "{removed:?}");
    let flops = |ops: &[ndt::cuda::profile::OpTime]| ops.iter().map(|o| o.flops).sum::<f64>();
    let saved: f64 = removed.iter().map(|o| o.flops).sum();
    assert!(saved > 0.0 && flops(&frozen) + saved == flops(&full));
}

/// A training step is captured per trainable set: a graph captured for the frozen core is not
/// replayed once everything trains again (the core would not move), and back; the graphed
/// steps are the eager ones bit for bit.
#[test]
fn graphs_follow_the_trainable_set() {
    let Some(g) = gpu("graphs_follow_the_trainable_set") else {
        return;
    };
    let cfg = config();
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 14);
    let mut graphed = cuda(g, &cfg, Precision::F32, &params);
    let mut eager = cuda(
        Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
        &cfg,
        Precision::F32,
        &params,
    );
    eager.set_use_graphs(false);
    let (frozen, all) = (table.session_only_mask("b"), vec![1u8; table.total]);
    let bt = batch(&cfg, "b", 3, 20, Scheme::Forward, 6);
    let qkv = table.entry("blocks.0.attn.qkv.weight").range();
    for (i, mask) in [&frozen, &all, &frozen, &all].into_iter().enumerate() {
        let before = graphed.params().unwrap();
        for be in [&mut graphed, &mut eager] {
            be.set_trainable(mask).unwrap();
        }
        let hp = hyper(i as u64 + 1);
        let a = graphed.train_step(&bt, &hp).unwrap();
        let b = eager.train_step(&bt, &hp).unwrap();
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {i} loss");
        assert_eq!(
            a.grad_norm.to_bits(),
            b.grad_norm.to_bits(),
            "step {i} norm"
        );
        let after = graphed.params().unwrap();
        check_bits(
            &format!("step {i} parameters"),
            &after,
            &eager.params().unwrap(),
        );
        let core_moved = after[qkv.clone()] != before[qkv.clone()];
        assert_eq!(
            core_moved,
            mask == &all,
            "step {i}: the core moved: {core_moved}"
        );
    }
}

//! The Poisson loss, the bits-per-spike sums and AdamW against their CPU twins: the loss and
//! its gradient to 1e-6, the bps sums to 1e-12 (f64 on both sides), the AdamW update bit for bit.
//!
//! Without a GPU every test prints "SKIPPED: no CUDA device" and passes (docs/cuda.md).

mod cuda_common;

use cuda_common::*;
use ndt::backend::StepHyper;
use ndt::cpu;
use ndt::cuda::{StepResult, StepScalars};
use ndt::cuda::{adamw, bps, poisson};

// ---------------------------------------------------------------------------- poisson, bps, adamw

#[test]
fn poisson_loss_and_gradient_match_the_cpu() {
    let Some(g) = gpu("poisson_loss_and_gradient_match_the_cpu") else {
        return;
    };
    let mut r = rng(10);
    for n in [1, 100, 5000, 300_000] {
        let lr = rand_vec(&mut r, n, 2.0);
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 5) as f32).collect();
        let mut t = rand_mask(&mut r, n, 0.3);
        t[0] = 1;
        let (loss_w, count) = cpu::poisson::poisson_forward(&to64(&lr), &to64(&x), &t);
        let mut dr_w = vec![0f64; n];
        cpu::poisson::poisson_backward(&mut dr_w, &to64(&lr), &to64(&x), &t, count);
        let sc = scalars(&g, StepScalars::inference(count, 0, false));
        let res = g.alloc::<StepResult>(1).unwrap();
        let parts = g.alloc::<f64>(poisson::poisson_parts(n)).unwrap();
        let (rd, xd, td) = (up(&g, &lr), up(&g, &x), up_u8(&g, &t));
        poisson::poisson_forward(
            &g,
            res.dev(),
            rd.dev(),
            xd.dev(),
            td.dev(),
            n,
            sc.dev(),
            parts.dev(),
        )
        .unwrap();
        let loss = g.download(res.dev()).unwrap()[0].loss;
        assert!(
            ((loss - loss_w) / loss_w).abs() < 1e-6,
            "poisson loss n={n}: {loss} vs {loss_w}"
        );
        let dr = Out::new(&g, n);
        poisson::poisson_backward(&g, dr.dev(), rd.dev(), xd.dev(), td.dev(), n, sc.dev()).unwrap();
        check(
            &format!("poisson dr n={n}"),
            &dr.read(&g, "dr"),
            &dr_w,
            1e-6,
        );
    }
    // No target: NaN, as on the CPU.
    let sc = scalars(&g, StepScalars::inference(0, 0, false));
    let res = g.alloc::<StepResult>(1).unwrap();
    let parts = g.alloc::<f64>(1).unwrap();
    let (rd, xd, td) = (up(&g, &[0.5]), up(&g, &[1.0]), up_u8(&g, &[0]));
    poisson::poisson_forward(
        &g,
        res.dev(),
        rd.dev(),
        xd.dev(),
        td.dev(),
        1,
        sc.dev(),
        parts.dev(),
    )
    .unwrap();
    assert!(g.download(res.dev()).unwrap()[0].loss.is_nan());
}

#[test]
fn bits_per_spike_sums_match_the_evaluator() {
    let Some(g) = gpu("bits_per_spike_sums_match_the_evaluator") else {
        return;
    };
    let mut r = rng(11);
    for rows in [1, 33, 300] {
        for n in [1, 17, 200] {
            let lr = rand_vec(&mut r, rows * n, 3.0);
            let x: Vec<f32> = (0..rows * n).map(|i| ((i * 31) % 4) as f32).collect();
            let inc = rand_mask(&mut r, rows * n, 0.7);
            let mut want = ndt::eval::bps::BpsAccum::new(n);
            // Two batches into the same sums.
            for _ in 0..2 {
                for i in 0..rows * n {
                    if inc[i] != 0 {
                        want.add_log_rate(i % n, lr[i], x[i] as f64);
                    }
                }
            }
            let sums = bps::BpsSums::new(&g, n).unwrap();
            let (ld, xd, id) = (up(&g, &lr), up(&g, &x), up_u8(&g, &inc));
            for _ in 0..2 {
                bps::bps_accumulate(&g, &sums, ld.dev(), xd.dev(), Some(id.dev()), rows).unwrap();
            }
            let got = sums.download(&g).unwrap();
            assert_eq!(got.count, want.count, "bps counts {rows}x{n}");
            for j in 0..n {
                assert!((got.spikes[j] - want.spikes[j]).abs() < 1e-9, "bps spikes");
                let e =
                    (got.model_nll[j] - want.model_nll[j]).abs() / want.model_nll[j].abs().max(1.0);
                assert!(e < 1e-12, "bps model_nll {rows}x{n} neuron {j}: {e:.2e}");
            }
        }
    }
}

#[test]
fn adamw_matches_the_cpu_bit_for_bit() {
    let Some(g) = gpu("adamw_matches_the_cpu_bit_for_bit") else {
        return;
    };
    let mut r = rng(12);
    for n in [1, 1000, 100_003] {
        for (step, clip) in [(1u64, 1.0f32), (7, 0.0), (3, 1e-3)] {
            let (p0, m0, gr) = (
                rand_vec(&mut r, n, 1.0),
                rand_vec(&mut r, n, 0.1),
                rand_vec(&mut r, n, 0.5),
            );
            let v0: Vec<f32> = rand_vec(&mut r, n, 0.1).iter().map(|v| v * v).collect();
            let tr = rand_mask(&mut r, n, 0.8);
            let hp = StepHyper {
                lr: 3e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                clip,
                dropout: 0.0,
                step,
                seed: 0,
            };
            let sc = scalars(&g, StepScalars::new(&hp, 1, 0, false));
            let res = g
                .upload_new(&[StepResult {
                    loss: 1.0,
                    ..StepResult::default()
                }])
                .unwrap();
            let parts = g.alloc::<f64>(adamw::norm_parts(n)).unwrap();
            let (gd, td) = (up(&g, &gr), up_u8(&g, &tr));
            adamw::grad_norm(&g, res.dev(), gd.dev(), td.dev(), n, sc.dev(), parts.dev()).unwrap();
            let rs = g.download(res.dev()).unwrap()[0];
            let norm_w = cpu::adamw::grad_norm(&gr, &tr);
            assert!(
                ((rs.grad_norm as f64 - norm_w) / norm_w.max(1e-30)).abs() < 1e-6,
                "norm {} vs {norm_w}",
                rs.grad_norm
            );
            assert_eq!(rs.update, 1);
            let (p, m, v) = (Out::with(&g, &p0), Out::with(&g, &m0), Out::with(&g, &v0));
            adamw::adamw_update(
                &g,
                p.dev(),
                m.dev(),
                v.dev(),
                gd.dev(),
                td.dev(),
                n,
                sc.dev(),
                res.dev(),
            )
            .unwrap();
            // The CPU with the GPU's clipping factor: the update itself must agree bit for bit.
            let (mut pw, mut mw, mut vw) = (p0.clone(), m0.clone(), v0.clone());
            cpu::adamw::adamw_update(&mut pw, &mut mw, &mut vw, &gr, &tr, &hp, rs.clip_coef);
            assert_eq!(rs.clip_coef, cpu::adamw::clip_coef(rs.grad_norm, clip));
            check_bits("adamw params", &p.read(&g, "params"), &pw);
            check_bits("adamw m", &m.read(&g, "m"), &mw);
            check_bits("adamw v", &v.read(&g, "v"), &vw);
        }
    }
    // A NaN loss: nothing moves.
    let n = 10;
    let hp = StepHyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        clip: 1.0,
        dropout: 0.0,
        step: 1,
        seed: 0,
    };
    let sc = scalars(&g, StepScalars::new(&hp, 1, 0, false));
    let res = g
        .upload_new(&[StepResult {
            loss: f64::NAN,
            ..StepResult::default()
        }])
        .unwrap();
    let parts = g.alloc::<f64>(1).unwrap();
    let (gd, td) = (up(&g, &[1.0; 10]), up_u8(&g, &[1; 10]));
    adamw::grad_norm(&g, res.dev(), gd.dev(), td.dev(), n, sc.dev(), parts.dev()).unwrap();
    let p = Out::with(&g, &[2.0; 10]);
    let (m, v) = (Out::with(&g, &[0.0; 10]), Out::with(&g, &[0.0; 10]));
    adamw::adamw_update(
        &g,
        p.dev(),
        m.dev(),
        v.dev(),
        gd.dev(),
        td.dev(),
        n,
        sc.dev(),
        res.dev(),
    )
    .unwrap();
    assert_eq!(g.download(res.dev()).unwrap()[0].update, 0);
    check_bits("params after a NaN loss", &p.read(&g, "params"), &[2.0; 10]);
}

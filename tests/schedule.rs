//! The OneCycle schedule (SPEC §4) against the closed form of PyTorch's `OneCycleLR`
//! documentation, worked out here by hand at chosen steps, and against every step of traces
//! recorded from torch itself (`fixtures/onecycle_torch.json`, tools/onecycle_vectors.py).

use ndt::train::schedule::OneCycle;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
}

#[test]
fn closed_form_at_chosen_steps() {
    let s = OneCycle::default();
    // 200 steps: warm-up ends at step 0.15 * 200 - 1 = 29, annealing ends at 199.
    let total = 200;
    let p = s.at(0, total);
    assert!(close(p.lr, 1e-4 / 10.0) && close(p.beta1, 0.95), "{p:?}");
    let p = s.at(29, total);
    assert!(close(p.lr, 1e-4) && close(p.beta1, 0.85), "{p:?}");
    let p = s.at(199, total);
    assert!(
        close(p.lr, 1e-4 / 10.0 / 1e4) && close(p.beta1, 0.95),
        "{p:?}"
    );
    // Halfway through annealing (step 29 + 170/2 = 114): cos(π/2) = 0, the mean of the ends.
    let p = s.at(114, total);
    assert!(
        close(p.lr, (1e-4 + 1e-9) / 2.0) && close(p.beta1, 0.90),
        "{p:?}"
    );
    // 400 steps: annealing runs from step 59 to 399; a quarter of the way (step 144):
    // lr = min + (max - min) (1 + cos(π/4)) / 2, β₁ = 0.85 + 0.10 (1 - cos(π/4)) / 2.
    let c = (std::f64::consts::PI / 4.0).cos();
    let p = s.at(144, 400);
    assert!(close(p.lr, 1e-9 + (1e-4 - 1e-9) * (1.0 + c) / 2.0), "{p:?}");
    assert!(close(p.beta1, 0.85 + 0.10 * (1.0 - c) / 2.0), "{p:?}");
    // 20 steps: warm-up ends at 2, its midpoint (step 1) is the mean of initial and peak.
    let p = s.at(1, 20);
    assert!(
        close(p.lr, (1e-5 + 1e-4) / 2.0) && close(p.beta1, 0.90),
        "{p:?}"
    );
}

#[test]
fn rises_then_falls_and_momentum_mirrors_it() {
    let s = OneCycle::default();
    let total = 1000;
    let peak = (0.15 * total as f64 - 1.0) as u64;
    for k in 0..total - 1 {
        let (a, b) = (s.at(k, total), s.at(k + 1, total));
        if k < peak {
            assert!(b.lr > a.lr && b.beta1 < a.beta1, "step {k}");
        } else {
            assert!(b.lr < a.lr && b.beta1 > a.beta1, "step {k}");
        }
    }
    // Past the end it stays at the end.
    assert_eq!(s.at(5000, total), s.at(total - 1, total));
}

#[test]
fn every_step_matches_torch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/onecycle_torch.json");
    let text = std::fs::read_to_string(path).expect("fixtures/onecycle_torch.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = OneCycle::default();
    let traces = v["traces"].as_array().unwrap();
    assert!(traces.len() >= 8);
    for t in traces {
        let total = t["total"].as_u64().unwrap();
        let lr = t["lr"].as_array().unwrap();
        let b1 = t["beta1"].as_array().unwrap();
        assert_eq!(lr.len() as u64, total);
        for k in 0..total {
            let p = s.at(k, total);
            let (want_lr, want_b) = (
                lr[k as usize].as_f64().unwrap(),
                b1[k as usize].as_f64().unwrap(),
            );
            assert!(
                close(p.lr, want_lr),
                "total {total} step {k}: lr {} vs torch {want_lr}",
                p.lr
            );
            assert!(
                close(p.beta1, want_b),
                "total {total} step {k}: beta1 {} vs torch {want_b}",
                p.beta1
            );
        }
    }
}

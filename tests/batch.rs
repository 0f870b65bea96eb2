//! Batching: epoch coverage, single-session batches, shuffling across sessions, scheme choice,
//! determinism by seed, the fixed validation draw.

use ndt::batch::{BatchOpts, EpochPlan, SessionSlot};
use ndt::mask::{Regions, supported};
use ndt::scheme::Scheme;
use std::collections::{BTreeMap, BTreeSet};

/// A slot with `m` split trials (odd indices, so they are not 0..m) and `n_regions` regions.
fn slot(session: usize, m: usize, n_regions: usize) -> SessionSlot {
    let n = 12;
    let of: Vec<u16> = (0..n).map(|j| (j % n_regions) as u16).collect();
    SessionSlot {
        session,
        id: format!("s{session}"),
        t: 5,
        n,
        regions: Regions::new(&of, n_regions),
        trials: (0..m as u32).map(|i| 2 * i + 1).collect(),
        schemes: supported(&Scheme::ALL, n_regions),
    }
}

fn slots() -> Vec<SessionSlot> {
    // Sizes below, at and above the batch size, and not multiples of it.
    vec![
        slot(0, 37, 3),
        slot(1, 16, 1),
        slot(2, 5, 2),
        slot(3, 64, 4),
        slot(4, 0, 2),
    ]
}

fn plan(opts: BatchOpts) -> EpochPlan {
    EpochPlan::new(slots(), opts).unwrap()
}

#[test]
fn plan_epoch_covers_every_trial_once_in_single_session_batches() {
    let mut p = plan(BatchOpts::train(16, &Scheme::ALL, 0.3, 7));
    // ceil(37/16) + 1 + 1 + 4 + 0
    assert_eq!(p.n_batches(), 3 + 1 + 1 + 4);
    for epoch in 0..4 {
        p.set_epoch(epoch);
        let mut seen: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        let mut short = BTreeMap::new();
        for k in 0..p.n_batches() {
            let b = p.batch(k);
            assert!(!b.trials.is_empty() && b.trials.len() <= 16);
            let s = p.slots()[b.slot].session;
            if b.trials.len() < 16 {
                *short.entry(s).or_insert(0) += 1;
            }
            seen.entry(s).or_default().extend(&b.trials);
        }
        for s in p.slots() {
            let mut got = seen.remove(&s.session).unwrap_or_default();
            got.sort();
            assert_eq!(got, s.trials, "epoch {epoch}: session {}", s.session);
        }
        // Only the last batch of a session is short: 37 -> 16,16,5 and 5 -> 5.
        assert_eq!(short, BTreeMap::from([(0, 1), (2, 1)]), "epoch {epoch}");
    }
}

#[test]
fn plan_shuffles_sessions_and_trials_each_epoch() {
    let mut p = plan(BatchOpts::train(4, &Scheme::ALL, 0.3, 3));
    let sessions =
        |p: &EpochPlan| -> Vec<usize> { (0..p.n_batches()).map(|k| p.batch(k).slot).collect() };
    let first_batches = |p: &EpochPlan| -> Vec<Vec<u32>> {
        (0..p.n_batches()).map(|k| p.batch(k).trials).collect()
    };
    let e0 = (sessions(&p), first_batches(&p));
    // Interleaved: not grouped by session.
    let changes = e0.0.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes > 4,
        "batch order looks grouped by session: {:?}",
        e0.0
    );
    // Trials within a batch are not in split order.
    assert!(e0.1.iter().any(|t| t.windows(2).any(|w| w[0] > w[1])));
    p.set_epoch(1);
    let e1 = (sessions(&p), first_batches(&p));
    assert_ne!(e0.0, e1.0, "another epoch, another session order");
    assert_ne!(e0.1, e1.1, "another epoch, other batches");
    p.set_epoch(0);
    assert_eq!((sessions(&p), first_batches(&p)), e0, "epoch 0 again");
}

#[test]
fn plan_without_shuffle_is_split_order() {
    let opts = BatchOpts {
        shuffle: false,
        ..BatchOpts::train(16, &Scheme::ALL, 0.3, 3)
    };
    let p = plan(opts);
    let mut flat = Vec::new();
    let mut slots = Vec::new();
    for k in 0..p.n_batches() {
        let b = p.batch(k);
        slots.push(b.slot);
        flat.extend(b.trials);
    }
    assert_eq!(slots, vec![0, 0, 0, 1, 2, 3, 3, 3, 3]);
    let want: Vec<u32> = p.slots().iter().flat_map(|s| s.trials.clone()).collect();
    assert_eq!(flat, want);
}

#[test]
fn plan_is_deterministic_by_seed() {
    let a = plan(BatchOpts::train(8, &Scheme::ALL, 0.3, 11));
    let b = plan(BatchOpts::train(8, &Scheme::ALL, 0.3, 11));
    let c = plan(BatchOpts::train(8, &Scheme::ALL, 0.3, 12));
    let all = |p: &EpochPlan| (0..p.n_batches()).map(|k| p.batch(k)).collect::<Vec<_>>();
    assert_eq!(all(&a), all(&b));
    assert_ne!(all(&a), all(&c));
    // Every batch has its own mask key.
    let keys: BTreeSet<u64> = all(&a).iter().map(|b| b.key).collect();
    assert_eq!(keys.len(), a.n_batches());
}

#[test]
fn plan_fixed_draw_repeats_every_epoch() {
    let mut p = plan(BatchOpts::validation(8, &Scheme::ALL, 0.3, 5));
    let all = |p: &EpochPlan| (0..p.n_batches()).map(|k| p.batch(k)).collect::<Vec<_>>();
    let e0 = all(&p);
    for epoch in [1, 2, 17] {
        p.set_epoch(epoch);
        assert_eq!(all(&p), e0, "epoch {epoch}");
    }
    // Training options do change with the epoch (same seed).
    let mut q = plan(BatchOpts::train(8, &Scheme::ALL, 0.3, 5));
    let q0 = all(&q);
    q.set_epoch(1);
    assert_ne!(all(&q), q0);
}

#[test]
fn plan_scheme_is_uniform_over_what_the_session_supports() {
    // Many epochs of a 3-region and a 1-region session, batch size 1: count schemes per session.
    let slots = vec![slot(0, 50, 3), slot(1, 50, 1)];
    let mut p = EpochPlan::new(slots, BatchOpts::train(1, &Scheme::ALL, 0.3, 9)).unwrap();
    let mut count: BTreeMap<(usize, Scheme), usize> = BTreeMap::new();
    let epochs = 40;
    for e in 0..epochs {
        p.set_epoch(e);
        for k in 0..p.n_batches() {
            let b = p.batch(k);
            *count.entry((b.slot, b.scheme)).or_default() += 1;
        }
    }
    let total = 50 * epochs as usize;
    for (slot, schemes) in [
        (0, Scheme::ALL.to_vec()),
        (1, vec![Scheme::CoSmooth, Scheme::Forward]),
    ] {
        let p = 1.0 / schemes.len() as f64;
        let sd = (total as f64 * p * (1.0 - p)).sqrt();
        for s in &schemes {
            let c = count.get(&(slot, *s)).copied().unwrap_or(0);
            assert!(
                (c as f64 - total as f64 * p).abs() < 5.0 * sd,
                "slot {slot}, {s}: {c} of {total}"
            );
        }
        let used: usize = count
            .iter()
            .filter(|((sl, _), _)| *sl == slot)
            .map(|(_, c)| c)
            .sum();
        assert_eq!(used, total, "slot {slot} used only its supported schemes");
    }
}

#[test]
fn plan_refuses_bad_options() {
    let bad = [
        BatchOpts::train(0, &Scheme::ALL, 0.3, 1),
        BatchOpts::train(16, &[], 0.3, 1),
        BatchOpts::train(16, &Scheme::ALL, 0.0, 1),
        BatchOpts::train(16, &Scheme::ALL, 1.5, 1),
        BatchOpts::train(16, &Scheme::ALL, f32::NAN, 1),
    ];
    for opts in bad {
        assert!(EpochPlan::new(slots(), opts.clone()).is_err(), "{opts:?}");
    }
    // A one-region session with only region schemes enabled: named in the error.
    let mut s = slot(1, 10, 1);
    s.schemes = supported(&[Scheme::InterRegion], 1);
    let err = EpochPlan::new(vec![s], BatchOpts::train(4, &[Scheme::InterRegion], 0.3, 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("s1") && err.contains("inter-region"), "{err}");
}

//! Batching: epoch coverage, single-session batches, shuffling across sessions, scheme choice,
//! determinism by seed, the fixed validation draw.

use ndt::batch::{Batch, BatchIter, BatchOpts, EpochPlan, Masking, SessionSlot, fill_batch};
use ndt::mask::{EvalMask, Regions, make_masks, supported};
use ndt::scheme::Scheme;
use ndt::store::{Dataset, DatasetWriter, NewSession, SplitName};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

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

/// Count of (session, trial, bin, neuron) in the test datasets: distinct enough that a count
/// from the wrong trial, bin or neuron shows.
fn count_at(s: usize, trial: usize, bin: usize, j: usize) -> u8 {
    ((s * 31 + trial * 7 + bin * 3 + j * 11) % 251) as u8
}

/// Sessions of the test dataset: (trials, bins, neurons, regions).
const SESSIONS: [(usize, usize, usize, usize); 4] =
    [(50, 6, 9, 3), (23, 4, 5, 1), (81, 5, 13, 2), (12, 3, 4, 4)];

/// Writes the test dataset into a fresh directory under the target's temp dir.
fn dataset(name: &str) -> (PathBuf, Dataset) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("batch-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let w = DatasetWriter::open(&dir, 42).unwrap();
    for (s, &(trials, t, n, r)) in SESSIONS.iter().enumerate() {
        let names = ["VISp", "CA1", "LP", "PO"];
        let session = NewSession {
            id: format!("sess-{s}"),
            subject: "m1".into(),
            lab: "lab".into(),
            animal: None,
            n_trials: trials,
            n_bins: t,
            n_neurons: n,
            bin_size_s: 0.02,
            onset_bin: Some(1),
            regions: (0..n).map(|j| names[(j * 7 + s) % r].to_string()).collect(),
            choice: vec![1; trials],
            behaviour: Vec::new(),
            provenance: serde_json::Value::Null,
        };
        w.add_session(session, &mut |trial, out| {
            for bin in 0..t {
                for j in 0..n {
                    out[bin * n + j] = count_at(s, trial, bin, j);
                }
            }
            Ok(())
        })
        .unwrap();
    }
    w.commit().unwrap();
    let ds = Dataset::open(&dir).unwrap();
    (dir, ds)
}

/// Counts of the batch are those written for its trials.
fn assert_counts(b: &Batch) {
    let (t, n) = (b.t, b.n);
    assert_eq!(b.counts.len(), b.b * t * n);
    assert_eq!(b.trials.len(), b.b);
    for (row, &trial) in b.trials.iter().enumerate() {
        for bin in 0..t {
            for j in 0..n {
                let got = b.counts[(row * t + bin) * n + j];
                assert_eq!(got, count_at(b.session, trial as usize, bin, j) as f32);
            }
        }
    }
}

#[test]
fn iter_epoch_visits_every_train_trial_once() {
    let (dir, ds) = dataset("coverage");
    let all: Vec<usize> = (0..ds.n_sessions()).collect();
    let mut it = BatchIter::new(&ds, &all, SplitName::Train, BatchOpts::default()).unwrap();
    let want_batches: usize = all
        .iter()
        .map(|&s| ds.session(s).split(SplitName::Train).len().div_ceil(16))
        .sum();
    assert_eq!(it.n_batches(), want_batches);
    let mut batch = Batch::empty();
    for epoch in 0..3 {
        it.start_epoch(epoch);
        let mut seen: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        let mut order = Vec::new();
        let mut k = 0;
        while it.next_batch(&mut batch) {
            k += 1;
            assert_eq!(it.position(), k);
            assert_counts(&batch);
            let info = ds.session(batch.session);
            assert_eq!(batch.session_id, info.id);
            assert_eq!((batch.t, batch.n), (info.n_bins, info.n_neurons));
            assert!(batch.b >= 1 && batch.b <= 16);
            assert_eq!(batch.causal(), batch.scheme == Scheme::Forward);
            if info.region_index().0.len() < 2 {
                assert!(
                    !batch.scheme.needs_regions(),
                    "{} on a 1-region session",
                    batch.scheme
                );
            }
            // Every row has a target.
            let tn = batch.t * batch.n;
            for row in 0..batch.b {
                assert!(batch.target[row * tn..(row + 1) * tn].contains(&1));
            }
            seen.entry(batch.session).or_default().extend(&batch.trials);
            order.push(batch.session);
        }
        assert_eq!(k, want_batches);
        assert!(!it.next_batch(&mut batch), "stays at the end");
        for &s in &all {
            let mut got = seen.remove(&s).unwrap();
            got.sort();
            assert_eq!(
                got,
                ds.session(s).split(SplitName::Train),
                "epoch {epoch} session {s}"
            );
        }
        let changes = order.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(
            changes > ds.n_sessions(),
            "sessions not interleaved: {order:?}"
        );
    }
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn iter_masks_are_the_planned_draws() {
    // The iterator's masks are make_masks with the plan's scheme and key.
    let (dir, ds) = dataset("draws");
    let opts = BatchOpts::train(8, &Scheme::ALL, 0.3, 77);
    let mut it = BatchIter::new(&ds, &[0, 2, 3], SplitName::Val, opts).unwrap();
    let mut batch = Batch::empty();
    let mut k = 0;
    while it.next_batch(&mut batch) {
        let p = it.plan().batch(k);
        let slot = &it.plan().slots()[p.slot];
        assert_eq!(batch.trials, p.trials);
        assert_eq!(batch.scheme, p.scheme);
        let len = batch.b * batch.t * batch.n;
        let (mut m, mut g) = (vec![0; len], vec![0; len]);
        make_masks(
            p.scheme,
            batch.b,
            slot.t,
            slot.n,
            &slot.regions,
            0.3,
            p.key,
            &mut m,
            &mut g,
        );
        assert_eq!(batch.mask, m);
        assert_eq!(batch.target, g);
        k += 1;
    }
    assert_eq!(k, it.n_batches());
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A batch's session, trials, scheme, mask and target.
type Flat = (usize, Vec<u32>, Scheme, Vec<u8>, Vec<u8>);

/// Every batch of an epoch, flattened for comparison.
fn epoch_batches(it: &mut BatchIter, epoch: u64) -> Vec<Flat> {
    it.epoch(epoch)
        .map(|b| {
            assert_counts(&b);
            (b.session, b.trials, b.scheme, b.mask, b.target)
        })
        .collect()
}

#[test]
fn iter_is_deterministic_by_seed_and_resumable() {
    let (dir, ds) = dataset("determinism");
    let all = [0, 1, 2, 3];
    let opts = |seed| BatchOpts::train(16, &Scheme::ALL, 0.3, seed);
    let mut a = BatchIter::new(&ds, &all, SplitName::Train, opts(5)).unwrap();
    let mut b = BatchIter::new(&ds, &all, SplitName::Train, opts(5)).unwrap();
    let mut c = BatchIter::new(&ds, &all, SplitName::Train, opts(6)).unwrap();
    let a3 = epoch_batches(&mut a, 3);
    assert_eq!(a3, epoch_batches(&mut b, 3));
    assert_ne!(a3, epoch_batches(&mut c, 3));
    assert_ne!(a3, epoch_batches(&mut a, 4), "another epoch, other batches");
    // Resume epoch 3 at position 2: the same batches as from the start.
    b.start_epoch(3);
    b.seek(2);
    let mut batch = Batch::empty();
    let mut rest = Vec::new();
    while b.next_batch(&mut batch) {
        rest.push((
            batch.session,
            batch.trials.clone(),
            batch.scheme,
            batch.mask.clone(),
            batch.target.clone(),
        ));
    }
    assert_eq!(rest, a3[2..]);
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn iter_validation_draw_is_fixed() {
    let (dir, ds) = dataset("validation");
    let opts = BatchOpts::validation(16, &Scheme::ALL, 0.3, 5);
    let mut it = BatchIter::new(&ds, &[0, 1, 2, 3], SplitName::Val, opts).unwrap();
    let e0 = epoch_batches(&mut it, 0);
    assert_eq!(e0, epoch_batches(&mut it, 1));
    assert_eq!(e0, epoch_batches(&mut it, 250));
    // Split order, session by session.
    let sessions: Vec<usize> = e0.iter().map(|b| b.0).collect();
    let mut sorted = sessions.clone();
    sorted.sort();
    assert_eq!(sessions, sorted);
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn iter_refuses_bad_sessions() {
    let (dir, ds) = dataset("refusals");
    let opts = BatchOpts::default();
    let err = |sessions: &[usize], opts: BatchOpts| {
        BatchIter::new(&ds, sessions, SplitName::Train, opts)
            .err()
            .map(|e| e.to_string())
    };
    assert!(err(&[0, 9], opts.clone()).unwrap().contains("out of range"));
    assert!(err(&[2, 0, 2], opts.clone()).unwrap().contains("sess-2"));
    // Session 1 has one region: the region schemes alone cannot batch it.
    let regional = BatchOpts::train(16, &[Scheme::InterRegion, Scheme::IntraRegion], 0.3, 1);
    assert!(err(&[0, 1], regional.clone()).unwrap().contains("sess-1"));
    assert!(err(&[0, 2], regional).is_none());
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fill_batch_with_eval_masks() {
    let (dir, ds) = dataset("fill");
    let regions = ndt::batch::session_regions(ds.session(2));
    let trials = [4u32, 0, 80];
    let mut b = Batch::empty();
    let e = EvalMask::IntraRegion {
        region: 1,
        neuron: regions.members(1)[0] as usize,
    };
    fill_batch(&ds, 2, &trials, &Masking::Eval(e), &mut b).unwrap();
    assert_counts(&b);
    assert_eq!(b.scheme, Scheme::IntraRegion);
    let tn = b.t * b.n;
    let (mut m, mut g) = (vec![0; tn], vec![0; tn]);
    e.fill(b.t, b.n, &regions, &mut m, &mut g);
    for row in 0..3 {
        assert_eq!(b.mask[row * tn..(row + 1) * tn], m[..]);
        assert_eq!(b.target[row * tn..(row + 1) * tn], g[..]);
    }
    // Reusing the batch for a smaller session shrinks it.
    let e = EvalMask::Forward { start: 1, len: 2 };
    fill_batch(&ds, 3, &[11], &Masking::Eval(e), &mut b).unwrap();
    assert_counts(&b);
    assert_eq!((b.b, b.mask.len(), b.scheme), (1, 3 * 4, Scheme::Forward));
    // Bad trial, bad session, region task on a one-region session.
    assert!(fill_batch(&ds, 3, &[12], &Masking::Eval(e), &mut b).is_err());
    assert!(fill_batch(&ds, 4, &[0], &Masking::Eval(e), &mut b).is_err());
    let inter = Masking::Eval(EvalMask::InterRegion { region: 0 });
    assert!(fill_batch(&ds, 1, &[0], &inter, &mut b).is_err());
    drop(ds);
    std::fs::remove_dir_all(dir).unwrap();
}

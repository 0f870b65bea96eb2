//! The evaluation tasks (SPEC §5) through a recording stand-in backend: which entries each task
//! scores (every held-out entry exactly once, nothing else), which masks and prompts it sends,
//! that its bits per spike equal `bits_per_spike` over exactly those entries, the forward windows
//! from onset (or bin 0) cut at the end of the trial, region tasks skipped for one-region
//! sessions, and choice decoding from the asked-for block on unmasked input.

use ndt::backend::{Backend, ForwardOpts, ForwardOut, StepHyper, StepStats};
use ndt::batch::Batch;
use ndt::eval::bps::{accumulate, bits_per_spike};
use ndt::eval::tasks::{EvalOpts, evaluate};
use ndt::model::ModelConfig;
use ndt::scheme::Scheme;
use ndt::store::{Dataset, DatasetWriter, NewSession, SplitName};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const T: usize = 20;
const N: usize = 7;
const ONSET: usize = 3;
const TRIALS: usize = 60;
const REGIONS: [&str; N] = ["X", "X", "Y", "Y", "Y", "Z", "X"];

fn count(trial: usize, bin: usize, neuron: usize) -> u8 {
    if neuron == 6 {
        return 0; // a silent neuron
    }
    ((trial * 7 + bin * 3 + neuron * 5) % 5) as u8 / 2
}

fn choice(trial: usize) -> i8 {
    match trial % 7 {
        0 => 0,
        k if k % 2 == 0 => 1,
        _ => -1,
    }
}

/// The rate the stand-in model predicts for an entry.
fn rate(trial: u32, bin: usize, neuron: usize) -> f64 {
    0.2 + 0.1 * ((trial as usize + 2 * bin + 3 * neuron) % 7) as f64
}

/// Session "a": 3 regions, onset at bin 3, a silent neuron, some unknown choices; session "b":
/// one region, no onset, 15 bins.
fn dataset() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("eval-ds");
        let _ = std::fs::remove_dir_all(&dir);
        let w = DatasetWriter::open(&dir, 42).unwrap();
        let session = |id: &str, t: usize, onset: Option<usize>, regions: Vec<String>| NewSession {
            id: id.into(),
            subject: "s".into(),
            lab: "l".into(),
            animal: None,
            n_trials: TRIALS,
            n_bins: t,
            n_neurons: N,
            bin_size_s: 0.02,
            onset_bin: onset,
            regions,
            choice: (0..TRIALS).map(choice).collect(),
            behaviour: Vec::new(),
            provenance: serde_json::json!({}),
        };
        let fill = |t: usize| {
            move |trial: usize, out: &mut [u8]| {
                for b in 0..t {
                    for j in 0..N {
                        out[b * N + j] = count(trial, b, j);
                    }
                }
                Ok(())
            }
        };
        let regions = REGIONS.iter().map(|s| s.to_string()).collect();
        w.add_session(session("a", T, Some(ONSET), regions), &mut fill(T))
            .unwrap();
        w.add_session(session("b", 15, None, vec!["X".into(); N]), &mut fill(15))
            .unwrap();
        w.commit().unwrap();
        dir
    })
}

/// One row the stand-in backend was asked about.
#[derive(Clone, Debug)]
struct Row {
    scheme: Scheme,
    trial: u32,
    mask: Vec<u8>,
    target: Vec<u8>,
    capture: Option<usize>,
}

/// Predicts `rate` on target entries and NaN everywhere else (so scoring a non-target entry
/// poisons the result); block features carry the trial's choice.
struct Recorder {
    rows: Vec<Row>,
}

impl Backend for Recorder {
    fn name(&self) -> String {
        "recorder".into()
    }
    fn set_params(&mut self, _: &[f32]) -> ndt::Result<()> {
        Ok(())
    }
    fn params(&self) -> ndt::Result<Vec<f32>> {
        Ok(Vec::new())
    }
    fn moments(&self) -> ndt::Result<(Vec<f32>, Vec<f32>)> {
        Ok((Vec::new(), Vec::new()))
    }
    fn set_moments(&mut self, _: &[f32], _: &[f32]) -> ndt::Result<()> {
        Ok(())
    }
    fn set_trainable(&mut self, _: &[u8]) -> ndt::Result<()> {
        Ok(())
    }
    fn train_step(&mut self, _: &Batch, _: &StepHyper) -> ndt::Result<StepStats> {
        unreachable!("evaluation does not train")
    }
    fn loss_and_grad(&mut self, _: &Batch) -> ndt::Result<(ForwardOut, Vec<f32>)> {
        unreachable!("evaluation takes no gradients")
    }
    fn forward(&mut self, b: &Batch, opts: &ForwardOpts) -> ndt::Result<ForwardOut> {
        let tn = b.t * b.n;
        let mut log_rates = vec![f32::NAN; b.b * tn];
        let mut features = Vec::new();
        for r in 0..b.b {
            let trial = b.trials[r];
            let span = r * tn..(r + 1) * tn;
            for i in span.clone() {
                if b.target[i] != 0 {
                    let (bin, j) = ((i - r * tn) / b.n, i % b.n);
                    log_rates[i] = (rate(trial, bin, j) as f32).ln();
                }
            }
            // Counts must be the trial's own.
            for (i, &c) in b.counts[span.clone()].iter().enumerate() {
                assert_eq!(c, count(trial as usize, i / b.n, i % b.n) as f32);
            }
            self.rows.push(Row {
                scheme: b.scheme,
                trial,
                mask: b.mask[span.clone()].to_vec(),
                target: b.target[span].to_vec(),
                capture: opts.capture_block,
            });
            if opts.capture_block.is_some() {
                // [T, 2] features: the choice with a little trial-dependent jitter, and noise.
                for bin in 0..b.t {
                    let jitter = ((trial * 13 + bin as u32) % 10) as f32 * 0.01;
                    features.push(choice(trial as usize) as f32 + jitter);
                    features.push(((trial * 31 + bin as u32 * 7) % 11) as f32);
                }
            }
        }
        Ok(ForwardOut {
            log_rates,
            loss: f32::NAN,
            features: opts.capture_block.map(|_| features),
        })
    }
}

fn config(sid: &str, t: usize) -> ModelConfig {
    ModelConfig {
        d_model: 2,
        d_tok: 2,
        d_embed_hidden: 4,
        n_layers: 3,
        n_heads: 1,
        d_ff: 4,
        n_bins: t,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([(sid.to_string(), N)]),
    }
}

/// The entries (bin, neuron) each task must score, written out from SPEC §5.
fn scored(task: Scheme, t: usize, onset: usize) -> Vec<(usize, usize)> {
    let bins = match task {
        Scheme::Forward => onset..(onset + 110).min(t),
        _ => 0..t,
    };
    bins.flat_map(|b| (0..N).map(move |j| (b, j))).collect()
}

#[test]
fn every_task_scores_each_held_out_entry_once_and_nothing_else() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("a").unwrap();
    let test: Vec<u32> = ds.session(s).split(SplitName::Test).to_vec();
    let opts = EvalOpts {
        choice: false,
        rows_per_pass: 5,
        ..EvalOpts::default()
    };
    let mut be = Recorder { rows: Vec::new() };
    let report = evaluate(&mut be, &config("a", T), &ds, s, &opts).unwrap();
    for task in Scheme::ALL {
        let rows: Vec<&Row> = be.rows.iter().filter(|r| r.scheme == task).collect();
        let mut seen = HashSet::new();
        for r in &rows {
            for (i, (&m, &g)) in r.mask.iter().zip(&r.target).enumerate() {
                assert!(g == 0 || m == 1, "{task}: a target entry is visible");
                if g != 0 {
                    assert!(seen.insert((r.trial, i / N, i % N)), "{task}: scored twice");
                }
            }
        }
        let want: HashSet<(u32, usize, usize)> = test
            .iter()
            .flat_map(|&tr| {
                scored(task, T, ONSET)
                    .into_iter()
                    .map(move |(b, j)| (tr, b, j))
            })
            .collect();
        assert_eq!(seen, want, "{task}: scored entries");

        // Bits per spike over exactly those entries (others NaN, as nlb_tools masks them).
        let mut rates = Vec::new();
        let mut spikes = Vec::new();
        for &tr in &test {
            for b in 0..T {
                for j in 0..N {
                    rates.push(rate(tr, b, j) as f32 as f64);
                    let x = count(tr as usize, b, j) as f64;
                    spikes.push(if want.contains(&(tr, b, j)) {
                        x
                    } else {
                        f64::NAN
                    });
                }
            }
        }
        let r = &report.tasks[task.name()];
        let pooled = bits_per_spike(&rates, &spikes, N);
        let per_neuron = accumulate(&rates, &spikes, N).finish();
        assert!((r.pooled.unwrap() - pooled).abs() < 1e-6, "{task} pooled");
        assert!((r.per_neuron.unwrap() - per_neuron.per_neuron_mean).abs() < 1e-6);
        assert_eq!(r.n_neurons_used, N - 1, "the silent neuron is skipped");
        assert!(r.per_neuron_bps[6].is_none());
        assert_eq!(r.n_entries as usize, want.len());
    }
    // Masks per task: one per neuron, per window, per region, per (region, neuron).
    let masks = |t: &str| report.tasks[t].n_masks;
    assert_eq!(masks("co-smooth"), N);
    assert_eq!(masks("forward"), 2); // bins 3..13 and 13..20
    assert_eq!(masks("inter-region"), 3);
    assert_eq!(masks("intra-region"), N);
    assert_eq!(be.rows.len(), test.len() * (N + 2 + 3 + N));
    let m = report.metrics();
    for t in ["co-smooth", "forward", "inter-region", "intra-region"] {
        assert!(m.contains_key(t) && m.contains_key(&format!("{t}.pooled")));
    }
}

#[test]
fn batching_does_not_change_the_result() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("a").unwrap();
    let run = |rows| {
        let opts = EvalOpts {
            rows_per_pass: rows,
            ..EvalOpts::default()
        };
        evaluate(
            &mut Recorder { rows: Vec::new() },
            &config("a", T),
            &ds,
            s,
            &opts,
        )
        .unwrap()
    };
    assert_eq!(run(1), run(64));
}

#[test]
fn one_region_sessions_skip_region_tasks_and_forward_starts_at_bin_0_without_onset() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("b").unwrap();
    let opts = EvalOpts {
        choice: false,
        ..EvalOpts::default()
    };
    let mut be = Recorder { rows: Vec::new() };
    let r = evaluate(&mut be, &config("b", 15), &ds, s, &opts).unwrap();
    assert!(r.tasks.contains_key("co-smooth") && r.tasks.contains_key("forward"));
    assert!(r.skipped.contains_key("inter-region") && r.skipped.contains_key("intra-region"));
    assert_eq!(r.tasks["forward"].n_masks, 2); // bins 0..10 and 10..15
    let test = ds.session(s).split(SplitName::Test).len();
    assert_eq!(r.tasks["forward"].n_entries as usize, test * 15 * N);
    assert!(be.rows.iter().all(|r| !r.scheme.needs_regions()));
}

#[test]
fn choice_decoding_reads_the_asked_block_on_unmasked_trials() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("a").unwrap();
    let opts = EvalOpts {
        tasks: vec![],
        ..EvalOpts::default()
    };
    let mut be = Recorder { rows: Vec::new() };
    let r = evaluate(&mut be, &config("a", T), &ds, s, &opts).unwrap();
    let c = r.choice.expect("choice decoding ran");
    assert_eq!(c.accuracy, 1.0, "the features carry the choice");
    let info = ds.session(s);
    let known = |sp: SplitName| {
        info.split(sp)
            .iter()
            .filter(|&&t| choice(t as usize) != 0)
            .count()
    };
    assert_eq!(c.n_fit, known(SplitName::Train) + known(SplitName::Val));
    assert_eq!(c.n_test, known(SplitName::Test));
    let test: Vec<i8> = info
        .split(SplitName::Test)
        .iter()
        .map(|&t| choice(t as usize))
        .filter(|&c| c != 0)
        .collect();
    let right = test.iter().filter(|&&c| c > 0).count();
    let majority = right.max(test.len() - right) as f64 / test.len() as f64;
    assert_eq!(c.majority, majority);
    assert!(!be.rows.is_empty());
    for row in &be.rows {
        assert_eq!(row.capture, Some(2), "block 3 is index 2");
        assert!(
            row.mask.iter().all(|&m| m == 0),
            "choice features use unmasked input"
        );
        assert_ne!(
            choice(row.trial as usize),
            0,
            "unknown choices are left out"
        );
    }
    // A block the model does not have, asked for, is a usage error naming the flag and the
    // number of blocks; nothing is evaluated.
    for block in [4, 0] {
        let opts = EvalOpts {
            tasks: vec![Scheme::CoSmooth],
            choice_block: Some(block),
            ..EvalOpts::default()
        };
        let mut be = Recorder { rows: Vec::new() };
        let e = evaluate(&mut be, &config("a", T), &ds, s, &opts).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("--choice-block {block}")) && msg.contains("3 blocks"),
            "{msg}"
        );
        assert!(be.rows.is_empty());
    }
    // The default block on a model with fewer blocks is reported, not fatal.
    let mut small = config("a", T);
    small.n_layers = 2;
    let opts = EvalOpts {
        tasks: vec![],
        ..EvalOpts::default()
    };
    let r = evaluate(&mut Recorder { rows: Vec::new() }, &small, &ds, s, &opts).unwrap();
    assert!(r.choice.is_none() && r.choice_skipped.unwrap().contains("block 3"));
}

#[test]
fn d2_and_baselines_are_reported_beside_bits_per_spike() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("a").unwrap();
    let opts = EvalOpts {
        choice: false,
        tasks: vec![Scheme::CoSmooth, Scheme::Forward],
        baselines: true,
        ..EvalOpts::default()
    };
    let r = evaluate(
        &mut Recorder { rows: Vec::new() },
        &config("a", T),
        &ds,
        s,
        &opts,
    )
    .unwrap();
    let test: Vec<u32> = ds.session(s).split(SplitName::Test).to_vec();
    for task in [Scheme::CoSmooth, Scheme::Forward] {
        let t = &r.tasks[task.name()];
        // D² over exactly the scored entries, from the same rates.
        let mut rates = Vec::new();
        let mut spikes = Vec::new();
        let bins = scored(task, T, ONSET);
        for &tr in &test {
            for b in 0..T {
                for j in 0..N {
                    rates.push(rate(tr, b, j) as f32 as f64);
                    let x = count(tr as usize, b, j) as f64;
                    spikes.push(if bins.contains(&(b, j)) { x } else { f64::NAN });
                }
            }
        }
        let d = ndt::eval::d2::poisson_d2(&rates, &spikes, N);
        assert!((t.d2.unwrap() - d.mean).abs() < 1e-6, "{task}");
        assert!((t.d2_pooled.unwrap() - d.pooled).abs() < 1e-6, "{task}");
        assert!(t.per_neuron_d2[6].is_none(), "the silent neuron has no D²");
        let b = accumulate(&rates, &spikes, N).finish();
        assert!((t.pooled_bwb.unwrap() - b.pooled_spiking).abs() < 1e-6);
        // The mean-rate reference scores 0 on every measure.
        let m = &t.baselines["mean-rate"];
        for v in [m.per_neuron, m.pooled, m.pooled_bwb, m.d2, m.d2_pooled] {
            assert!(v.unwrap().abs() < 1e-12, "{task}: {m:?}");
        }
    }
    // The GLM baseline: co-smoothing only, settings recorded, in the flat metrics.
    assert!(r.tasks["co-smooth"].baselines.contains_key("smoothed-glm"));
    assert!(!r.tasks["forward"].baselines.contains_key("smoothed-glm"));
    let g = r.glm_baseline.as_ref().expect("GLM baseline ran");
    assert_eq!(g.fit_splits, ["train", "val"]);
    assert_eq!((g.window_bins, g.window_sd_bins), (15, 2)); // 50 ms kernel, 20 ms bins
    assert_eq!(g.n_units_fit, N - 1);
    let m = r.metrics();
    for k in [
        "co-smooth.d2",
        "co-smooth.d2.pooled",
        "co-smooth.glm",
        "co-smooth.glm.d2",
        "forward.d2",
    ] {
        assert!(m.contains_key(k), "{k}");
    }
    assert!(!m.contains_key("forward.glm"));
    for k in ["per_neuron", "pooled", "pooled_bwb", "d2", "d2_pooled"] {
        assert!(r.conventions.contains_key(k));
    }
    assert!(r.conventions["per_neuron"].contains("per-neuron mean (MtM)"));
    assert!(r.conventions["pooled"].contains("pooled (nlb_tools)"));
    let table = ndt::eval::tasks::format_table(&r);
    for s in [
        "(MtM)",
        "(nlb_tools)",
        "D²",
        "mean-rate",
        "smoothed-glm",
        "alpha 0.01",
    ] {
        assert!(table.contains(s), "{s}:\n{table}");
    }
    // Without baselines none are computed.
    let opts = EvalOpts {
        baselines: false,
        ..opts
    };
    let r = evaluate(
        &mut Recorder { rows: Vec::new() },
        &config("a", T),
        &ds,
        s,
        &opts,
    )
    .unwrap();
    assert!(r.tasks.values().all(|t| t.baselines.is_empty()) && r.glm_baseline.is_none());
}

#[test]
fn a_model_without_the_session_is_a_user_error() {
    let ds = Dataset::open(dataset()).unwrap();
    let s = ds.find("a").unwrap();
    let e = evaluate(
        &mut Recorder { rows: Vec::new() },
        &config("zzz", T),
        &ds,
        s,
        &EvalOpts::default(),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("finetune"), "{e}");
}

//! The evaluation tasks of SPEC §5 on one split (normally test) of one session.
//!
//! Every task is a list of fixed masks (`mask::eval_masks`): co-smoothing holds out each neuron
//! alone, forward prediction each 10-bin window from stimulus onset (bin 0 when the session has
//! no onset; windows cut at the end of the trial), inter-region each region, intra-region each
//! neuron given only its own region. Each (mask, trial) pair is one row of a forward pass; rows
//! of one task are packed into batches of `rows_per_pass`, so a batch mixes masks and trials.
//! Only the held-out entries (the mask's targets) are scored; each entry of the split is held
//! out at most once per task, so one `BpsAccum` per task gives both bits-per-spike conventions.
//!
//! Choice decoding reads the output of block `choice_block` (1-based; the paper's block 3 of 5)
//! on the unmasked trial with the co-smoothing prompt, mean-pooled over the data tokens, and fits
//! `eval::choice` on the train+val trials, scoring on the evaluated split's trials.

use crate::backend::{Backend, ForwardOpts};
use crate::batch::{Batch, session_regions};
use crate::error::{Result, internal, usage};
use crate::eval::bps::BpsAccum;
use crate::eval::choice::{ChoiceOpts, ChoiceResult, decode_choice};
use crate::mask::{EvalMask, eval_masks, supports};
use crate::model::ModelConfig;
use crate::scheme::Scheme;
use crate::store::{Dataset, SplitName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to evaluate and how.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOpts {
    pub split: SplitName,
    /// Masked-prediction tasks to run (named by their prompt scheme).
    pub tasks: Vec<Scheme>,
    /// Run choice decoding.
    pub choice: bool,
    /// Block whose output feeds choice decoding (1-based).
    pub choice_block: usize,
    /// Rows (mask × trial) per forward pass.
    pub rows_per_pass: usize,
    pub choice_opts: ChoiceOpts,
}

impl Default for EvalOpts {
    fn default() -> Self {
        EvalOpts {
            split: SplitName::Test,
            tasks: Scheme::ALL.to_vec(),
            choice: true,
            choice_block: 3,
            rows_per_pass: 64,
            choice_opts: ChoiceOpts::default(),
        }
    }
}

/// Bits per spike of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Per-neuron bps averaged over neurons with spikes (MtM's convention); None if none spiked.
    pub per_neuron: Option<f64>,
    /// Pooled bps (`nlb_tools`' `bits_per_spike`).
    pub pooled: Option<f64>,
    pub n_neurons_used: usize,
    pub n_spikes: f64,
    /// Held-out entries scored.
    pub n_entries: u64,
    /// Distinct masks (neurons, windows, regions, ...).
    pub n_masks: usize,
    /// Each neuron's bps (None for neurons not scored or without spikes).
    pub per_neuron_bps: Vec<Option<f64>>,
}

/// The evaluation of one session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub session: String,
    pub split: String,
    pub n_trials: usize,
    pub n_neurons: usize,
    pub n_regions: usize,
    /// Task name -> result.
    pub tasks: BTreeMap<String, TaskResult>,
    /// Task name -> why it was not run (e.g. one region).
    pub skipped: BTreeMap<String, String>,
    pub choice: Option<ChoiceResult>,
    /// Why choice decoding was not run, if it was asked for and could not be.
    pub choice_skipped: Option<String>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl EvalReport {
    /// Flat metrics: `<task>` (per-neuron bps), `<task>.pooled`, `choice`, `choice.majority`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for (name, r) in &self.tasks {
            if let Some(v) = r.per_neuron {
                m.insert(name.clone(), v);
            }
            if let Some(v) = r.pooled {
                m.insert(format!("{name}.pooled"), v);
            }
        }
        if let Some(c) = &self.choice {
            m.insert("choice".into(), c.accuracy);
            m.insert("choice.majority".into(), c.majority);
        }
        m
    }
}

/// Reusable batch assembly for evaluation rows.
struct Rows<'a> {
    ds: &'a Dataset,
    session: usize,
    id: String,
    t: usize,
    n: usize,
    batch: Batch,
}

impl<'a> Rows<'a> {
    /// Fills the batch with `rows` (mask, trial); `mask == None` leaves the input unmasked.
    fn fill(
        &mut self,
        scheme: Scheme,
        rows: &[(Option<EvalMask>, u32)],
        regions: &crate::mask::Regions,
    ) {
        let (t, n) = (self.t, self.n);
        let tn = t * n;
        let b = &mut self.batch;
        b.session = self.session;
        b.session_id.clone_from(&self.id);
        b.scheme = scheme;
        (b.b, b.t, b.n) = (rows.len(), t, n);
        b.trials.clear();
        b.trials.extend(rows.iter().map(|r| r.1));
        b.counts.resize(rows.len() * tn, 0.0);
        b.mask.resize(rows.len() * tn, 0);
        b.target.resize(rows.len() * tn, 0);
        for (r, (m, trial)) in rows.iter().enumerate() {
            let span = r * tn..(r + 1) * tn;
            for (d, &c) in b.counts[span.clone()]
                .iter_mut()
                .zip(self.ds.trial(self.session, *trial as usize))
            {
                *d = c as f32;
            }
            match m {
                Some(m) => m.fill(
                    t,
                    n,
                    regions,
                    &mut b.mask[span.clone()],
                    &mut b.target[span],
                ),
                None => {
                    b.mask[span.clone()].fill(0);
                    b.target[span].fill(0);
                }
            }
        }
    }
}

/// Checks that the backend's model (`cfg`) can run session `session` of `ds`.
pub fn check_fit(cfg: &ModelConfig, ds: &Dataset, session: usize) -> Result<()> {
    let info = ds.session(session);
    match cfg.sessions.get(&info.id) {
        None => Err(usage(format!(
            "the model has no stitchers for session {} (it knows: {}); finetune it on that session first",
            info.id,
            cfg.sessions.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
        Some(&n) if n != info.n_neurons => Err(usage(format!(
            "session {} has {} neurons, the model's stitchers expect {n}",
            info.id, info.n_neurons
        ))),
        _ if cfg.n_bins != info.n_bins => Err(usage(format!(
            "session {} has {} bins, the model has {}",
            info.id, info.n_bins, cfg.n_bins
        ))),
        _ => Ok(()),
    }
}

/// Runs one masked-prediction task; None if the session does not support it.
pub fn run_task(
    backend: &mut dyn Backend,
    ds: &Dataset,
    session: usize,
    scheme: Scheme,
    opts: &EvalOpts,
) -> Result<Option<TaskResult>> {
    let info = ds.session(session);
    let regions = session_regions(info);
    if !supports(scheme, regions.n_regions()) {
        return Ok(None);
    }
    let (t, n) = (info.n_bins, info.n_neurons);
    let masks = eval_masks(scheme, t, info.onset_bin.unwrap_or(0), &regions);
    let trials = info.split(opts.split);
    let rows: Vec<(Option<EvalMask>, u32)> = masks
        .iter()
        .flat_map(|&m| trials.iter().map(move |&tr| (Some(m), tr)))
        .collect();
    let mut acc = BpsAccum::new(n);
    let mut asm = Rows {
        ds,
        session,
        id: info.id.clone(),
        t,
        n,
        batch: Batch::empty(),
    };
    let tn = t * n;
    for chunk in rows.chunks(opts.rows_per_pass.max(1)) {
        asm.fill(scheme, chunk, &regions);
        let out = backend.forward(&asm.batch, &ForwardOpts::default())?;
        let b = &asm.batch;
        if out.log_rates.len() != b.b * tn {
            return Err(internal(format!(
                "forward returned {} log-rates for a [{}, {t}, {n}] batch",
                out.log_rates.len(),
                b.b
            )));
        }
        for (i, ((&g, &lr), &x)) in b
            .target
            .iter()
            .zip(&out.log_rates)
            .zip(&b.counts)
            .enumerate()
        {
            if g != 0 {
                acc.add_log_rate(i % n, lr, x as f64);
            }
        }
    }
    let r = acc.finish();
    Ok(Some(TaskResult {
        per_neuron: finite(r.per_neuron_mean),
        pooled: finite(r.pooled),
        n_neurons_used: r.n_neurons_used,
        n_spikes: r.n_spikes,
        n_entries: r.n_entries,
        n_masks: masks.len(),
        per_neuron_bps: r.per_neuron.iter().map(|&v| finite(v)).collect(),
    }))
}

/// Mean-pooled block features `[trials.len(), d_model]` of the unmasked trials.
pub fn block_features(
    backend: &mut dyn Backend,
    ds: &Dataset,
    session: usize,
    trials: &[u32],
    block: usize,
    rows_per_pass: usize,
) -> Result<(Vec<f64>, usize)> {
    let info = ds.session(session);
    let regions = session_regions(info);
    let (t, n) = (info.n_bins, info.n_neurons);
    let mut asm = Rows {
        ds,
        session,
        id: info.id.clone(),
        t,
        n,
        batch: Batch::empty(),
    };
    let rows: Vec<(Option<EvalMask>, u32)> = trials.iter().map(|&tr| (None, tr)).collect();
    let opts = ForwardOpts {
        capture_block: Some(block - 1),
    };
    let mut feats = Vec::new();
    let mut d = 0;
    for chunk in rows.chunks(rows_per_pass.max(1)) {
        asm.fill(Scheme::CoSmooth, chunk, &regions);
        let out = backend.forward(&asm.batch, &opts)?;
        let f = out
            .features
            .ok_or_else(|| internal("forward returned no block features"))?;
        if f.is_empty() || f.len() % (chunk.len() * t) != 0 {
            return Err(internal(format!("block features of length {}", f.len())));
        }
        d = f.len() / (chunk.len() * t);
        for row in f.chunks_exact(t * d) {
            let mut mean = vec![0f64; d];
            for tok in row.chunks_exact(d) {
                for (m, &v) in mean.iter_mut().zip(tok) {
                    *m += v as f64;
                }
            }
            feats.extend(mean.iter().map(|m| m / t as f64));
        }
    }
    Ok((feats, d))
}

/// Choice decoding for `session` (train+val trials fit, `opts.split` trials test).
pub fn run_choice(
    backend: &mut dyn Backend,
    cfg: &ModelConfig,
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
) -> Result<std::result::Result<ChoiceResult, String>> {
    if opts.choice_block == 0 || opts.choice_block > cfg.n_layers {
        return Ok(Err(format!(
            "block {} does not exist (the model has {} blocks)",
            opts.choice_block, cfg.n_layers
        )));
    }
    let info = ds.session(session);
    let labels = ds.choice(session)?;
    let known = |ts: &[u32]| -> Vec<u32> {
        ts.iter()
            .copied()
            .filter(|&t| labels[t as usize] != 0)
            .collect()
    };
    let mut fit: Vec<u32> = known(info.split(SplitName::Train));
    let test: Vec<u32> = known(info.split(opts.split));
    if opts.split != SplitName::Val {
        fit.extend(known(info.split(SplitName::Val)));
    }
    fit.retain(|t| !test.contains(t));
    let lab = |ts: &[u32]| -> Vec<i8> { ts.iter().map(|&t| labels[t as usize]).collect() };
    let (y_fit, y_test) = (lab(&fit), lab(&test));
    let pos = y_fit.iter().filter(|&&v| v > 0).count();
    let k = opts.choice_opts.folds;
    if test.is_empty() || pos < k || y_fit.len() - pos < k {
        return Ok(Err(format!(
            "too few trials with a known choice ({} fit: {pos} right, {} left; {} test)",
            y_fit.len(),
            y_fit.len() - pos,
            test.len()
        )));
    }
    let (x_fit, d) = block_features(
        backend,
        ds,
        session,
        &fit,
        opts.choice_block,
        opts.rows_per_pass,
    )?;
    let (x_test, _) = block_features(
        backend,
        ds,
        session,
        &test,
        opts.choice_block,
        opts.rows_per_pass,
    )?;
    Ok(Ok(decode_choice(
        &x_fit,
        &y_fit,
        &x_test,
        &y_test,
        d,
        &opts.choice_opts,
    )?))
}

/// Evaluates the model in `backend` (whose config is `cfg`) on session `session` of `ds`.
pub fn evaluate(
    backend: &mut dyn Backend,
    cfg: &ModelConfig,
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
) -> Result<EvalReport> {
    check_fit(cfg, ds, session)?;
    let info = ds.session(session);
    if info.split(opts.split).is_empty() {
        return Err(usage(format!(
            "session {} has no {} trials to evaluate",
            info.id,
            opts.split.as_str()
        )));
    }
    let regions = session_regions(info);
    let mut tasks = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    for &scheme in &opts.tasks {
        match run_task(backend, ds, session, scheme, opts)? {
            Some(r) => {
                tasks.insert(scheme.name().to_string(), r);
            }
            None => {
                skipped.insert(
                    scheme.name().to_string(),
                    format!("the session has {} region(s)", regions.n_regions()),
                );
            }
        }
    }
    let (choice, choice_skipped) = if opts.choice {
        match run_choice(backend, cfg, ds, session, opts)? {
            Ok(c) => (Some(c), None),
            Err(why) => (None, Some(why)),
        }
    } else {
        (None, None)
    };
    Ok(EvalReport {
        session: info.id.clone(),
        split: opts.split.as_str().to_string(),
        n_trials: info.split(opts.split).len(),
        n_neurons: info.n_neurons,
        n_regions: regions.n_regions(),
        tasks,
        skipped,
        choice,
        choice_skipped,
    })
}

/// The report as a readable table.
pub fn format_table(r: &EvalReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "session {} ({} split: {} trials, {} neurons, {} regions)",
        r.session, r.split, r.n_trials, r.n_neurons, r.n_regions
    );
    let _ = writeln!(
        s,
        "{:<14} {:>16} {:>12}",
        "task", "per-neuron bps", "pooled bps"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    for sc in Scheme::ALL {
        if let Some(t) = r.tasks.get(sc.name()) {
            let _ = writeln!(
                s,
                "{:<14} {:>16} {:>12}",
                sc.name(),
                f(t.per_neuron),
                f(t.pooled)
            );
        } else if let Some(why) = r.skipped.get(sc.name()) {
            let _ = writeln!(s, "{:<14} {:>16} {:>12}  ({why})", sc.name(), "-", "-");
        }
    }
    match (&r.choice, &r.choice_skipped) {
        (Some(c), _) => {
            let _ = writeln!(
                s,
                "choice decoding: accuracy {:.3} (majority class {:.3}; C = {:.0e}; {} fit, {} test trials)",
                c.accuracy, c.majority, c.c, c.n_fit, c.n_test
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "choice decoding: skipped ({why})");
        }
        _ => {}
    }
    s
}

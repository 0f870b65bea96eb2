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
//! Beside bits per spike (three aggregations, `eval::bps`) each task reports Poisson D²
//! (`eval::d2`), and the classical baselines are scored on the same entries: the mean-rate
//! predictor (the null model of both measures, 0 by definition: the reference) and, for
//! co-smoothing, NLB's smoothed-spikes Poisson GLM (`eval::glm`), fit on the other splits'
//! trials (train+val when evaluating test, train when evaluating val, val when evaluating
//! train). Co-smoothing and forward-prediction predictions can be written in BrainWideBench's
//! format (`eval::bwb`).
//!
//! Choice decoding reads the output of block `choice_block` (1-based; the paper's block 3 of 5)
//! on the unmasked trial with the co-smoothing prompt, mean-pooled over the data tokens, and fits
//! `eval::choice` on the train+val trials, scoring on the evaluated split's trials.

use crate::backend::{Backend, ForwardOpts};
use crate::batch::{Batch, session_regions};
use crate::error::{Result, internal, usage};
use crate::eval::bps::BpsAccum;
use crate::eval::bwb::{BwbOpts, TaskPredictions};
use crate::eval::choice::{ChoiceOpts, ChoiceResult, decode_choice};
use crate::eval::d2::{XlogxAccum, d2};
use crate::eval::glm::GlmSettings;
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
    /// Block whose output feeds choice decoding (1-based). None: the paper's block
    /// (`DEFAULT_CHOICE_BLOCK`), choice decoding skipped with the reason when the model has
    /// fewer blocks; Some: asked for, and a usage error when the model does not have it.
    pub choice_block: Option<usize>,
    /// Rows (mask × trial) per forward pass.
    pub rows_per_pass: usize,
    pub choice_opts: ChoiceOpts,
    /// Score the classical baselines (mean rate; the smoothed-spikes GLM for co-smoothing).
    /// `ndt eval --baselines` turns them on; the default (and sweeps) leaves them off.
    pub baselines: bool,
    pub glm: GlmSettings,
    /// Write co-smoothing and forward predictions in BrainWideBench's layout.
    pub bwb: Option<BwbOpts>,
}

/// The block choice decoding reads when none is asked for (the paper's block 3 of 5).
pub const DEFAULT_CHOICE_BLOCK: usize = 3;

/// How each number is aggregated, as the JSON and the table name them.
pub const CONVENTIONS: [(&str, &str); 6] = [
    (
        "per_neuron",
        "bits per spike, per-neuron mean (MtM): each unit's bps over its scored entries, averaged over the units with at least one spike",
    ),
    (
        "pooled",
        "bits per spike, pooled (nlb_tools): one value over all scored entries of all units; each unit's null rate is its mean count over its scored entries; zero rates replaced by 1e-9; units without spikes included (each costs its predicted rate)",
    ),
    (
        "pooled_bwb",
        "bits per spike, pooled over units with spikes (BrainWideBench BPS): as pooled (nlb_tools), units without spikes left out",
    ),
    (
        "d2",
        "Poisson D², per-unit mean (BrainWideBench PoissonD2Score): 1 - (L(model) - L(saturated)) / (L(null) - L(saturated)) per unit, null = the unit's mean count over its scored entries (floored at 1e-9), saturated = the counts; units without spikes or with null deviance under 1e-9 left out",
    ),
    (
        "d2_pooled",
        "Poisson D², pooled: 1 - sum of the units' model deviances / sum of their null deviances, over the same units as the per-unit mean",
    ),
    (
        "baselines",
        "mean-rate: each unit's mean count over the scored entries (the null model: 0 bps and 0 D² by definition, the reference); smoothed-glm (co-smoothing only): NLB's smoothing baseline, settings in glm_baseline",
    ),
];

impl Default for EvalOpts {
    fn default() -> Self {
        EvalOpts {
            split: SplitName::Test,
            tasks: Scheme::ALL.to_vec(),
            choice: true,
            choice_block: None,
            rows_per_pass: 64,
            choice_opts: ChoiceOpts::default(),
            // Off unless asked for (`ndt eval` asks): the GLM baseline costs minutes on a
            // 171-unit session, which every sweep evaluation would pay.
            baselines: false,
            glm: GlmSettings::default(),
            bwb: None,
        }
    }
}

/// The scores of one predictor on one task's entries (see `CONVENTIONS`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Bits per spike, per-neuron mean (MtM).
    pub per_neuron: Option<f64>,
    /// Bits per spike, pooled (nlb_tools).
    pub pooled: Option<f64>,
    /// Bits per spike, pooled over units with spikes (BrainWideBench).
    pub pooled_bwb: Option<f64>,
    /// Poisson D², per-unit mean (BrainWideBench).
    pub d2: Option<f64>,
    /// Poisson D², pooled.
    pub d2_pooled: Option<f64>,
}

impl Scores {
    /// The scores of the statistics `acc` (model) and `xl` (`Σ x ln x`) of the same entries.
    pub fn of(acc: &BpsAccum, xl: &XlogxAccum) -> Scores {
        let b = acc.finish();
        let d = d2(acc, &xl.0);
        Scores {
            per_neuron: finite(b.per_neuron_mean),
            pooled: finite(b.pooled),
            pooled_bwb: finite(b.pooled_spiking),
            d2: finite(d.mean),
            d2_pooled: finite(d.pooled),
        }
    }
}

/// The statistics of the mean-rate predictor on the entries of `acc`: each unit predicted at
/// its mean count over them (0 becoming 1e-9 as every zero rate does), in closed form.
pub fn mean_rate_accum(acc: &BpsAccum) -> BpsAccum {
    let mut m = acc.clone();
    for j in 0..m.n_neurons() {
        let (n, s) = (m.count[j] as f64, m.spikes[j]);
        m.model_nll[j] = if n == 0.0 {
            0.0
        } else if s == 0.0 {
            n * crate::eval::bps::ZERO_RATE
        } else {
            let r = s / n;
            n * r - s * r.ln()
        };
    }
    m
}

/// Bits per spike, D² and the baselines of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Bits per spike, per-neuron mean (MtM): averaged over neurons with spikes; None if none
    /// spiked.
    pub per_neuron: Option<f64>,
    /// Bits per spike, pooled (`nlb_tools`' `bits_per_spike`).
    pub pooled: Option<f64>,
    /// Bits per spike, pooled over units with spikes (BrainWideBench's `BPS`).
    #[serde(default)]
    pub pooled_bwb: Option<f64>,
    /// Poisson D², per-unit mean (BrainWideBench's `PoissonD2Score`).
    #[serde(default)]
    pub d2: Option<f64>,
    /// Poisson D², pooled over the same units.
    #[serde(default)]
    pub d2_pooled: Option<f64>,
    /// Units that entered the D² mean.
    #[serde(default)]
    pub n_units_d2: usize,
    pub n_neurons_used: usize,
    pub n_spikes: f64,
    /// Held-out entries scored.
    pub n_entries: u64,
    /// Distinct masks (neurons, windows, regions, ...).
    pub n_masks: usize,
    /// Each neuron's bps (None for neurons not scored or without spikes).
    pub per_neuron_bps: Vec<Option<f64>>,
    /// Each neuron's D² (None where left out).
    #[serde(default)]
    pub per_neuron_d2: Vec<Option<f64>>,
    /// Baseline name (`mean-rate`, `smoothed-glm`) -> its scores on the same entries.
    #[serde(default)]
    pub baselines: BTreeMap<String, Scores>,
}

/// The smoothed-spikes GLM baseline's settings as run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlmBaselineInfo {
    pub settings: GlmSettings,
    pub bin_ms: f64,
    /// Window length and standard deviation in bins (NLB's `int(6·sd/bin)`, `int(sd/bin)`).
    pub window_bins: usize,
    pub window_sd_bins: usize,
    pub log_offset: f64,
    /// Splits the GLMs were fit on.
    pub fit_splits: Vec<String>,
    pub n_fit_trials: usize,
    /// Units with a fitted GLM (the others have no spikes in the fit trials: rate 1e-9).
    pub n_units_fit: usize,
    /// Largest Newton iteration count and final gradient max-norm over the units.
    pub max_iter_used: usize,
    pub max_grad_norm: f64,
    pub objective: String,
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
    /// What each reported number is (see `CONVENTIONS`).
    #[serde(default)]
    pub conventions: BTreeMap<String, String>,
    /// The smoothed-spikes GLM baseline as run (None when not run).
    #[serde(default)]
    pub glm_baseline: Option<GlmBaselineInfo>,
    /// Why the GLM baseline was not run, when baselines were asked for.
    #[serde(default)]
    pub glm_baseline_skipped: Option<String>,
    /// BrainWideBench prediction files written.
    #[serde(default)]
    pub bwb_files: Vec<String>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl EvalReport {
    /// Flat metrics: `<task>` (bps, per-neuron mean (MtM)), `<task>.pooled` (bps, pooled
    /// (nlb_tools)), `<task>.d2` and `<task>.d2.pooled` (Poisson D²), `<task>.glm`,
    /// `<task>.glm.pooled` and `<task>.glm.d2` (the smoothed-spikes GLM baseline, co-smoothing
    /// only), `choice`, `choice.majority`. The mean-rate baseline is 0 on every measure and is
    /// left out.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let mut put = |k: String, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(k, v);
            }
        };
        for (name, r) in &self.tasks {
            put(name.clone(), r.per_neuron);
            put(format!("{name}.pooled"), r.pooled);
            put(format!("{name}.d2"), r.d2);
            put(format!("{name}.d2.pooled"), r.d2_pooled);
            if let Some(g) = r.baselines.get("smoothed-glm") {
                put(format!("{name}.glm"), g.per_neuron);
                put(format!("{name}.glm.pooled"), g.pooled);
                put(format!("{name}.glm.d2"), g.d2);
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
    Ok(run_task_capture(backend, ds, session, scheme, opts, false)?.map(|r| r.0))
}

/// `run_task`, also returning the held-out predictions in BrainWideBench's shape when
/// `capture` is set and BrainWideBench has the task.
pub fn run_task_capture(
    backend: &mut dyn Backend,
    ds: &Dataset,
    session: usize,
    scheme: Scheme,
    opts: &EvalOpts,
    capture: bool,
) -> Result<Option<(TaskResult, Option<TaskPredictions>)>> {
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
    let mut xl = XlogxAccum::new(n);
    let bwb_task = if capture {
        crate::eval::bwb::task_id(scheme)
    } else {
        None
    };
    // Position of each trial in the split, and the captured log-rates [trials, T, N].
    let mut pos = vec![usize::MAX; info.n_trials];
    for (k, &tr) in trials.iter().enumerate() {
        if let Some(p) = pos.get_mut(tr as usize) {
            *p = k;
        }
    }
    let tn = t * n;
    let mut captured = if bwb_task.is_some() {
        vec![f32::NAN; trials.len() * tn]
    } else {
        Vec::new()
    };
    let mut asm = Rows {
        ds,
        session,
        id: info.id.clone(),
        t,
        n,
        batch: Batch::empty(),
    };
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
                xl.add(i % n, x as f64);
                if bwb_task.is_some() {
                    let k = pos
                        .get(b.trials[i / tn] as usize)
                        .copied()
                        .filter(|&k| k != usize::MAX)
                        .ok_or_else(|| internal("an evaluated trial outside the split"))?;
                    captured[k * tn + i % tn] = lr;
                }
            }
        }
    }
    let r = acc.finish();
    let d = d2(&acc, &xl.0);
    let mut baselines = BTreeMap::new();
    if opts.baselines {
        baselines.insert(
            "mean-rate".to_string(),
            Scores::of(&mean_rate_accum(&acc), &xl),
        );
    }
    let result = TaskResult {
        per_neuron: finite(r.per_neuron_mean),
        pooled: finite(r.pooled),
        pooled_bwb: finite(r.pooled_spiking),
        d2: finite(d.mean),
        d2_pooled: finite(d.pooled),
        n_units_d2: d.n_units,
        n_neurons_used: r.n_neurons_used,
        n_spikes: r.n_spikes,
        n_entries: r.n_entries,
        n_masks: masks.len(),
        per_neuron_bps: r.per_neuron.iter().map(|&v| finite(v)).collect(),
        per_neuron_d2: d.per_unit.iter().map(|&v| finite(v)).collect(),
        baselines,
    };
    let preds = match bwb_task {
        None => None,
        Some(task) => Some(bwb_rectangle(ds, session, opts, task, trials, &captured)?),
    };
    Ok(Some((result, preds)))
}

/// The captured log-rates `[trials, T, N]` cut to BrainWideBench's rectangle: every bin for
/// co-smoothing, the bins from the first held-out one to the end for forecasting. Every entry
/// of the rectangle must have been held out.
fn bwb_rectangle(
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
    task: &'static str,
    trials: &[u32],
    captured: &[f32],
) -> Result<TaskPredictions> {
    let info = ds.session(session);
    let (t, n) = (info.n_bins, info.n_neurons);
    let tn = t * n;
    let first = (0..t)
        .find(|&b| {
            captured
                .chunks_exact(tn)
                .any(|c| c[b * n..(b + 1) * n].iter().any(|v| !v.is_nan()))
        })
        .unwrap_or(t);
    let time = t - first;
    let mut log_rates = Vec::with_capacity(trials.len() * time * n);
    let mut targets = Vec::with_capacity(trials.len() * time * n);
    for (k, &tr) in trials.iter().enumerate() {
        let c = &captured[k * tn..(k + 1) * tn];
        let x = ds.trial(session, tr as usize);
        log_rates.extend_from_slice(&c[first * n..]);
        targets.extend(x[first * n..].iter().map(|&v| v as f32));
    }
    if log_rates.iter().any(|v| v.is_nan()) {
        return Err(internal(format!(
            "{task}: some entries of bins {first}..{t} were not held out"
        )));
    }
    Ok(TaskPredictions {
        task,
        recording_id: info.id.clone(),
        split: opts.split.as_str().to_string(),
        window_timestamps: trials.iter().map(|&tr| tr as f64).collect(),
        time,
        units: n,
        log_rates,
        targets,
    })
}

/// The splits the GLM baseline is fit on when evaluating `split`.
pub fn glm_fit_splits(split: SplitName) -> Vec<SplitName> {
    match split {
        SplitName::Test => vec![SplitName::Train, SplitName::Val],
        SplitName::Val => vec![SplitName::Train],
        SplitName::Train => vec![SplitName::Val],
    }
}

/// A session's bin size in ms, rounded to 1e-6 ms (stores keep it in seconds, in binary).
pub fn bin_ms(bin_size_s: f64) -> f64 {
    (bin_size_s * 1e9).round() / 1e6
}

/// The counts `[trials, T, N]` of `trials` as f64.
fn counts_f64(ds: &Dataset, session: usize, trials: &[u32]) -> Vec<f64> {
    let mut out = Vec::new();
    for &tr in trials {
        out.extend(ds.trial(session, tr as usize).iter().map(|&c| c as f64));
    }
    out
}

/// The smoothed-spikes GLM baseline on co-smoothing: its scores over every entry of the
/// evaluated trials, and the settings as run; Err(reason) when it cannot run.
pub fn glm_baseline(
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
) -> Result<std::result::Result<(Scores, GlmBaselineInfo), String>> {
    let info = ds.session(session);
    let (t, n) = (info.n_bins, info.n_neurons);
    let bms = bin_ms(info.bin_size_s);
    let w = match crate::eval::glm::gaussian_window(opts.glm.kernel_sd_ms, bms) {
        Ok(w) => w,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let splits = glm_fit_splits(opts.split);
    let fit_trials: Vec<u32> = splits
        .iter()
        .flat_map(|&sp| info.split(sp).iter().copied())
        .collect();
    if fit_trials.is_empty() {
        return Ok(Err("no trials to fit on".into()));
    }
    let eval_trials = info.split(opts.split);
    let fit = counts_f64(ds, session, &fit_trials);
    let eval = counts_f64(ds, session, eval_trials);
    let (rates, fits) = crate::eval::glm::cosmooth_rates(&fit, &eval, t, n, &w, &opts.glm);
    let mut acc = BpsAccum::new(n);
    let mut xl = XlogxAccum::new(n);
    for (i, (&r, &x)) in rates.iter().zip(&eval).enumerate() {
        acc.add(i % n, r, x);
        xl.add(i % n, x);
    }
    let fitted: Vec<&crate::eval::glm::PoissonGlm> = fits.iter().flatten().collect();
    let sd_bins = (opts.glm.kernel_sd_ms / bms).floor() as usize;
    Ok(Ok((
        Scores::of(&acc, &xl),
        GlmBaselineInfo {
            settings: opts.glm.clone(),
            bin_ms: bms,
            window_bins: w.len(),
            window_sd_bins: sd_bins,
            log_offset: crate::eval::glm::LOG_OFFSET,
            fit_splits: splits.iter().map(|s| s.as_str().to_string()).collect(),
            n_fit_trials: fit_trials.len(),
            n_units_fit: fitted.len(),
            max_iter_used: fitted.iter().map(|g| g.n_iter).max().unwrap_or(0),
            max_grad_norm: fitted.iter().map(|g| g.grad_norm).fold(0.0, f64::max),
            objective: "sklearn PoissonRegressor: mean(exp(eta) - y*eta) + alpha/2*|w|^2, \
                        intercept unpenalised, features ln(gaussian-smoothed other units + 1e-4), \
                        rates clipped to [1e-9, 1e20]; Newton to the optimum"
                .into(),
        },
    )))
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
    let block = opts.choice_block.unwrap_or(DEFAULT_CHOICE_BLOCK);
    if block == 0 || block > cfg.n_layers {
        return Ok(Err(format!(
            "block {block} does not exist (the model has {} blocks)",
            cfg.n_layers
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
    let (x_fit, d) = block_features(backend, ds, session, &fit, block, opts.rows_per_pass)?;
    let (x_test, _) = block_features(backend, ds, session, &test, block, opts.rows_per_pass)?;
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
    if opts.choice
        && let Some(b) = opts.choice_block
        && (b == 0 || b > cfg.n_layers)
    {
        return Err(usage(format!(
            "--choice-block {b}: the model has {} blocks (1 to {})",
            cfg.n_layers, cfg.n_layers
        )));
    }
    if let Some(bwb) = &opts.bwb {
        crate::eval::bwb::check_names(bwb, &info.id)?;
    }
    let regions = session_regions(info);
    let mut tasks = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    let mut preds = Vec::new();
    for &scheme in &opts.tasks {
        match run_task_capture(backend, ds, session, scheme, opts, opts.bwb.is_some())? {
            Some((r, p)) => {
                tasks.insert(scheme.name().to_string(), r);
                preds.extend(p);
            }
            None => {
                skipped.insert(
                    scheme.name().to_string(),
                    format!("the session has {} region(s)", regions.n_regions()),
                );
            }
        }
    }
    let (mut glm_baseline_info, mut glm_baseline_skipped) = (None, None);
    if opts.baselines
        && let Some(cs) = tasks.get_mut(Scheme::CoSmooth.name())
    {
        match glm_baseline(ds, session, opts)? {
            Ok((scores, info)) => {
                cs.baselines.insert("smoothed-glm".to_string(), scores);
                glm_baseline_info = Some(info);
            }
            Err(why) => glm_baseline_skipped = Some(why),
        }
    }
    let mut bwb_files = Vec::new();
    if let Some(bwb) = &opts.bwb {
        for p in &preds {
            let path = crate::eval::bwb::write_task(bwb, p)?;
            bwb_files.push(path.display().to_string());
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
        conventions: CONVENTIONS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        glm_baseline: glm_baseline_info,
        glm_baseline_skipped,
        bwb_files,
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
        "{:<16} {:>22} {:>18} {:>18} {:>16} {:>10}",
        "", "bps per-neuron mean", "bps pooled", "bps pooled, units", "D² per-unit", "D² pooled"
    );
    let _ = writeln!(
        s,
        "{:<16} {:>22} {:>18} {:>18} {:>16} {:>10}",
        "task", "(MtM)", "(nlb_tools)", "with spikes (BWB)", "mean (BWB)", ""
    );
    // Four decimals; a value that rounds to zero prints without a sign.
    let f = |v: Option<f64>| {
        v.map_or("-".to_string(), |x| {
            let t = format!("{x:.4}");
            if t == "-0.0000" { "0.0000".into() } else { t }
        })
    };
    let line = |s: &mut String, name: &str, sc: &Scores| {
        let _ = writeln!(
            s,
            "{:<16} {:>22} {:>18} {:>18} {:>16} {:>10}",
            name,
            f(sc.per_neuron),
            f(sc.pooled),
            f(sc.pooled_bwb),
            f(sc.d2),
            f(sc.d2_pooled)
        );
    };
    for sc in Scheme::ALL {
        if let Some(t) = r.tasks.get(sc.name()) {
            let model = Scores {
                per_neuron: t.per_neuron,
                pooled: t.pooled,
                pooled_bwb: t.pooled_bwb,
                d2: t.d2,
                d2_pooled: t.d2_pooled,
            };
            line(&mut s, sc.name(), &model);
            for (name, b) in &t.baselines {
                line(&mut s, &format!("  {name}"), b);
            }
        } else if let Some(why) = r.skipped.get(sc.name()) {
            let _ = writeln!(s, "{:<16} -  ({why})", sc.name());
        }
    }
    let _ = writeln!(
        s,
        "mean-rate: each unit's mean count over the scored entries (the null model of bps and D², the reference)"
    );
    if let Some(g) = &r.glm_baseline {
        let _ = writeln!(
            s,
            "smoothed-glm: NLB smoothing baseline: Gaussian kernel sd {} ms ({} bins of {} ms, window {} bins), features ln(smoothed + {}), Poisson GLM per held-out unit with L2 alpha {} (sklearn scaling, intercept unpenalised), fit on {} ({} trials; {} units fit, max {} Newton iterations, gradient <= {:.1e})",
            g.settings.kernel_sd_ms,
            g.window_sd_bins,
            g.bin_ms,
            g.window_bins,
            g.log_offset,
            g.settings.alpha,
            g.fit_splits.join("+"),
            g.n_fit_trials,
            g.n_units_fit,
            g.max_iter_used,
            g.max_grad_norm
        );
    } else if let Some(why) = &r.glm_baseline_skipped {
        let _ = writeln!(s, "smoothed-glm: skipped ({why})");
    }
    for p in &r.bwb_files {
        let _ = writeln!(s, "BrainWideBench predictions: {p}");
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

//! `ndt import alf`: IBL sessions as the ONE API downloads them (ALF folders), binned into
//! trial-aligned counts. docs/import_alf.md describes every file read, flag and filter.
//!
//! Per session: the trials (`trials`), each probe's spike sorting (`probe`), the trial filters,
//! the unit filters, a first pass over the kept trials that checks every count (and the firing
//! rates), then the counts streamed into the store through `DatasetWriter`. All sessions of one
//! command go through one writer (one session read at a time), so an error anywhere leaves the
//! dataset as it was.

mod allen;
mod files;
mod layout;
mod probe;
mod trials;

use crate::error::{Result, input, usage};
use crate::import::bin::{Bins, add_trial};
use crate::store::writer::{DEFAULT_SPLIT_SEED, DatasetWriter, NewSession};
use files::Sources;
use layout::Layout;
use probe::Probe;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trials::Trials;

/// The events a trial may not have NaN in, by default (the IBL brain-wide map's and MtM's list).
pub const DEFAULT_NAN_EXCLUDE: &str =
    "stimOn_times,choice,feedback_times,probabilityLeft,firstMovement_times,feedbackType";

/// Most bins a trial window may hold (bounds the per-trial buffers).
pub const MAX_BINS: usize = 10_000;

/// A time limit that can be switched off with `none`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit(pub Option<f64>);

fn parse_limit(s: &str) -> std::result::Result<Limit, String> {
    if s == "none" || s == "off" {
        return Ok(Limit(None));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (or `none`)"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number of seconds"));
    }
    Ok(Limit(Some(v)))
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Session folders (SUBJECT/YYYY-MM-DD/NNN as ONE downloads them, holding alf/).
    #[arg(required = true, value_name = "SESSION_DIR")]
    pub sessions: Vec<PathBuf>,
    /// Dataset directory to create or add sessions to.
    #[arg(long, value_name = "DATASET")]
    pub out: PathBuf,
    /// Session id (one SESSION_DIR only), e.g. the eid; default: the folder name if it is a
    /// UUID, else SUBJECT_YYYY-MM-DD_NNN from the path.
    #[arg(long)]
    pub id: Option<String>,
    /// Subject; default: from the path (SUBJECT/YYYY-MM-DD/NNN), else "unknown".
    #[arg(long)]
    pub subject: Option<String>,
    /// Lab; default: from the path (LAB/Subjects/SUBJECT/...), else "unknown".
    #[arg(long)]
    pub lab: Option<String>,
    /// Trial event the window is aligned to.
    #[arg(long, default_value = "stimOn_times", value_name = "EVENT")]
    pub align: String,
    /// Window start relative to the event, in seconds.
    #[arg(long, default_value_t = -0.5, allow_hyphen_values = true, value_name = "S")]
    pub window_start: f64,
    /// Window end relative to the event, in seconds.
    #[arg(
        long,
        default_value_t = 2.5,
        allow_hyphen_values = true,
        value_name = "S"
    )]
    pub window_end: f64,
    /// Bin size in seconds.
    #[arg(long, default_value_t = crate::import::bin::DEFAULT_BIN_SIZE_S, value_name = "S")]
    pub bin_size: f64,
    /// Drop trials whose reaction time (firstMovement_times - stimOn_times) is below this
    /// (seconds, or `none`).
    #[arg(long, default_value = "0.08", value_parser = parse_limit, value_name = "S")]
    pub min_rt: Limit,
    /// Drop trials whose reaction time is above this (seconds, or `none`).
    #[arg(long, default_value = "2.0", value_parser = parse_limit, value_name = "S")]
    pub max_rt: Limit,
    /// Drop trials with feedback_times - goCue_times above this (seconds, or `none`).
    #[arg(long, default_value = "10.0", value_parser = parse_limit, value_name = "S")]
    pub max_trial_len: Limit,
    /// Drop trials with NaN in any of these attributes (comma-separated, or `none`).
    #[arg(long, default_value = DEFAULT_NAN_EXCLUDE, value_name = "LIST")]
    pub nan_exclude: String,
    /// Keep trials without a choice (choice 0, no-go); by default they are dropped.
    #[arg(long)]
    pub keep_nochoice: bool,
    /// Keep only units labelled good (clusters.metrics.pqt `label` == 1).
    #[arg(long)]
    pub good_only: bool,
    /// Keep only units firing at least this many spikes per second over the kept trials' windows.
    #[arg(long, default_value_t = 0.0, value_name = "HZ")]
    pub min_rate: f64,
    /// Spike sorter folder (alf/PROBE/SORTER) when a probe has several; default pykilosort.
    #[arg(long, value_name = "NAME")]
    pub sorter: Option<String>,
    /// Read the trials of alf/task_NN (when the session has several tasks).
    #[arg(long, value_name = "N")]
    pub task: Option<u32>,
    /// Refuse sessions where a kept trial's window overlaps the next one's (by default
    /// overlapping windows are allowed: each trial's counts are binned independently).
    #[arg(long)]
    pub no_overlap: bool,
    /// Clip counts above 255 to 255 instead of refusing them (the store keeps uint8 counts).
    #[arg(long)]
    pub clip: bool,
    /// Seed of the 8:1:1 train/val/test split of each new session's trials.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
}

/// What was imported, one entry per session.
#[derive(Clone, Debug)]
pub struct Imported {
    pub id: String,
    pub source: PathBuf,
    pub shape: [usize; 3],
    pub dropped_trials: usize,
    pub dropped_units: usize,
}

/// The checked flags.
struct Plan {
    bins: Bins,
    onset_bin: Option<usize>,
    nan_exclude: Vec<String>,
}

fn plan(args: &Args) -> Result<Plan> {
    trials::check_event(&args.align)?;
    let b = args.bin_size;
    if !(b.is_finite() && b > 0.0) {
        return Err(usage(format!(
            "--bin-size {b}: must be a positive number of seconds"
        )));
    }
    let (s, e) = (args.window_start, args.window_end);
    if !(s.is_finite() && e.is_finite() && e > s) {
        return Err(usage(format!(
            "--window-start {s} / --window-end {e}: the window must end after it starts"
        )));
    }
    let n = ((e - s) / b).round();
    if ((e - s) - n * b).abs() > 1e-9 * (e - s).max(1.0) || n < 1.0 {
        return Err(usage(format!(
            "the window {s} s .. {e} s is not a whole number of {b} s bins"
        )));
    }
    if n > MAX_BINS as f64 {
        return Err(usage(format!(
            "the window {s} s .. {e} s holds {n} bins of {b} s, more than {MAX_BINS}"
        )));
    }
    let onset = (-s / b).round();
    let onset_bin = (s <= 0.0 && e > 0.0 && ((-s) - onset * b).abs() <= 1e-9 * s.abs().max(1.0))
        .then_some(onset as usize);
    if !(args.min_rate.is_finite() && args.min_rate >= 0.0) {
        return Err(usage(format!(
            "--min-rate {}: must be a non-negative number of spikes per second",
            args.min_rate
        )));
    }
    let nan_exclude: Vec<String> = if args.nan_exclude == "none" || args.nan_exclude.is_empty() {
        Vec::new()
    } else {
        args.nan_exclude
            .split(',')
            .map(|x| x.trim().to_string())
            .collect()
    };
    let known: Vec<String> = trials::ATTRIBUTES
        .iter()
        .filter(|a| **a != "intervals")
        .map(|a| a.to_string())
        .chain(["intervals_0".into(), "intervals_1".into()])
        .collect();
    if let Some(x) = nan_exclude.iter().find(|x| !known.contains(x)) {
        return Err(usage(format!(
            "--nan-exclude: unknown trial attribute `{x}` (one of {})",
            known.join(", ")
        )));
    }
    if let (Limit(Some(lo)), Limit(Some(hi))) = (args.min_rt, args.max_rt)
        && lo > hi
    {
        return Err(usage(format!("--min-rt {lo} is above --max-rt {hi}")));
    }
    Ok(Plan {
        bins: Bins {
            bin_size: b,
            n_bins: n as usize,
        },
        onset_bin,
        nan_exclude,
    })
}

pub fn run(args: Args) -> Result<()> {
    let done = import(&args)?;
    for s in &done {
        println!(
            "imported `{}` from {}: {} trials x {} bins x {} neurons ({} trials and {} units dropped)",
            s.id,
            s.source.display(),
            s.shape[0],
            s.shape[1],
            s.shape[2],
            s.dropped_trials,
            s.dropped_units
        );
    }
    println!("dataset: {}", args.out.display());
    Ok(())
}

/// Imports every SESSION_DIR of `args` into `args.out` as one transaction.
pub fn import(args: &Args) -> Result<Vec<Imported>> {
    if args.id.is_some() && args.sessions.len() > 1 {
        return Err(usage(
            "--id names one session; give one SESSION_DIR with it",
        ));
    }
    let plan = plan(args)?;
    // One session in memory at a time: each is read, checked and staged before the next is
    // read; an error drops the writer, which removes what was staged.
    let writer = DatasetWriter::open(&args.out, args.split_seed)?;
    let mut done = Vec::new();
    for dir in &args.sessions {
        let s = Session::prepare(dir, args, &plan)?;
        let new = s.new_session(args, &plan);
        let shape = [new.n_trials, new.n_bins, new.n_neurons];
        let id = new.id.clone();
        let mut counts = vec![0u32; plan.bins.n_bins * s.n_units()];
        writer.add_session(new, &mut |t, out| {
            s.trial_counts(t, &plan, &mut counts);
            for (o, &c) in out.iter_mut().zip(&counts) {
                *o = c.min(255) as u8;
            }
            Ok(())
        })?;
        done.push(Imported {
            id,
            source: s.dir.clone(),
            shape,
            dropped_trials: s.trials.n - s.kept.len(),
            dropped_units: s.units_total - s.n_units(),
        });
    }
    writer.commit()?;
    Ok(done)
}

/// One kept unit: its probe and cluster id.
#[derive(Clone, Copy, Debug)]
struct Unit {
    probe: usize,
    cluster: u32,
}

/// A session read, filtered and checked, ready to stream.
struct Session {
    dir: PathBuf,
    id: String,
    subject: String,
    lab: String,
    trials: Trials,
    probes: Vec<Probe>,
    /// Trial rows kept, ascending.
    kept: Vec<usize>,
    /// Window start of each kept trial.
    starts: Vec<f64>,
    /// Trials dropped, by the first filter each failed.
    dropped: BTreeMap<String, usize>,
    units: Vec<Unit>,
    units_total: usize,
    units_dropped: BTreeMap<String, usize>,
    /// Per probe: each cluster's column in the counts, or `u32::MAX`.
    columns: Vec<Vec<u32>>,
    choice: Vec<i8>,
    behaviour: Vec<(String, Vec<f32>)>,
    clipped: u64,
    overlaps: usize,
    sources: Sources,
}

impl Session {
    fn n_units(&self) -> usize {
        self.units.len()
    }

    fn prepare(dir: &Path, args: &Args, plan: &Plan) -> Result<Session> {
        let layout = Layout::scan(dir)?;
        let (id, subject, lab) = identity(dir, args)?;
        let mut sources = Sources::new(dir);
        let trials = trials::load(&layout, &mut sources, args.task)?;
        let mut probes = Vec::new();
        for (name, coll) in probe::collections(&layout, args.sorter.as_deref())? {
            probes.push(probe::load(
                &layout,
                &mut sources,
                &name,
                &coll,
                args.good_only,
            )?);
        }

        // Trial filters.
        let align = trials.get(&args.align, "the alignment event, --align")?;
        let align_path = trials.file_of(&args.align).to_path_buf();
        let nan_cols: Vec<(&str, &[f64])> = plan
            .nan_exclude
            .iter()
            .map(|c| Ok((c.as_str(), trials.get(c, "named by --nan-exclude")?)))
            .collect::<Result<_>>()?;
        let rt = if args.min_rt.0.is_some() || args.max_rt.0.is_some() {
            let why = "the reaction-time filter, --min-rt / --max-rt";
            Some((
                trials.get("firstMovement_times", why)?,
                trials.get("stimOn_times", why)?,
            ))
        } else {
            None
        };
        let len = if args.max_trial_len.0.is_some() {
            let why = "the trial-length filter, --max-trial-len";
            Some((
                trials.get("feedback_times", why)?,
                trials.get("goCue_times", why)?,
            ))
        } else {
            None
        };
        let choice_all = trials.get("choice", "each trial's choice")?;
        let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
        let mut kept = Vec::new();
        for t in 0..trials.n {
            let reason: Option<String> = if align[t].is_nan() {
                Some(format!("nan_{}", args.align))
            } else if let Some((c, _)) = nan_cols.iter().find(|(_, v)| v[t].is_nan()) {
                Some(format!("nan_{c}"))
            } else if !args.keep_nochoice && choice_all[t] == 0.0 {
                Some("no_choice".into())
            } else if let Some((fm, so)) = rt
                && let Some(lo) = args.min_rt.0
                && fm[t] - so[t] < lo
            {
                Some("rt_below_min".into())
            } else if let Some((fm, so)) = rt
                && let Some(hi) = args.max_rt.0
                && fm[t] - so[t] > hi
            {
                Some("rt_above_max".into())
            } else if let Some((fb, gc)) = len
                && let Some(hi) = args.max_trial_len.0
                && fb[t] - gc[t] > hi
            {
                Some("trial_too_long".into())
            } else {
                None
            };
            match reason {
                Some(r) => *dropped.entry(r).or_default() += 1,
                None => kept.push(t),
            }
        }
        if kept.is_empty() {
            return Err(input(
                &trials.main,
                format!(
                    "no trial passes the filters ({} trials; dropped: {})",
                    trials.n,
                    describe(&dropped)
                ),
            ));
        }

        // Windows inside the recording, and overlaps.
        let starts: Vec<f64> = kept.iter().map(|&t| align[t] + args.window_start).collect();
        let window = plan.bins.len_s();
        let last_spike = probes
            .iter()
            .filter_map(|p| p.times.last().copied())
            .fold(f64::NEG_INFINITY, f64::max);
        for (&t, &s) in kept.iter().zip(&starts) {
            if s < 0.0 || s + window > last_spike {
                return Err(input(
                    &align_path,
                    format!(
                        "trial {t}: its window {s:.3} s .. {:.3} s ({} {:.3} s) lies outside the \
                         recording (0 s .. {last_spike:.3} s, the last spike time)",
                        s + window,
                        args.align,
                        align[t]
                    ),
                ));
            }
        }
        let mut overlaps = 0;
        for (i, w) in starts.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(input(
                    &align_path,
                    format!(
                        "{} of trial {} ({:.3} s) comes before that of trial {} ({:.3} s)",
                        args.align,
                        kept[i + 1],
                        align[kept[i + 1]],
                        kept[i],
                        align[kept[i]]
                    ),
                ));
            }
            if w[1] < w[0] + window {
                if args.no_overlap {
                    return Err(input(
                        &align_path,
                        format!(
                            "the windows of trials {} and {} overlap ({} s apart, the window is \
                             {window} s long); drop --no-overlap to allow overlapping windows",
                            kept[i],
                            kept[i + 1],
                            w[1] - w[0]
                        ),
                    ));
                }
                overlaps += 1;
            }
        }

        // Unit filters.
        let n_kept = kept.len() as f64;
        let mut units = Vec::new();
        let mut units_dropped: BTreeMap<String, usize> = BTreeMap::new();
        let mut columns = Vec::new();
        let mut units_total = 0;
        for (pi, p) in probes.iter().enumerate() {
            let totals = window_totals(p, &starts, plan.bins);
            let mut col = vec![u32::MAX; p.n_clusters];
            for (c, slot) in col.iter_mut().enumerate() {
                units_total += 1;
                if let Some(good) = &p.good
                    && !good[c]
                {
                    *units_dropped.entry("not_good".into()).or_default() += 1;
                    continue;
                }
                let rate = totals[c] as f64 / (n_kept * window);
                if args.min_rate > 0.0 && rate < args.min_rate {
                    *units_dropped.entry("below_min_rate".into()).or_default() += 1;
                    continue;
                }
                *slot = units.len() as u32;
                units.push(Unit {
                    probe: pi,
                    cluster: c as u32,
                });
            }
            columns.push(col);
        }
        if units.is_empty() {
            return Err(input(
                dir,
                format!(
                    "no unit passes the filters ({units_total} clusters; dropped: {})",
                    describe(&units_dropped)
                ),
            ));
        }

        // Per-trial labels.
        let choice_path = trials.file_of("choice").to_path_buf();
        let mut choice = Vec::with_capacity(kept.len());
        for &t in &kept {
            choice.push(match choice_all[t] {
                x if x.is_nan() => 0,
                -1.0 => -1,
                0.0 => 0,
                1.0 => 1,
                x => {
                    return Err(input(
                        &choice_path,
                        format!("choice {x} of trial {t} is not -1, +1, 0 or NaN"),
                    ));
                }
            });
        }
        let behaviour = behaviour(&trials, &kept, &id);

        let mut s = Session {
            dir: dir.to_path_buf(),
            id,
            subject,
            lab,
            trials,
            probes,
            kept,
            starts,
            dropped,
            units,
            units_total,
            units_dropped,
            columns,
            choice,
            behaviour,
            clipped: 0,
            overlaps,
            sources,
        };
        s.check_counts(args, plan)?;
        Ok(s)
    }

    /// Counts of kept trial `k` into `out` (`[n_bins][n_units]`), unclipped.
    fn trial_counts(&self, k: usize, plan: &Plan, out: &mut [u32]) {
        out.fill(0);
        let start = self.starts[k];
        for (p, col) in self.probes.iter().zip(&self.columns) {
            add_trial(
                &p.times,
                &p.clusters,
                col,
                start,
                plan.bins,
                self.units.len(),
                out,
            );
        }
    }

    /// The first pass: every count of every kept trial, checked against 255.
    fn check_counts(&mut self, args: &Args, plan: &Plan) -> Result<()> {
        let n = self.units.len();
        let mut buf = vec![0u32; plan.bins.n_bins * n];
        let mut clipped = 0u64;
        for k in 0..self.kept.len() {
            self.trial_counts(k, plan, &mut buf);
            for (i, &c) in buf.iter().enumerate() {
                if c > 255 {
                    if !args.clip {
                        let u = self.units[i % n];
                        let p = &self.probes[u.probe];
                        return Err(input(
                            &p.times_path,
                            format!(
                                "{c} spikes of cluster {} ({}) in bin {} of trial {} exceed 255 \
                                 (counts are stored as uint8); pass --clip to clip them, or \
                                 use smaller bins",
                                u.cluster,
                                p.name,
                                i / n,
                                self.kept[k]
                            ),
                        ));
                    }
                    clipped += 1;
                }
            }
        }
        self.clipped = clipped;
        Ok(())
    }

    fn new_session(&self, args: &Args, plan: &Plan) -> NewSession {
        let regions = self
            .units
            .iter()
            .map(|u| self.probes[u.probe].acronyms[u.cluster as usize].clone())
            .collect();
        let units: Vec<Value> = self
            .units
            .iter()
            .map(|u| {
                let p = &self.probes[u.probe];
                json!([
                    p.name,
                    u.cluster,
                    p.uuids.as_ref().map(|v| v[u.cluster as usize].clone())
                ])
            })
            .collect();
        let probes: Vec<Value> = self
            .probes
            .iter()
            .map(|p| {
                json!({
                    "probe": p.name,
                    "collection": p.collection,
                    "clusters": p.n_clusters,
                    "spikes": p.times.len(),
                    "locations": p.locations,
                })
            })
            .collect();
        let limit = |l: Limit| l.0.map(Value::from).unwrap_or(Value::Null);
        let provenance = json!({
            "importer": "alf",
            "source": absolute(&self.dir).display().to_string(),
            "files": self.sources.to_json(),
            "flags": {
                "align": args.align,
                "window_start_s": args.window_start,
                "window_end_s": args.window_end,
                "bin_size_s": args.bin_size,
                "min_rt_s": limit(args.min_rt),
                "max_rt_s": limit(args.max_rt),
                "max_trial_len_s": limit(args.max_trial_len),
                "nan_exclude": plan.nan_exclude,
                "keep_nochoice": args.keep_nochoice,
                "good_only": args.good_only,
                "min_rate_hz": args.min_rate,
                "sorter": args.sorter,
                "task": args.task,
                "no_overlap": args.no_overlap,
                "clip": args.clip,
            },
            "trials": {
                "collection": self.trials.collection,
                "total": self.trials.n,
                "kept": self.kept.len(),
                "dropped": self.dropped,
                "kept_rows": self.kept,
                "overlapping_windows": self.overlaps,
            },
            "units": {
                "total": self.units_total,
                "kept": self.units.len(),
                "dropped": self.units_dropped,
                "kept_units": units,
                "columns": ["probe", "cluster_id", "uuid"],
            },
            "probes": probes,
            "clipped_counts": self.clipped,
            "behaviour": {
                "reward": "feedbackType == 1 (1) or -1 (0)",
                "contrast": "contrastRight - contrastLeft (NaN read as 0)",
                "block": "probabilityLeft",
            },
        });
        NewSession {
            id: self.id.clone(),
            subject: self.subject.clone(),
            lab: self.lab.clone(),
            animal: Some(self.subject.clone()),
            n_trials: self.kept.len(),
            n_bins: plan.bins.n_bins,
            n_neurons: self.units.len(),
            bin_size_s: plan.bins.bin_size,
            onset_bin: plan.onset_bin,
            regions,
            choice: self.choice.clone(),
            behaviour: self.behaviour.clone(),
            provenance,
        }
    }
}

/// Spikes of each cluster of `p` inside the windows starting at `starts`.
fn window_totals(p: &Probe, starts: &[f64], bins: Bins) -> Vec<u64> {
    let mut totals = vec![0u64; p.n_clusters];
    for &s in starts {
        let first = p.times.partition_point(|&t| t < s);
        for (t, &c) in p.times[first..].iter().zip(&p.clusters[first..]) {
            if bins.bin_of(*t, s).is_none() {
                break;
            }
            if let Some(x) = totals.get_mut(c as usize) {
                *x += 1;
            }
        }
    }
    totals
}

/// reward, contrast and block of the kept trials; one that is NaN in a kept trial is left out
/// with a warning (the store holds no NaN).
fn behaviour(trials: &Trials, kept: &[usize], id: &str) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, v: Option<Vec<f64>>| {
        let Some(v) = v else { return };
        let nan = v.iter().filter(|x| x.is_nan()).count();
        if nan > 0 {
            eprintln!(
                "warning: session {id}: {name} is NaN in {nan} of {} kept trials; not imported",
                v.len()
            );
            return;
        }
        out.push((name.to_string(), v.into_iter().map(|x| x as f32).collect()));
    };
    add(
        "reward",
        trials.opt("feedbackType").map(|f| {
            kept.iter()
                .map(|&t| match f[t] {
                    1.0 => 1.0,
                    x if x.is_nan() => f64::NAN,
                    _ => 0.0,
                })
                .collect()
        }),
    );
    add(
        "contrast",
        match (trials.opt("contrastLeft"), trials.opt("contrastRight")) {
            (Some(l), Some(r)) => Some(
                kept.iter()
                    .map(|&t| {
                        if l[t].is_nan() && r[t].is_nan() {
                            f64::NAN
                        } else {
                            let z = |x: f64| if x.is_nan() { 0.0 } else { x };
                            z(r[t]) - z(l[t])
                        }
                    })
                    .collect(),
            ),
            _ => None,
        },
    );
    add(
        "block",
        trials
            .opt("probabilityLeft")
            .map(|b| kept.iter().map(|&t| b[t]).collect()),
    );
    out
}

fn describe(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Whether `s` is a UUID (8-4-4-4-12 hex digits).
fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Session id, subject and lab of a session folder (flags first, then the path).
fn identity(dir: &Path, args: &Args) -> Result<(String, String, String)> {
    let abs = absolute(dir);
    let names: Vec<String> = abs
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let k = names.len();
    // .../[LAB/Subjects/]SUBJECT/YYYY-MM-DD/NNN
    let ibl = (k >= 3
        && is_date(&names[k - 2])
        && !names[k - 1].is_empty()
        && names[k - 1].chars().all(|c| c.is_ascii_digit()))
    .then(|| (&names[k - 3], &names[k - 2], &names[k - 1]));
    let path_lab = (ibl.is_some() && k >= 5 && names[k - 4] == "Subjects").then(|| &names[k - 5]);
    let id = match (&args.id, names.last(), ibl) {
        (Some(id), _, _) => id.clone(),
        (None, Some(last), _) if is_uuid(last) => last.clone(),
        (None, _, Some((subj, date, num))) => format!("{subj}_{date}_{num}"),
        _ => {
            return Err(input(
                dir,
                "cannot tell the session id from the path (neither a UUID folder nor \
                 SUBJECT/YYYY-MM-DD/NNN); pass --id EID",
            ));
        }
    };
    crate::store::check_id("session id", &id).map_err(|m| {
        if args.id.is_some() {
            usage(format!("--id: {m}"))
        } else {
            input(dir, format!("{m}; pass --id EID"))
        }
    })?;
    let subject = args
        .subject
        .clone()
        .or_else(|| ibl.map(|(s, _, _)| s.clone()))
        .unwrap_or_else(|| "unknown".into());
    let lab = args
        .lab
        .clone()
        .or_else(|| path_lab.cloned())
        .unwrap_or_else(|| "unknown".into());
    Ok((id, subject, lab))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_dates() {
        assert!(is_uuid("db4df448-e449-4a6f-a0e7-288711e7a75a"));
        assert!(!is_uuid("db4df448-e449-4a6f-a0e7-288711e7a75"));
        assert!(!is_uuid("KS023"));
        assert!(is_date("2019-12-10"));
        assert!(!is_date("2019-1-100"));
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("none"), Ok(Limit(None)));
        assert_eq!(parse_limit("0.08"), Ok(Limit(Some(0.08))));
        assert!(parse_limit("x").is_err());
        assert!(parse_limit("inf").is_err());
    }
}

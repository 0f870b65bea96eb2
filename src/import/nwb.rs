//! `ndt import nwb`: spike-sorted sessions from Neurodata Without Borders (NWB 2) files.
//!
//! From each FILE (one session) it reads the units table (`/units/spike_times` with its ragged
//! index `spike_times_index`, the unit ids `/units/id`), each unit's region (the electrodes
//! table's `location` through the units' `electrodes` region, or a column named with
//! `--region-column`), and the trials: the alignment column of `/intervals/trials`
//! (`--align`, default `start_time`), or times from a file (`--align-times`), or consecutive
//! fixed windows when the file has no trials (or with `--fixed-windows`). Spikes are binned into
//! windows of `--n-bins` bins of `--bin-size` seconds starting `--window-start` seconds from each
//! alignment time (the paper's -0.5 s, 20 ms, 150 bins: stimulus onset in bin 25).
//!
//! Every file is read and checked, and every count computed, before the dataset is opened; all
//! sessions go through one `DatasetWriter`, so any error leaves the dataset as it was.
//! docs/import_nwb.md describes every default and check.

mod bin;
mod h5;

use crate::error::{Result, input, io_at, usage};
use crate::import::bin::{DEFAULT_BIN_SIZE_S, DEFAULT_MIN_TRIALS};
use crate::store::writer::{DEFAULT_SPLIT_SEED, DatasetWriter, NewSession};
use bin::{Bins, Trains};
use h5::H5;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Seconds from the alignment time to the start of a window (the paper's -0.5 s).
pub const DEFAULT_WINDOW_START_S: f64 = -0.5;
/// Bins per window (the paper's 150: -0.5 s to +2.5 s).
pub const DEFAULT_N_BINS: usize = 150;
/// Alignment column of the trials table when none is named.
pub const DEFAULT_ALIGN: &str = "start_time";

const UNITS: &str = "/units";
const ELECTRODES: &str = "/general/extracellular_ephys/electrodes";
const TRIALS: &str = "/intervals/trials";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// NWB (HDF5) files, one session each.
    #[arg(required = true, value_name = "FILE")]
    pub paths: Vec<PathBuf>,
    /// Dataset directory to create or add sessions to.
    #[arg(long, value_name = "DATASET")]
    pub out: PathBuf,
    /// Session id (one FILE only); default the file's /general/session_id, else /identifier.
    #[arg(long)]
    pub id: Option<String>,
    /// Subject name; default the file's /general/subject/subject_id, else "unknown".
    #[arg(long)]
    pub subject: Option<String>,
    /// Lab name; default the file's /general/lab, else "unknown".
    #[arg(long)]
    pub lab: Option<String>,
    /// Column of /intervals/trials holding the alignment times (IBL files: stim_on_time).
    #[arg(long, value_name = "COLUMN", default_value = DEFAULT_ALIGN)]
    pub align: String,
    /// Alignment times from a file instead of the trials table: a 1-d .npy, or text with one
    /// time in seconds per line (# starts a comment). One FILE only.
    #[arg(long, value_name = "PATH", conflicts_with = "fixed_windows")]
    pub align_times: Option<PathBuf>,
    /// Cut the recording into consecutive windows even if it has a trials table.
    #[arg(long)]
    pub fixed_windows: bool,
    /// Region of each unit from this column instead of the electrodes table's `location`: a
    /// string column of /units, else of the electrodes table (through the units' electrodes).
    #[arg(long, value_name = "COLUMN")]
    pub region_column: Option<String>,
    /// Start of each window in seconds relative to its alignment time.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_WINDOW_START_S, allow_negative_numbers = true)]
    pub window_start: f64,
    /// Bin size in seconds.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_BIN_SIZE_S)]
    pub bin_size: f64,
    /// Bins per window.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_N_BINS)]
    pub n_bins: usize,
    /// Clip counts above 255 to 255 instead of refusing them (the store keeps uint8 counts).
    #[arg(long)]
    pub clip: bool,
    /// Seed of the 8:1:1 train/val/test split of each new session's trials.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// Refuse sessions with fewer trials than this (one batch).
    #[arg(long, default_value_t = DEFAULT_MIN_TRIALS)]
    pub min_trials: usize,
}

/// What was imported, one entry per session.
#[derive(Clone, Debug)]
pub struct Imported {
    pub id: String,
    pub source: PathBuf,
    pub shape: [usize; 3],
    pub clipped: u64,
    pub dropped_trials: usize,
    pub dropped_units: usize,
    pub overlapping: usize,
}

pub fn run(args: Args) -> Result<()> {
    let done = import(&args)?;
    for s in &done {
        let mut notes = Vec::new();
        if s.clipped > 0 {
            notes.push(format!("{} counts clipped to 255", s.clipped));
        }
        if s.dropped_trials > 0 {
            notes.push(format!("{} trials dropped", s.dropped_trials));
        }
        if s.dropped_units > 0 {
            notes.push(format!("{} units without spikes dropped", s.dropped_units));
        }
        if s.overlapping > 0 {
            notes.push(format!("{} windows overlap the next", s.overlapping));
        }
        println!(
            "imported `{}` from {}: {} trials x {} bins x {} neurons{}",
            s.id,
            s.source.display(),
            s.shape[0],
            s.shape[1],
            s.shape[2],
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({}; see the manifest's provenance)", notes.join(", "))
            }
        );
    }
    println!("dataset: {}", args.out.display());
    Ok(())
}

/// Imports every FILE of `args` into `args.out` as one transaction.
pub fn import(args: &Args) -> Result<Vec<Imported>> {
    if args.paths.len() > 1 {
        if args.id.is_some() {
            return Err(usage("--id names one session; give one FILE with it"));
        }
        if args.align_times.is_some() {
            return Err(usage(
                "--align-times holds the times of one session; give one FILE with it",
            ));
        }
    }
    if let Some(id) = &args.id {
        crate::store::check_id("--id", id).map_err(usage)?;
    }
    if !(args.bin_size.is_finite() && args.bin_size > 0.0) {
        return Err(usage(format!(
            "--bin-size {}: must be a positive number of seconds",
            args.bin_size
        )));
    }
    if !args.window_start.is_finite() {
        return Err(usage("--window-start must be a finite number of seconds"));
    }
    if args.n_bins == 0 || args.n_bins > 100_000 {
        return Err(usage(format!(
            "--n-bins {}: must be between 1 and 100000",
            args.n_bins
        )));
    }
    let align_times = match &args.align_times {
        Some(p) => Some(read_align_times(p)?),
        None => None,
    };
    let mut sessions = Vec::with_capacity(args.paths.len());
    for p in &args.paths {
        sessions.push(Session::read(p, args, align_times.as_deref())?);
    }
    let writer = DatasetWriter::open(&args.out, args.split_seed)?;
    let mut done = Vec::new();
    for s in sessions {
        let imported = Imported {
            id: s.new.id.clone(),
            source: s.path.clone(),
            shape: [s.new.n_trials, s.new.n_bins, s.new.n_neurons],
            clipped: s.clipped,
            dropped_trials: s.dropped_trials,
            dropped_units: s.dropped_units,
            overlapping: s.overlapping,
        };
        let mut counts = vec![0u32; s.new.n_bins * s.new.n_neurons];
        let (trains, bins, starts, clip) = (&s.trains, s.bins, &s.starts, args.clip);
        writer.add_session(s.new.clone(), &mut |t, out| {
            bins.count(trains, starts[t], &mut counts);
            for (o, &c) in out.iter_mut().zip(&counts) {
                // Counts above 255 were refused (or counted as clipped) in `Session::read`.
                *o = if clip { c.min(255) as u8 } else { c as u8 };
            }
            Ok(())
        })?;
        done.push(imported);
    }
    writer.commit()?;
    Ok(done)
}

/// Alignment times from a .npy (1-d) or text file.
fn read_align_times(path: &Path) -> Result<Vec<f64>> {
    let bytes = crate::fsutil::read_regular(path)?;
    if bytes.starts_with(b"\x93NUMPY") {
        let a = crate::store::npy::NpyArray::from_bytes(bytes, path)?;
        if a.shape().len() != 1 {
            return Err(input(
                path,
                format!("alignment times must be 1-d, found shape {:?}", a.shape()),
            ));
        }
        return a.to_f64(path);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| input(path, "neither a .npy file nor UTF-8 text of times"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        for tok in line.split(|c: char| c.is_whitespace() || c == ',') {
            if tok.is_empty() {
                continue;
            }
            let v: f64 = tok.parse().map_err(|_| {
                input(
                    path,
                    format!("line {}: `{tok}` is not a time in seconds", i + 1),
                )
            })?;
            out.push(v);
        }
    }
    Ok(out)
}

/// One file, read and checked, ready to stream.
struct Session {
    path: PathBuf,
    new: NewSession,
    trains: Trains,
    bins: Bins,
    /// Window start of each kept trial.
    starts: Vec<f64>,
    clipped: u64,
    dropped_trials: usize,
    dropped_units: usize,
    overlapping: usize,
}

/// Where the windows come from.
enum Windows {
    Column(String),
    File(PathBuf),
    Fixed,
}

impl Session {
    fn read(path: &Path, args: &Args, align_times: Option<&[f64]>) -> Result<Session> {
        let f = H5::open(path)?;
        let bad = |msg: String| input(path, msg);

        // --- Units: ids, spike times and their ragged index.
        let unit_cols = f.members(UNITS)?.ok_or_else(|| {
            bad(format!(
                "no units table ({UNITS}): ndt imports spike-sorted units; this file has none"
            ))
        })?;
        for col in ["spike_times", "spike_times_index", "id"] {
            if !unit_cols.iter().any(|c| c == col) {
                return Err(bad(format!(
                    "the units table has no `{col}` column (it has: {})",
                    unit_cols.join(", ")
                )));
            }
        }
        let ids = f.i64s(&format!("{UNITS}/id"))?;
        let index = f.i64s(&format!("{UNITS}/spike_times_index"))?;
        let n_spikes = f.len_of(&format!("{UNITS}/spike_times"))?;
        if index.len() != ids.len() {
            return Err(bad(format!(
                "{UNITS}/spike_times_index has {} entries for {} units",
                index.len(),
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Err(bad("the units table is empty".into()));
        }
        let mut prev = 0i64;
        for (u, &e) in index.iter().enumerate() {
            if e < prev {
                return Err(bad(format!(
                    "{UNITS}/spike_times_index is not monotone: entry {u} (unit id {}) is {e}, \
                     after {prev}",
                    ids[u]
                )));
            }
            if e as u64 > n_spikes as u64 {
                return Err(bad(format!(
                    "{UNITS}/spike_times_index entry {u} (unit id {}) is {e}, past the end of \
                     spike_times ({n_spikes} spikes)",
                    ids[u]
                )));
            }
            prev = e;
        }
        if prev as u64 != n_spikes as u64 {
            return Err(bad(format!(
                "{UNITS}/spike_times_index ends at {prev}, but spike_times has {n_spikes} spikes"
            )));
        }
        if !f.is_float(&format!("{UNITS}/spike_times"))? {
            return Err(bad(format!(
                "{UNITS}/spike_times must hold floating-point seconds"
            )));
        }
        let times = f.f64s(&format!("{UNITS}/spike_times"))?;
        if times.len() != n_spikes {
            return Err(bad(format!(
                "{UNITS}/spike_times: read {} values of {n_spikes}",
                times.len()
            )));
        }
        let mut lo = 0usize;
        for (u, &e) in index.iter().enumerate() {
            let e = e as usize;
            let t = &times[lo..e];
            if let Some(k) = t.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "unit id {}: spike time {} (spike {k} of the unit, element {} of \
                     spike_times) is not a finite number",
                    ids[u],
                    t[k],
                    lo + k
                )));
            }
            if let Some(k) = t.windows(2).position(|w| w[1] < w[0]) {
                return Err(bad(format!(
                    "unit id {}: spike times are not sorted ({} s then {} s at spikes {k} and {} \
                     of the unit)",
                    ids[u],
                    t[k],
                    t[k + 1],
                    k + 1
                )));
            }
            lo = e;
        }

        // --- Regions, one per unit (before dropping any unit); empty labels are "unknown".
        let (mut regions_all, region_source) = read_regions(&f, &unit_cols, ids.len(), args)?;
        let mut empty_regions = 0usize;
        for r in regions_all.iter_mut() {
            if r.trim().is_empty() {
                *r = "unknown".into();
                empty_regions += 1;
            }
        }

        // --- Drop units without spikes (which removes no spike: `times` is kept as it is).
        let mut kept_units = Vec::new();
        let mut dropped_ids = Vec::new();
        let mut ends = Vec::new();
        let mut regions = Vec::new();
        let mut lo = 0usize;
        for (u, &e) in index.iter().enumerate() {
            let e = e as usize;
            if e == lo {
                dropped_ids.push(ids[u]);
            } else {
                kept_units.push(ids[u]);
                ends.push(e);
                regions.push(regions_all[u].clone());
            }
            lo = e;
        }
        if kept_units.is_empty() {
            return Err(bad("no unit has any spike".into()));
        }
        let trains = Trains { times, ends };
        let (first, last) = trains.span().unwrap_or((0.0, 0.0));
        let rec = (first.min(0.0), last);

        // --- Windows.
        let bins = Bins {
            bin_size: args.bin_size,
            n_bins: args.n_bins,
        };
        let has_trials = f.members(TRIALS)?.is_some();
        let windows = if args.fixed_windows {
            Windows::Fixed
        } else if let Some(p) = &args.align_times {
            Windows::File(p.clone())
        } else if has_trials {
            Windows::Column(args.align.clone())
        } else if args.align != DEFAULT_ALIGN {
            return Err(bad(format!(
                "--align {}: the file has no trials table ({TRIALS})",
                args.align
            )));
        } else {
            Windows::Fixed
        };
        let mut dropped: BTreeMap<&str, usize> = BTreeMap::new();
        let mut rows = Vec::new();
        let mut starts = Vec::new();
        let mut choice_col = None;
        let trials_in_source;
        let onset_bin;
        let source: Option<(Vec<f64>, String)> = match &windows {
            Windows::Fixed => None,
            Windows::File(p) => {
                Some((align_times.unwrap_or(&[]).to_vec(), p.display().to_string()))
            }
            Windows::Column(col) => {
                let cols = f.members(TRIALS)?.unwrap_or_default();
                if !cols.iter().any(|c| c == col) {
                    let timing: Vec<&str> = cols
                        .iter()
                        .filter(|c| c.ends_with("time") || c.ends_with("times"))
                        .map(|s| s.as_str())
                        .collect();
                    return Err(bad(format!(
                        "--align {col}: the trials table has no such column (time columns: {})",
                        timing.join(", ")
                    )));
                }
                if cols.iter().any(|c| c == "choice") {
                    choice_col = Some(f.f64s(&format!("{TRIALS}/choice"))?);
                }
                let p = format!("{TRIALS}/{col}");
                Some((f.f64s(&p)?, p))
            }
        };
        match source {
            None => {
                let w = bins.width();
                let n = ((rec.1 - rec.0) / w).floor();
                if !(n.is_finite() && n <= 10_000_000.0) {
                    return Err(bad(format!(
                        "the recording ({} s) would make more than 10 million windows of {w} s",
                        rec.1 - rec.0
                    )));
                }
                for k in 0..n as usize {
                    let s = rec.0 + k as f64 * w;
                    if s + w <= rec.1 {
                        rows.push(k);
                        starts.push(s);
                    }
                }
                trials_in_source = rows.len();
                onset_bin = None;
            }
            Some((times, what)) => {
                trials_in_source = times.len();
                for (k, &a) in times.iter().enumerate() {
                    if a.is_nan() {
                        *dropped.entry("alignment time is NaN").or_default() += 1;
                        continue;
                    }
                    if !(a >= rec.0 && a <= rec.1) {
                        return Err(bad(format!(
                            "trial {k}: alignment time {a} s (from {what}) is outside the \
                             recording ({} s to {} s: session start to the last spike)",
                            rec.0, rec.1
                        )));
                    }
                    let s = a + args.window_start;
                    if s < rec.0 || s + bins.width() > rec.1 {
                        *dropped
                            .entry("window extends past the recording")
                            .or_default() += 1;
                        continue;
                    }
                    rows.push(k);
                    starts.push(s);
                }
                let o = (-args.window_start / args.bin_size).round();
                onset_bin = (o >= 0.0 && o < args.n_bins as f64).then_some(o as usize);
            }
        }
        let n_trials = starts.len();
        if n_trials < args.min_trials {
            return Err(bad(format!(
                "{n_trials} usable trials ({} in the source, {} dropped: {}), fewer than a batch \
                 ({}); pass --min-trials to accept smaller sessions",
                trials_in_source,
                trials_in_source - n_trials,
                if dropped.is_empty() {
                    "none".to_string()
                } else {
                    dropped
                        .iter()
                        .map(|(r, n)| format!("{n} {r}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                args.min_trials
            )));
        }
        // Windows that overlap the next one (in time order): allowed, counted.
        let mut sorted = starts.clone();
        sorted.sort_by(f64::total_cmp);
        let overlapping = sorted
            .windows(2)
            .filter(|w| w[1] < w[0] + bins.width())
            .count();

        // --- Choice from the trials table, when it holds -1 / 0 / +1 (NaN = unknown).
        let mut choice_note = Value::Null;
        let choice = match choice_col {
            Some(c)
                if c.iter()
                    .all(|v| v.is_nan() || *v == -1.0 || *v == 0.0 || *v == 1.0) =>
            {
                choice_note = json!(format!("{TRIALS}/choice"));
                rows.iter()
                    .map(|&r| {
                        c.get(r)
                            .map_or(0, |&v| if v.is_nan() { 0 } else { v as i8 })
                    })
                    .collect()
            }
            Some(_) => {
                choice_note = json!("trials column `choice` not in {-1, 0, +1}: not imported");
                vec![0i8; n_trials]
            }
            None => vec![0i8; n_trials],
        };

        // --- Every count, checked now so that nothing is written for a file that fails.
        let n = trains.n_units();
        let mut counts = vec![0u32; args.n_bins * n];
        let mut clipped = 0u64;
        for (t, &s) in starts.iter().enumerate() {
            bins.count(&trains, s, &mut counts);
            for (i, &c) in counts.iter().enumerate() {
                if c > 255 {
                    if !args.clip {
                        return Err(bad(format!(
                            "count {c} in trial {t} (source row {}), bin {}, unit id {} exceeds \
                             255 (counts are stored as uint8); pass --clip to clip counts to 255",
                            rows[t],
                            i / n,
                            kept_units[i % n]
                        )));
                    }
                    clipped += 1;
                }
            }
        }

        // --- Metadata.
        let id = match &args.id {
            Some(id) => id.clone(),
            None => {
                let from = if f.has_dataset("/general/session_id")? {
                    "/general/session_id"
                } else {
                    "/identifier"
                };
                let id = f.scalar_string(from)?.ok_or_else(|| {
                    bad(
                        "no /identifier or /general/session_id to name the session; pass --id"
                            .into(),
                    )
                })?;
                crate::store::check_id("session id", &id).map_err(|e| {
                    bad(format!(
                        "the session id read from {from} is not usable: {e}; pass --id"
                    ))
                })?;
                id
            }
        };
        // Empty strings (pynwb writes "" for unset fields in some files) count as absent.
        let meta = |flag: &Option<String>, p: &str| -> Result<String> {
            Ok(match flag {
                Some(s) => s.clone(),
                None => f
                    .scalar_string(p)?
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "unknown".into()),
            })
        };
        let subject = meta(&args.subject, "/general/subject/subject_id")?;
        let lab = meta(&args.lab, "/general/lab")?;

        let (bytes, sha256) = file_digest(path)?;
        let dropped_units = dropped_ids.len();
        let dropped_trials: usize = dropped.values().sum();
        let provenance = json!({
            "importer": "nwb",
            "source": absolute(path),
            "source_bytes": bytes,
            "source_sha256": sha256,
            "nwb_version": f.root_attr_string("nwb_version"),
            "flags": {
                "align": args.align,
                "align_times": args.align_times.as_ref().map(|p| absolute(p)),
                "fixed_windows": args.fixed_windows,
                "window_start_s": args.window_start,
                "bin_size_s": args.bin_size,
                "n_bins": args.n_bins,
                "region_column": args.region_column,
                "clip": args.clip,
                "min_trials": args.min_trials,
                "split_seed": args.split_seed,
            },
            "windows": match &windows {
                Windows::Column(c) => format!("trials table column {TRIALS}/{c}"),
                Windows::File(p) => format!("alignment times from {}", absolute(p).display()),
                Windows::Fixed => format!("consecutive {} s windows from {} s", bins.width(), rec.0),
            },
            "recording_s": [rec.0, rec.1],
            "trials_in_source": trials_in_source,
            "source_rows": rows,
            "dropped_trials": dropped,
            "overlapping_windows": overlapping,
            "unit_ids": kept_units,
            "dropped_units": if dropped_units > 0 { json!({"no spikes": dropped_units}) } else { json!({}) },
            "dropped_unit_ids": dropped_ids,
            "regions_from": region_source,
            "empty_region_labels": empty_regions,
            "choice_from": choice_note,
            "clipped_counts": clipped,
        });
        let new = NewSession {
            id,
            subject,
            lab,
            animal: None,
            n_trials,
            n_bins: args.n_bins,
            n_neurons: n,
            bin_size_s: args.bin_size,
            onset_bin,
            regions,
            choice,
            behaviour: Vec::new(),
            provenance,
        };
        Ok(Session {
            path: path.to_path_buf(),
            new,
            trains,
            bins,
            starts,
            clipped,
            dropped_trials,
            dropped_units,
            overlapping,
        })
    }
}

/// One region label per unit, and where they came from.
fn read_regions(
    f: &H5,
    unit_cols: &[String],
    n_units: usize,
    args: &Args,
) -> Result<(Vec<String>, String)> {
    let path = f.path();
    let electrode_cols = f.members(ELECTRODES)?.unwrap_or_default();
    // The electrodes column `col` seen through each unit's (first) electrode.
    let via_electrodes = |col: &str| -> Result<Vec<String>> {
        if !unit_cols.iter().any(|c| c == "electrodes") {
            return Err(input(
                path,
                format!(
                    "the units table has no `electrodes` column to find each unit's region; name \
                     a units column holding regions with --region-column (string columns: {})",
                    string_columns(f, UNITS, unit_cols).join(", ")
                ),
            ));
        }
        if !electrode_cols.iter().any(|c| c == col) {
            return Err(input(
                path,
                format!(
                    "the electrodes table ({ELECTRODES}) has no `{col}` column (it has: {})",
                    electrode_cols.join(", ")
                ),
            ));
        }
        let labels = f.strings(&format!("{ELECTRODES}/{col}"))?;
        let rows = f.i64s(&format!("{UNITS}/electrodes"))?;
        // A unit may sit on several electrodes (`electrodes_index` makes the column ragged):
        // the first one gives its region.
        let first: Vec<Option<i64>> = if unit_cols.iter().any(|c| c == "electrodes_index") {
            let ix = f.i64s(&format!("{UNITS}/electrodes_index"))?;
            if ix.len() != n_units {
                return Err(input(
                    path,
                    format!(
                        "{UNITS}/electrodes_index has {} entries for {n_units} units",
                        ix.len()
                    ),
                ));
            }
            let mut lo = 0i64;
            let mut out = Vec::with_capacity(n_units);
            for (u, &e) in ix.iter().enumerate() {
                if e < lo || e as u64 > rows.len() as u64 {
                    return Err(input(
                        path,
                        format!(
                            "{UNITS}/electrodes_index entry {u} is {e}: not monotone or past \
                             the {} electrode references",
                            rows.len()
                        ),
                    ));
                }
                out.push((e > lo).then(|| rows[lo as usize]));
                lo = e;
            }
            out
        } else {
            if rows.len() != n_units {
                return Err(input(
                    path,
                    format!(
                        "{UNITS}/electrodes has {} entries for {n_units} units",
                        rows.len()
                    ),
                ));
            }
            rows.iter().map(|&r| Some(r)).collect()
        };
        first
            .into_iter()
            .enumerate()
            .map(|(u, r)| match r {
                None => Ok("unknown".to_string()),
                Some(r) => usize::try_from(r)
                    .ok()
                    .and_then(|r| labels.get(r).cloned())
                    .ok_or_else(|| {
                        input(
                            path,
                            format!(
                                "unit {u}: electrode row {r} is outside the electrodes table \
                                 ({} rows)",
                                labels.len()
                            ),
                        )
                    }),
            })
            .collect()
    };
    match &args.region_column {
        Some(col) if unit_cols.iter().any(|c| c == col) => {
            let p = format!("{UNITS}/{col}");
            let r = f.strings(&p)?;
            if r.len() != n_units {
                return Err(input(
                    path,
                    format!("{p} has {} entries for {n_units} units", r.len()),
                ));
            }
            Ok((r, p))
        }
        Some(col) if electrode_cols.iter().any(|c| c == col) => Ok((
            via_electrodes(col)?,
            format!("{ELECTRODES}/{col} via {UNITS}/electrodes"),
        )),
        Some(col) => Err(input(
            path,
            format!(
                "--region-column {col}: neither the units table nor the electrodes table has \
                 such a column (units string columns: {})",
                string_columns(f, UNITS, unit_cols).join(", ")
            ),
        )),
        None => Ok((
            via_electrodes("location")?,
            format!("{ELECTRODES}/location via {UNITS}/electrodes"),
        )),
    }
}

/// The string columns among `cols` of table `table` (for messages).
fn string_columns(f: &H5, table: &str, cols: &[String]) -> Vec<String> {
    cols.iter()
        .filter(|c| f.is_strings(&format!("{table}/{c}")).unwrap_or(false))
        .cloned()
        .collect()
}

/// Size and SHA-256 (hex) of a file, read in blocks.
fn file_digest(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let (mut file, _) = crate::fsutil::open_regular(path)?;
    let mut h = crate::hash::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = file.read(&mut buf).map_err(io_at(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.hex()))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

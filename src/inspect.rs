//! `ndt inspect`: what a dataset holds, as a table for people and JSON for programs.
//! Mean rates are computed from the mapped counts (one pass over each session).

use crate::store::{Dataset, SessionInfo};
use rayon::prelude::*;
use serde::Serialize;

/// Summary of a whole dataset.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub dir: String,
    pub format_version: u32,
    pub created_by: String,
    pub n_sessions: usize,
    pub n_trials: usize,
    pub n_neurons: usize,
    /// Distinct region labels over all sessions, in first-appearance order.
    pub regions: Vec<String>,
    pub sessions: Vec<SessionSummary>,
    /// Names of the dataset-level `extra` entries.
    pub extra: Vec<String>,
}

/// Summary of one session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub subject: String,
    pub lab: String,
    pub animal: Option<String>,
    pub n_trials: usize,
    pub n_bins: usize,
    pub n_neurons: usize,
    pub bin_size_s: f64,
    pub onset_bin: Option<usize>,
    /// (region, number of neurons), in first-appearance order.
    pub regions: Vec<(String, usize)>,
    /// Mean firing rate over all trials, bins and neurons, in Hz.
    pub mean_rate_hz: f64,
    /// Number of trials in train, val and test.
    pub split: SplitSizes,
    pub split_seed: u64,
    pub behaviour: Vec<String>,
    pub dir: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SplitSizes {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// Summarises `ds` (reads every count once, sessions in parallel).
pub fn summarize(ds: &Dataset) -> Summary {
    let sessions: Vec<SessionSummary> = (0..ds.n_sessions())
        .into_par_iter()
        .map(|s| session_summary(ds.session(s), ds.counts(s)))
        .collect();
    let mut regions: Vec<String> = Vec::new();
    for s in ds.sessions() {
        for r in &s.regions {
            if !regions.contains(r) {
                regions.push(r.clone());
            }
        }
    }
    Summary {
        dir: ds.dir.display().to_string(),
        format_version: ds.manifest.format_version,
        created_by: ds.manifest.created_by.clone(),
        n_sessions: sessions.len(),
        n_trials: sessions.iter().map(|s| s.n_trials).sum(),
        n_neurons: sessions.iter().map(|s| s.n_neurons).sum(),
        regions,
        sessions,
        extra: ds.manifest.extra.keys().cloned().collect(),
    }
}

fn session_summary(s: &SessionInfo, counts: &[u8]) -> SessionSummary {
    let total: u64 = counts
        .par_chunks(1 << 20)
        .map(|c| c.iter().map(|&x| x as u64).sum::<u64>())
        .sum();
    let (names, index) = s.region_index();
    let mut per = vec![0usize; names.len()];
    for &k in &index {
        per[k as usize] += 1;
    }
    let seconds = (s.n_trials * s.n_bins * s.n_neurons) as f64 * s.bin_size_s;
    SessionSummary {
        id: s.id.clone(),
        subject: s.subject.clone(),
        lab: s.lab.clone(),
        animal: s.animal.clone(),
        n_trials: s.n_trials,
        n_bins: s.n_bins,
        n_neurons: s.n_neurons,
        bin_size_s: s.bin_size_s,
        onset_bin: s.onset_bin,
        regions: names.into_iter().zip(per).collect(),
        mean_rate_hz: total as f64 / seconds,
        split: SplitSizes {
            train: s.split.train.len(),
            val: s.split.val.len(),
            test: s.split.test.len(),
        },
        split_seed: s.split.seed,
        behaviour: s.behaviour.clone(),
        dir: s.dir.clone(),
    }
}

/// The summary as a plain-text table.
pub fn render_table(sum: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "dataset {} (format {}, {})\n{} sessions, {} trials, {} neurons, {} regions\n\n",
        sum.dir,
        sum.format_version,
        if sum.created_by.is_empty() {
            "?"
        } else {
            &sum.created_by
        },
        sum.n_sessions,
        sum.n_trials,
        sum.n_neurons,
        sum.regions.len()
    ));
    let header = [
        "id",
        "subject",
        "lab",
        "trials",
        "bins",
        "bin_ms",
        "onset",
        "neurons",
        "rate_hz",
        "train/val/test",
        "regions",
    ];
    let rows: Vec<Vec<String>> = sum
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.subject.clone(),
                s.lab.clone(),
                s.n_trials.to_string(),
                s.n_bins.to_string(),
                format!("{:.4}", s.bin_size_s * 1e3)
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
                s.onset_bin.map_or("-".into(), |o| o.to_string()),
                s.n_neurons.to_string(),
                format!("{:.3}", s.mean_rate_hz),
                format!("{}/{}/{}", s.split.train, s.split.val, s.split.test),
                region_list(&s.regions),
            ]
        })
        .collect();
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        let mut l = String::new();
        for (k, (c, w)) in cells.iter().zip(&width).enumerate() {
            if k == last {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
    if !sum.extra.is_empty() {
        out.push_str(&format!("\nextra: {}\n", sum.extra.join(", ")));
    }
    out
}

/// `VISp:12 CA1:30 ...`, cut after eight regions.
fn region_list(regions: &[(String, usize)]) -> String {
    let mut parts: Vec<String> = regions
        .iter()
        .take(8)
        .map(|(r, n)| format!("{r}:{n}"))
        .collect();
    if regions.len() > 8 {
        parts.push(format!("(+{} more)", regions.len() - 8));
    }
    parts.join(" ")
}

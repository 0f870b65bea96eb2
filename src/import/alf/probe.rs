//! One probe's spike sorting: `spikes.times` / `spikes.clusters`, `clusters.channels`,
//! `clusters.metrics.pqt` (`label`), `clusters.uuids.csv`, and the Allen location of each
//! cluster's channel (`channels.brainLocationIds_ccf_2017`, else
//! `electrodeSites.brainLocationIds_ccf_2017`).

use super::allen;
use super::files::{Sources, indices, integers, vector};
use super::layout::Layout;
use crate::error::{Result, input};
use crate::import::ibl_hf::columns;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

/// The sorter preferred when a probe has several: the one the IBL brain-wide map used.
pub const DEFAULT_SORTER: &str = "pykilosort";

pub struct Probe {
    /// `probe00`.
    pub name: String,
    /// `alf/probe00/pykilosort`.
    pub collection: String,
    pub times: Vec<f64>,
    pub clusters: Vec<u32>,
    pub times_path: PathBuf,
    /// Number of clusters (rows of `clusters.*`); cluster ids are `0..n_clusters`.
    pub n_clusters: usize,
    /// Allen acronym of each cluster.
    pub acronyms: Vec<String>,
    /// Whether each cluster is labelled good (`label == 1`), when read.
    pub good: Option<Vec<bool>>,
    /// Each cluster's uuid, when `clusters.uuids.csv` is present.
    pub uuids: Option<Vec<String>>,
    /// Where the locations came from (relative to the session).
    pub locations: String,
}

/// The spike-sorting collections of the session, one per probe: `(probe, collection)`, sorted
/// by probe name.
pub fn collections(layout: &Layout, sorter: Option<&str>) -> Result<Vec<(String, String)>> {
    let have = layout.collections_with("spikes", "times");
    let mut probes: Vec<String> = have
        .iter()
        .filter_map(|c| {
            let parts: Vec<&str> = c.split('/').collect();
            (parts.len() >= 2 && parts.len() <= 3 && parts[0] == "alf").then(|| parts[1].into())
        })
        .collect();
    probes.sort();
    probes.dedup();
    if probes.is_empty() {
        return Err(input(
            layout.root.join("alf"),
            "no spike sorting: expected spikes.times.npy in alf/PROBE/ or alf/PROBE/SORTER/",
        ));
    }
    let mut out = Vec::new();
    for p in probes {
        let cands: Vec<&String> = have
            .iter()
            .filter(|c| c.as_str() == format!("alf/{p}") || c.starts_with(&format!("alf/{p}/")))
            .filter(|c| c.split('/').count() <= 3)
            .collect();
        let pick = match sorter {
            Some(s) => {
                let want = format!("alf/{p}/{s}");
                cands
                    .iter()
                    .find(|c| ***c == want)
                    .map(|c| (*c).clone())
                    .ok_or_else(|| {
                        input(
                            layout.root.join(format!("alf/{p}")),
                            format!(
                                "--sorter {s}: no spikes.times in {want} (found in: {})",
                                cands
                                    .iter()
                                    .map(|c| c.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?
            }
            None => {
                let pref = format!("alf/{p}/{DEFAULT_SORTER}");
                if let Some(c) = cands.iter().find(|c| ***c == pref) {
                    (*c).clone()
                } else if let [one] = cands.as_slice() {
                    (*one).clone()
                } else {
                    return Err(input(
                        layout.root.join(format!("alf/{p}")),
                        format!(
                            "several spike sortings ({}); choose one with --sorter NAME",
                            cands
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        };
        out.push((p, pick));
    }
    Ok(out)
}

fn required<'a>(
    layout: &'a Layout,
    coll: &str,
    object: &str,
    attribute: &str,
    ext: &[&str],
) -> Result<&'a Path> {
    layout
        .find(coll, object, attribute, ext)?
        .map(|f| f.path.as_path())
        .ok_or_else(|| {
            input(
                layout.root.join(coll),
                format!("missing {object}.{attribute}.{}", ext.join("|")),
            )
        })
}

/// Reads and checks one probe.
pub fn load(
    layout: &Layout,
    sources: &mut Sources,
    name: &str,
    coll: &str,
    need_labels: bool,
) -> Result<Probe> {
    let times_path = required(layout, coll, "spikes", "times", &["npy"])?.to_path_buf();
    let times = vector(&sources.npy(&times_path)?, &times_path)?;
    let clusters_path = required(layout, coll, "spikes", "clusters", &["npy"])?;
    let clusters = indices(&sources.npy(clusters_path)?, clusters_path, "cluster")?;
    if clusters.len() != times.len() {
        return Err(input(
            clusters_path,
            format!(
                "{} spike clusters but {} spike times in {}",
                clusters.len(),
                times.len(),
                times_path.display()
            ),
        ));
    }
    if let Some(i) = times.iter().position(|t| !t.is_finite()) {
        return Err(input(
            &times_path,
            format!("spike {i} has time {} (not a finite number)", times[i]),
        ));
    }
    if let Some(i) = times.windows(2).position(|w| w[1] < w[0]) {
        return Err(input(
            &times_path,
            format!(
                "spike times are not sorted: spike {} at {} s comes after {} s",
                i + 1,
                times[i + 1],
                times[i]
            ),
        ));
    }

    let channels_path = required(layout, coll, "clusters", "channels", &["npy"])?;
    let channels = indices(&sources.npy(channels_path)?, channels_path, "channel")?;
    let n_clusters = channels.len();
    if let Some(i) = clusters.iter().position(|&c| c as usize >= n_clusters) {
        return Err(input(
            clusters_path,
            format!(
                "spike {i} has cluster {} but {} lists only {n_clusters} clusters (0..{})",
                clusters[i],
                channels_path.display(),
                n_clusters
            ),
        ));
    }

    // Allen location of each channel.
    let probe_coll = format!("alf/{name}");
    let loc = [
        (coll, "channels"),
        (probe_coll.as_str(), "channels"),
        (probe_coll.as_str(), "electrodeSites"),
        (coll, "electrodeSites"),
    ]
    .iter()
    .map(|(c, o)| layout.find(c, o, "brainLocationIds_ccf_2017", &["npy"]))
    .find_map(|r| r.transpose())
    .transpose()?
    .ok_or_else(|| {
        input(
            layout.root.join(coll),
            format!(
                "no channel locations: expected channels.brainLocationIds_ccf_2017.npy in {coll} \
                 or {probe_coll}, or electrodeSites.brainLocationIds_ccf_2017.npy in {probe_coll}"
            ),
        )
    })?;
    let loc_path = loc.path.clone();
    let ids = integers(&sources.npy(&loc_path)?, &loc_path, "Allen id")?;
    let mut acronyms = Vec::with_capacity(n_clusters);
    for (c, &ch) in channels.iter().enumerate() {
        let id = *ids.get(ch as usize).ok_or_else(|| {
            input(
                channels_path,
                format!(
                    "cluster {c} is on channel {ch} but {} has {} channels",
                    loc_path.display(),
                    ids.len()
                ),
            )
        })?;
        let a = allen::acronym(id).ok_or_else(|| {
            input(
                &loc_path,
                format!(
                    "channel {ch} (of cluster {c}) has Allen id {id}, which is not in the CCF 2017 \
                     structure table ({} structures)",
                    allen::len()
                ),
            )
        })?;
        acronyms.push(a.to_string());
    }

    let good = if need_labels {
        let p = required(layout, coll, "clusters", "metrics", &["pqt", "parquet"])?;
        Some(read_labels(p, sources, n_clusters)?)
    } else {
        None
    };
    let uuids = match layout.find(coll, "clusters", "uuids", &["csv"])? {
        Some(f) => Some(read_uuids(&f.path, sources, n_clusters)?),
        None => None,
    };
    let locations = loc_path
        .strip_prefix(&layout.root)
        .unwrap_or(&loc_path)
        .display()
        .to_string();
    Ok(Probe {
        name: name.to_string(),
        collection: coll.to_string(),
        times,
        clusters,
        times_path,
        n_clusters,
        acronyms,
        good,
        uuids,
        locations,
    })
}

/// `label == 1` per cluster from `clusters.metrics.pqt` (rows in cluster order; a `cluster_id`
/// column, when present, must count 0, 1, 2, ...).
fn read_labels(path: &Path, sources: &mut Sources, n_clusters: usize) -> Result<Vec<bool>> {
    sources.read(path)?;
    let (file, _) = crate::fsutil::open_regular(path)?;
    let bad = |e: String| input(path, format!("cannot read the cluster metrics: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(e.to_string()))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut good = Vec::new();
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let label = batch.column_by_name("label").ok_or_else(|| {
            input(
                path,
                "no column `label` (1 = good unit); needed by --good-only",
            )
        })?;
        let ids = batch.column_by_name("cluster_id");
        for r in 0..batch.num_rows() {
            let l = columns::number_at(label.as_ref(), r)
                .map_err(|m| input(path, format!("`label` row {}: {m}", row + r)))?;
            if let Some(c) = ids {
                let id = columns::number_at(c.as_ref(), r)
                    .map_err(|m| input(path, format!("`cluster_id` row {}: {m}", row + r)))?;
                if id != Some((row + r) as f64) {
                    return Err(input(
                        path,
                        format!(
                            "row {} has cluster_id {id:?}; rows must list clusters 0, 1, 2, ...",
                            row + r
                        ),
                    ));
                }
            }
            good.push(l == Some(1.0));
        }
        row += batch.num_rows();
    }
    if good.len() != n_clusters {
        return Err(input(
            path,
            format!(
                "{} rows for {n_clusters} clusters (clusters.channels)",
                good.len()
            ),
        ));
    }
    Ok(good)
}

/// `clusters.uuids.csv`: a header line (`uuids`), then one uuid per cluster.
fn read_uuids(path: &Path, sources: &mut Sources, n_clusters: usize) -> Result<Vec<String>> {
    let bytes = sources.read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| input(path, "is not UTF-8 text"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if header.trim().trim_matches('"') != "uuids" {
        return Err(input(
            path,
            format!("first line is `{header}`, expected the header `uuids`"),
        ));
    }
    let uuids: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_matches('"').to_string())
        .collect();
    if uuids.len() != n_clusters {
        return Err(input(
            path,
            format!(
                "{} uuids for {n_clusters} clusters (clusters.channels)",
                uuids.len()
            ),
        ));
    }
    Ok(uuids)
}

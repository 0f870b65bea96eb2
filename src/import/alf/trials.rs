//! The session's trials: `_ibl_trials.table.pqt`, or the older one file per attribute
//! (`_ibl_trials.<attribute>.npy`), or both (the table's columns first, single files for the
//! attributes it lacks).

use super::files::{Sources, vector};
use super::layout::Layout;
use crate::error::{Result, input, usage};
use crate::import::ibl_hf::columns;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Per-trial attributes read (when present). `intervals` is `[n, 2]` and becomes
/// `intervals_0` (trial start) and `intervals_1` (trial end), as in the table.
pub const ATTRIBUTES: [&str; 11] = [
    "stimOn_times",
    "goCue_times",
    "response_times",
    "feedback_times",
    "firstMovement_times",
    "choice",
    "feedbackType",
    "contrastLeft",
    "contrastRight",
    "probabilityLeft",
    "intervals",
];

/// The events a trial can be aligned to.
pub const EVENTS: [&str; 7] = [
    "stimOn_times",
    "goCue_times",
    "firstMovement_times",
    "response_times",
    "feedback_times",
    "intervals_0",
    "intervals_1",
];

/// The trials of one session: each attribute's values (NaN where missing) and its file.
pub struct Trials {
    pub collection: String,
    pub n: usize,
    columns: BTreeMap<String, (Vec<f64>, PathBuf)>,
    /// The file trials are named by in messages (the table, or the first single file).
    pub main: PathBuf,
}

impl Trials {
    /// The values of `name`, or an error naming the trials file when the session lacks it.
    pub fn get(&self, name: &str, why: &str) -> Result<&[f64]> {
        self.columns
            .get(name)
            .map(|(v, _)| v.as_slice())
            .ok_or_else(|| {
                input(
                    &self.main,
                    format!(
                        "the trials of {} have no `{name}` ({why}); attributes present: {}",
                        self.collection,
                        self.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }

    /// The values of `name` if present.
    pub fn opt(&self, name: &str) -> Option<&[f64]> {
        self.columns.get(name).map(|(v, _)| v.as_slice())
    }

    /// The file `name` was read from.
    pub fn file_of(&self, name: &str) -> &Path {
        self.columns
            .get(name)
            .map(|(_, p)| p.as_path())
            .unwrap_or(&self.main)
    }
}

/// The collection holding the trials: `alf/task_NN` with `--task NN`, else `alf`, else the one
/// `alf/task_NN` that has trials.
fn collection(layout: &Layout, task: Option<u32>) -> Result<String> {
    let mut have: Vec<String> = layout
        .files
        .iter()
        .filter(|f| f.object == "trials")
        .map(|f| f.collection.clone())
        .collect();
    have.sort();
    have.dedup();
    if let Some(t) = task {
        let want = format!("alf/task_{t:02}");
        return if have.contains(&want) {
            Ok(want)
        } else {
            Err(input(
                &layout.root,
                format!(
                    "--task {t}: no trials in {want} (trials found in: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            ))
        };
    }
    if have.iter().any(|c| c == "alf") {
        return Ok("alf".into());
    }
    match have.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(input(
            layout.root.join("alf"),
            "no trials: expected _ibl_trials.table.pqt or _ibl_trials.<attribute>.npy files in \
             alf/ or alf/task_NN/",
        )),
        many => Err(input(
            &layout.root,
            format!(
                "trials in several collections ({}); choose one with --task N",
                many.join(", ")
            ),
        )),
    }
}

/// Reads the trials of the session.
pub fn load(layout: &Layout, sources: &mut Sources, task: Option<u32>) -> Result<Trials> {
    let coll = collection(layout, task)?;
    let mut columns: BTreeMap<String, (Vec<f64>, PathBuf)> = BTreeMap::new();
    let mut main: Option<PathBuf> = None;
    if let Some(f) = layout.find(&coll, "trials", "table", &["pqt", "parquet"])? {
        read_table(&f.path, sources, &mut columns)?;
        main = Some(f.path.clone());
    }
    for attr in ATTRIBUTES {
        let have = if attr == "intervals" {
            columns.contains_key("intervals_0")
        } else {
            columns.contains_key(attr)
        };
        if have {
            continue;
        }
        let Some(f) = layout.find(&coll, "trials", attr, &["npy"])? else {
            continue;
        };
        let a = sources.npy(&f.path)?;
        if attr == "intervals" {
            let s = a.shape().to_vec();
            if s.len() != 2 || s[1] != 2 {
                return Err(input(
                    &f.path,
                    format!("intervals must have shape [trials, 2], found {s:?}"),
                ));
            }
            let v = a.to_f64(&f.path)?;
            let start = v.iter().step_by(2).copied().collect();
            let end = v.iter().skip(1).step_by(2).copied().collect();
            columns.insert("intervals_0".into(), (start, f.path.clone()));
            columns.insert("intervals_1".into(), (end, f.path.clone()));
        } else {
            columns.insert(attr.to_string(), (vector(&a, &f.path)?, f.path.clone()));
        }
        main.get_or_insert_with(|| f.path.clone());
    }
    let Some(main) = main else {
        return Err(input(
            layout.root.join(&coll),
            "has trials files but none of the attributes read (stimOn_times, choice, ...)",
        ));
    };
    // Every attribute must have one value per trial.
    let n = columns
        .get("stimOn_times")
        .or_else(|| columns.values().next())
        .map(|(v, _)| v.len())
        .unwrap_or(0);
    for (name, (v, path)) in &columns {
        if v.len() != n {
            let (first, first_path) = columns
                .iter()
                .find(|(_, (v, _))| v.len() == n)
                .map(|(k, (_, p))| (k.as_str(), p.display().to_string()))
                .unwrap_or(("?", String::new()));
            return Err(input(
                path,
                format!(
                    "`{name}` has {} trials but `{first}` ({first_path}) has {n}",
                    v.len()
                ),
            ));
        }
    }
    if n == 0 {
        return Err(input(&main, "holds no trials"));
    }
    Ok(Trials {
        collection: coll,
        n,
        columns,
        main,
    })
}

fn read_table(
    path: &Path,
    sources: &mut Sources,
    out: &mut BTreeMap<String, (Vec<f64>, PathBuf)>,
) -> Result<()> {
    // Recorded (size and hash) from the bytes read, then parsed from the file.
    sources.read(path)?;
    let (file, _) = crate::fsutil::open_regular(path)?;
    let bad = |e: String| input(path, format!("cannot read the trials table: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(e.to_string()))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let wanted: Vec<String> = ATTRIBUTES
        .iter()
        .filter(|a| **a != "intervals")
        .map(|a| a.to_string())
        .chain(["intervals_0".to_string(), "intervals_1".to_string()])
        .collect();
    let mut cols: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        for name in &wanted {
            let Some(c) = batch.column_by_name(name) else {
                continue;
            };
            let v = cols.entry(name.clone()).or_default();
            if v.len() != rows {
                return Err(bad(format!(
                    "column `{name}` is missing from some row groups"
                )));
            }
            for r in 0..batch.num_rows() {
                let x = columns::number_at(c.as_ref(), r)
                    .map_err(|m| input(path, format!("column `{name}` row {}: {m}", rows + r)))?;
                v.push(x.unwrap_or(f64::NAN));
            }
        }
        rows += batch.num_rows();
    }
    for (name, v) in cols {
        if v.len() != rows {
            return Err(bad(format!(
                "column `{name}` is missing from some row groups"
            )));
        }
        out.insert(name, (v, path.to_path_buf()));
    }
    Ok(())
}

/// Checks an alignment event name.
pub fn check_event(name: &str) -> Result<()> {
    if EVENTS.contains(&name) {
        Ok(())
    } else {
        Err(usage(format!(
            "--align {name}: unknown event (one of {})",
            EVENTS.join(", ")
        )))
    }
}

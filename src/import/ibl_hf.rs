//! `ndt import ibl-hf`: the seed paper's released format (SPEC §1).
//!
//! One row per trial, as in the HuggingFace datasets `nsl-uw/IBL_RepeatedSite_train` /
//! `_heldout` and the IBL MtM `*_aligned` sets: the trial's counts as a CSR matrix (rows = time
//! bins, columns = neurons) in `spikes_sparse_data` / `spikes_sparse_indices` /
//! `spikes_sparse_indptr` / `spikes_sparse_shape`, the session's `eid`, `cluster_regions` (one
//! label per neuron), `choice` (-1 / +1; 0 = no choice), and optionally `reward`, `contrast`,
//! `block`, `subject`, `lab`. Files are snappy parquet shards or the Arrow IPC files of
//! `datasets.save_to_disk`; PATH is a file or a folder searched recursively.
//!
//! Two passes. The first reads only the small columns of every file, groups rows by `eid` into
//! sessions (trials in file order, then row order) and checks that each session's rows agree on
//! shape and regions. The second streams each session into the store trial by trial, reading
//! only the row groups / record batches that hold it and checking each CSR matrix against its
//! shape. Any error names the file and the row; nothing is committed, so the dataset is left
//! as it was.
//!
//! Splits: a file that names its split (`train-*`/`validation-*`/`val-*`/`test-*` shards, or
//! the `train/`, `val/`|`validation/`, `test/` folders of `save_to_disk`) keeps each of its trials
//! in that split; with `--resplit`, or when no file names one, each session is split 8:1:1 with
//! `--split-seed`. The manifest's provenance records which (`split.source`).

pub(crate) mod columns;
mod source;

use crate::error::{Result, input, usage};
use crate::store::{DatasetWriter, NewSession, Split, SplitName, check_id};
use arrow_array::RecordBatch;
use columns::Expect;
use source::{Source, UnitCache};
use std::collections::HashMap;
use std::path::PathBuf;

/// Import IBL trials from HuggingFace parquet shards or Arrow IPC files.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Parquet / Arrow IPC files, or folders searched recursively for *.parquet and *.arrow.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Dataset directory (created if missing; sessions are added to an existing dataset).
    #[arg(long)]
    pub out: PathBuf,
    /// Saturate counts above 255 at 255 instead of failing.
    #[arg(long)]
    pub clip: bool,
    /// Seed of the 8:1:1 train/val/test split drawn when the files name no split, or with
    /// --resplit.
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Merge the release's train/val/test files and split each session again 8:1:1 with
    /// --split-seed, instead of keeping the split the files name.
    #[arg(long)]
    pub resplit: bool,
    /// Bin width in seconds of the released counts.
    #[arg(long, default_value_t = 0.02)]
    pub bin_size: f64,
    /// Bin of stimulus onset (not recorded when it falls outside a session's bins).
    #[arg(long, default_value_t = 25)]
    pub onset_bin: usize,
}

const DATA: &str = "spikes_sparse_data";
const INDICES: &str = "spikes_sparse_indices";
const INDPTR: &str = "spikes_sparse_indptr";
const SHAPE: &str = "spikes_sparse_shape";
const EID: &str = "eid";
const REGIONS: &str = "cluster_regions";
const CHOICE: &str = "choice";
const SUBJECT: &str = "subject";
const LAB: &str = "lab";
/// Optional per-trial numbers stored as behaviour arrays.
const BEHAVIOUR: [&str; 3] = ["reward", "contrast", "block"];

const REQUIRED: [(&str, Expect); 7] = [
    (DATA, Expect::IntList),
    (INDICES, Expect::IntList),
    (INDPTR, Expect::IntList),
    (SHAPE, Expect::IntList),
    (EID, Expect::Str),
    (REGIONS, Expect::StrList),
    (CHOICE, Expect::Number),
];
const OPTIONAL: [(&str, Expect); 5] = [
    (SUBJECT, Expect::Str),
    (LAB, Expect::Str),
    (BEHAVIOUR[0], Expect::Number),
    (BEHAVIOUR[1], Expect::Number),
    (BEHAVIOUR[2], Expect::Number),
];
const SPIKE_COLUMNS: [&str; 4] = [DATA, INDICES, INDPTR, SHAPE];

/// Where one trial lives.
struct TrialRef {
    file: usize,
    unit: usize,
    row_in_unit: usize,
    /// Row number within the file, for messages.
    file_row: u64,
}

/// How the stored splits are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplitMode {
    /// Each trial keeps the split its file names.
    Release,
    /// 8:1:1, drawn with --split-seed.
    Resplit,
}

/// One session gathered by the first pass.
struct SessionScan {
    id: String,
    subject: Option<String>,
    lab: Option<String>,
    /// (bins, neurons)
    shape: (usize, usize),
    regions: Vec<String>,
    /// Where the shape and regions were first seen: (file, row).
    first: (usize, u64),
    trials: Vec<TrialRef>,
    choice: Vec<i8>,
    behaviour: Vec<Vec<Option<f32>>>, // [BEHAVIOUR.len()][trial]
    files: Vec<usize>,
}

/// Checks that `src` has every required column, and that present columns have usable types.
fn check_schema(src: &Source) -> Result<()> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| src.schema.index_of(c).is_err())
        .collect();
    if !missing.is_empty() {
        let present: Vec<&str> = src
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        return Err(input(
            &src.path,
            format!(
                "missing column{} {} (columns present: {})",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                present.join(", ")
            ),
        ));
    }
    for (name, expect) in REQUIRED.iter().chain(&OPTIONAL) {
        if let Ok(f) = src.schema.field_with_name(name)
            && !expect.accepts(f.data_type())
        {
            return Err(input(
                &src.path,
                format!(
                    "column {name} has type {}, expected {}",
                    f.data_type(),
                    expect.describe()
                ),
            ));
        }
    }
    Ok(())
}

fn col<'b>(batch: &'b RecordBatch, name: &str) -> Option<&'b dyn arrow_array::Array> {
    batch.column_by_name(name).map(|c| c.as_ref())
}

/// First pass: groups the rows of every file into sessions and checks their metadata.
fn scan(sources: &[Source]) -> Result<Vec<SessionScan>> {
    let mut sessions: Vec<SessionScan> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let meta: Vec<&str> = [SHAPE, EID, REGIONS, CHOICE, SUBJECT, LAB]
        .into_iter()
        .chain(BEHAVIOUR)
        .collect();
    let mut shape = Vec::new();
    let mut regions = Vec::new();
    for (fi, src) in sources.iter().enumerate() {
        src.for_each_batch(&meta, |unit, first_row, global, batch| {
            let need = |name: &str| {
                col(batch, name).ok_or_else(|| input(&src.path, format!("missing column {name}")))
            };
            let (c_shape, c_eid, c_regions, c_choice) =
                (need(SHAPE)?, need(EID)?, need(REGIONS)?, need(CHOICE)?);
            let c_subject = col(batch, SUBJECT);
            let c_lab = col(batch, LAB);
            let c_beh: Vec<_> = BEHAVIOUR.iter().map(|b| col(batch, b)).collect();
            for r in 0..batch.num_rows() {
                let file_row = global + r as u64;
                let bad = |what: &str, msg: String| {
                    input(&src.path, format!("row {file_row}: {what} {msg}"))
                };
                let eid = columns::string_at(c_eid, r)
                    .map_err(|m| bad(EID, m))?
                    .ok_or_else(|| bad(EID, "is null".into()))?
                    .to_string();
                // Ids become file names (SPEC §9).
                check_id("session id", &eid).map_err(|m| bad(EID, m))?;
                let at =
                    |msg: String| input(&src.path, format!("row {file_row} (eid {eid}): {msg}"));
                columns::int_list(c_shape, r, &mut shape)
                    .map_err(|m| at(format!("{SHAPE} {m}")))?;
                if shape.len() != 2 || shape.iter().any(|&v| v <= 0) {
                    return Err(at(format!(
                        "{SHAPE} is {shape:?}, expected [bins, neurons] with both positive"
                    )));
                }
                let sh = (shape[0] as usize, shape[1] as usize);
                columns::string_list(c_regions, r, &mut regions)
                    .map_err(|m| at(format!("{REGIONS} {m}")))?;
                if regions.len() != sh.1 {
                    return Err(at(format!(
                        "{REGIONS} has {} labels but {SHAPE} [{}, {}] has {} neurons",
                        regions.len(),
                        sh.0,
                        sh.1,
                        sh.1
                    )));
                }
                let choice = match columns::number_at(c_choice, r)
                    .map_err(|m| at(format!("{CHOICE} {m}")))?
                {
                    Some(v) if v == -1.0 || v == 0.0 || v == 1.0 => v as i8,
                    Some(v) => return Err(at(format!("{CHOICE} is {v}, expected -1, 0 or +1"))),
                    None => return Err(at(format!("{CHOICE} is null"))),
                };
                let text =
                    |c: Option<&dyn arrow_array::Array>, name: &str| -> Result<Option<String>> {
                        match c {
                            Some(c) => Ok(columns::string_at(c, r)
                                .map_err(|m| at(format!("{name} {m}")))?
                                .map(str::to_string)),
                            None => Ok(None),
                        }
                    };
                let subject = text(c_subject, SUBJECT)?;
                let lab = text(c_lab, LAB)?;
                for (name, v) in [(SUBJECT, &subject), (LAB, &lab)] {
                    if let Some(v) = v {
                        check_id(name, v).map_err(|m| at(format!("{name}: {m}")))?;
                    }
                }
                let k = match by_id.get(&eid) {
                    Some(&k) => k,
                    None => {
                        by_id.insert(eid.clone(), sessions.len());
                        sessions.push(SessionScan {
                            id: eid.clone(),
                            subject: subject.clone(),
                            lab: lab.clone(),
                            shape: sh,
                            regions: regions.clone(),
                            first: (fi, file_row),
                            trials: Vec::new(),
                            choice: Vec::new(),
                            behaviour: vec![Vec::new(); BEHAVIOUR.len()],
                            files: Vec::new(),
                        });
                        sessions.len() - 1
                    }
                };
                let s = &mut sessions[k];
                if s.shape != sh {
                    return Err(at(format!(
                        "{SHAPE} is [{}, {}] but earlier trials of this session ({} row {}) \
                         have [{}, {}]",
                        sh.0,
                        sh.1,
                        sources[s.first.0].path.display(),
                        s.first.1,
                        s.shape.0,
                        s.shape.1
                    )));
                }
                if s.regions != regions {
                    return Err(at(format!(
                        "{REGIONS} differ from those of earlier trials of this session ({} row {})",
                        sources[s.first.0].path.display(),
                        s.first.1
                    )));
                }
                if s.subject.is_none() {
                    s.subject = subject;
                }
                if s.lab.is_none() {
                    s.lab = lab;
                }
                for (b, c) in c_beh.iter().enumerate() {
                    let v = match c {
                        Some(c) => columns::number_at(*c, r)
                            .map_err(|m| at(format!("{} {m}", BEHAVIOUR[b])))?
                            .filter(|v| v.is_finite())
                            .map(|v| v as f32),
                        None => None,
                    };
                    s.behaviour[b].push(v);
                }
                s.choice.push(choice);
                s.trials.push(TrialRef {
                    file: fi,
                    unit,
                    row_in_unit: first_row + r,
                    file_row,
                });
                if s.files.last() != Some(&fi) {
                    s.files.push(fi);
                }
            }
            Ok(())
        })?;
    }
    Ok(sessions)
}

/// Reusable buffers of the CSR arrays of one trial.
#[derive(Default)]
struct Csr {
    data: Vec<i64>,
    indices: Vec<i64>,
    indptr: Vec<i64>,
    shape: Vec<i64>,
}

/// Expands a trial's CSR matrix into dense counts `out` ([bins, neurons], zeroed by the caller),
/// checking it against the session's shape. Duplicate entries of a cell add up (as scipy does).
fn densify(
    csr: &Csr,
    shape: (usize, usize),
    clip: bool,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let (rows, cols) = shape;
    if csr.shape != [rows as i64, cols as i64] {
        return Err(format!(
            "{SHAPE} is {:?}, but the session's trials are [{rows}, {cols}]",
            csr.shape
        ));
    }
    if csr.indptr.len() != rows + 1 {
        return Err(format!(
            "{INDPTR} has {} entries, expected rows + 1 = {} for shape [{rows}, {cols}]",
            csr.indptr.len(),
            rows + 1
        ));
    }
    let nnz = csr.data.len();
    if csr.indices.len() != nnz {
        return Err(format!(
            "{INDICES} has {} entries but {DATA} has {nnz}",
            csr.indices.len()
        ));
    }
    if csr.indptr[0] != 0 {
        return Err(format!("{INDPTR} starts at {}, expected 0", csr.indptr[0]));
    }
    if let Some(i) = csr.indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(format!(
            "{INDPTR} decreases at position {} ({} then {})",
            i + 1,
            csr.indptr[i],
            csr.indptr[i + 1]
        ));
    }
    if csr.indptr[rows] != nnz as i64 {
        return Err(format!(
            "{INDPTR} ends at {} but {DATA} has {nnz} entries",
            csr.indptr[rows]
        ));
    }
    for t in 0..rows {
        let row = &mut out[t * cols..(t + 1) * cols];
        for k in csr.indptr[t] as usize..csr.indptr[t + 1] as usize {
            let j = csr.indices[k];
            if j < 0 || j as usize >= cols {
                return Err(format!(
                    "{INDICES}[{k}] = {j} is outside 0..{cols} (bin {t})"
                ));
            }
            let v = csr.data[k];
            if v < 0 {
                return Err(format!("{DATA}[{k}] = {v} is negative"));
            }
            let sum = row[j as usize] as i64 + v;
            if sum > 255 && !clip {
                return Err(format!(
                    "count {sum} at bin {t}, neuron {j} exceeds 255 (pass --clip to saturate)"
                ));
            }
            row[j as usize] = sum.min(255) as u8;
        }
    }
    Ok(())
}

/// Second pass for one trial: reads its CSR arrays and expands them into `out`.
fn fill_trial(
    cache: &mut UnitCache,
    sources: &[Source],
    s: &SessionScan,
    trial: usize,
    clip: bool,
    csr: &mut Csr,
    out: &mut [u8],
) -> Result<()> {
    let tr = &s.trials[trial];
    let path = &sources[tr.file].path;
    let at = |msg: String| input(path, format!("row {} (eid {}): {msg}", tr.file_row, s.id));
    let chunk = cache.get(tr.file, tr.unit)?;
    let (batch, r) = chunk
        .locate(tr.row_in_unit)
        .ok_or_else(|| at("row vanished on re-reading the file".into()))?;
    for (name, buf) in [
        (DATA, &mut csr.data),
        (INDICES, &mut csr.indices),
        (INDPTR, &mut csr.indptr),
        (SHAPE, &mut csr.shape),
    ] {
        let c = col(batch, name).ok_or_else(|| at(format!("missing column {name}")))?;
        columns::int_list(c, r, buf).map_err(|m| at(format!("{name} {m}")))?;
    }
    densify(csr, s.shape, clip, out).map_err(at)
}

/// The release's split of session `s`: trial indices by the split of the file each came from.
fn release_split(args: &Args, splits: &[Option<SplitName>], s: &SessionScan) -> Split {
    let mut sp = Split {
        seed: args.split_seed,
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for (t, tr) in s.trials.iter().enumerate() {
        match splits.get(tr.file).copied().flatten() {
            Some(SplitName::Train) => sp.train.push(t as u32),
            Some(SplitName::Val) => sp.val.push(t as u32),
            Some(SplitName::Test) | None => sp.test.push(t as u32),
        }
    }
    sp
}

fn new_session(
    args: &Args,
    sources: &[Source],
    splits: &[Option<SplitName>],
    mode: SplitMode,
    s: &SessionScan,
) -> NewSession {
    let mut behaviour = Vec::new();
    for (b, vals) in s.behaviour.iter().enumerate() {
        let have = vals.iter().filter(|v| v.is_some()).count();
        if have == vals.len() {
            behaviour.push((
                BEHAVIOUR[b].to_string(),
                vals.iter().flatten().copied().collect(),
            ));
        } else if have > 0 {
            eprintln!(
                "warning: eid {}: {} is missing or NaN in {} of {} trials; not imported",
                s.id,
                BEHAVIOUR[b],
                vals.len() - have,
                vals.len()
            );
        }
    }
    let files: Vec<String> = s
        .files
        .iter()
        .map(|&f| sources[f].path.display().to_string())
        .collect();
    NewSession {
        id: s.id.clone(),
        subject: s.subject.clone().unwrap_or_else(|| "unknown".into()),
        lab: s.lab.clone().unwrap_or_else(|| "unknown".into()),
        animal: s.subject.clone(),
        n_trials: s.trials.len(),
        n_bins: s.shape.0,
        n_neurons: s.shape.1,
        bin_size_s: args.bin_size,
        onset_bin: (args.onset_bin < s.shape.0).then_some(args.onset_bin),
        regions: s.regions.clone(),
        choice: s.choice.clone(),
        behaviour,
        provenance: serde_json::json!({
            "importer": "ibl-hf",
            "files": files,
            "clip": args.clip,
            "split": match mode {
                SplitMode::Release => {
                    let of = |want: SplitName| -> Vec<String> {
                        s.files
                            .iter()
                            .filter(|&&f| splits.get(f).copied().flatten() == Some(want))
                            .map(|&f| sources[f].path.display().to_string())
                            .collect()
                    };
                    serde_json::json!({
                        "source": "release",
                        "train_files": of(SplitName::Train),
                        "val_files": of(SplitName::Val),
                        "test_files": of(SplitName::Test),
                    })
                }
                SplitMode::Resplit => serde_json::json!({
                    "source": "resplit",
                    "ratio": "8:1:1",
                    "seed": args.split_seed,
                }),
            },
        }),
    }
}

pub fn run(args: Args) -> Result<()> {
    if !(args.bin_size.is_finite() && args.bin_size > 0.0) {
        return Err(usage(format!(
            "--bin-size {}: need a positive number",
            args.bin_size
        )));
    }
    let files = source::discover(&args.paths)?;
    let sources: Vec<Source> = files
        .iter()
        .map(|(p, _)| Source::open(p))
        .collect::<Result<_>>()?;
    let splits: Vec<Option<SplitName>> = files.iter().map(|(_, s)| *s).collect();
    let mode = if args.resplit || splits.iter().all(|s| s.is_none()) {
        SplitMode::Resplit
    } else if let Some(k) = splits.iter().position(|s| s.is_none()) {
        let named = splits.iter().position(|s| s.is_some()).unwrap_or(0);
        return Err(usage(format!(
            "{} names no split (train/val/test) while {} does; keep the release's split by \
             giving only files that name one, or pass --resplit to split every session 8:1:1",
            files[k].0.display(),
            files[named].0.display()
        )));
    } else {
        SplitMode::Release
    };
    for s in &sources {
        check_schema(s)?;
    }
    let sessions = scan(&sources)?;
    if sessions.is_empty() {
        return Err(input(&args.paths[0], "holds no trials"));
    }
    let writer = DatasetWriter::open(&args.out, args.split_seed)?;
    let existing = writer.existing_ids();
    if let Some(s) = sessions.iter().find(|s| existing.contains(&s.id)) {
        return Err(input(
            &sources[s.first.0].path,
            format!(
                "eid {} is already in the dataset {}",
                s.id,
                args.out.display()
            ),
        ));
    }
    let mut cache = UnitCache::new(&sources, &SPIKE_COLUMNS);
    let mut csr = Csr::default();
    let mut trials = 0;
    for (k, s) in sessions.iter().enumerate() {
        let ns = new_session(&args, &sources, &splits, mode, s);
        let mut fill = |t: usize, out: &mut [u8]| {
            fill_trial(&mut cache, &sources, s, t, args.clip, &mut csr, out)
        };
        match mode {
            SplitMode::Release => {
                let split = release_split(&args, &splits, s);
                let empty: Vec<&str> = [
                    ("train", &split.train),
                    ("val", &split.val),
                    ("test", &split.test),
                ]
                .iter()
                .filter(|(_, v)| v.is_empty())
                .map(|(n, _)| *n)
                .collect();
                if !empty.is_empty() {
                    eprintln!(
                        "warning: eid {}: no {} trials in the files given (the release's split is \
                         kept; pass --resplit to split 8:1:1)",
                        s.id,
                        empty.join("/")
                    );
                }
                writer.add_session_ordered_with_split(k as u64, ns, split, &mut fill)?
            }
            SplitMode::Resplit => writer.add_session_ordered(k as u64, ns, &mut fill)?,
        }
        trials += s.trials.len();
    }
    writer.commit()?;
    println!(
        "imported {} sessions ({} trials) from {} files into {} ({})",
        sessions.len(),
        trials,
        sources.len(),
        args.out.display(),
        match mode {
            SplitMode::Release => "the release's train/val/test split kept",
            SplitMode::Resplit => "trials split 8:1:1",
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(data: &[i64], indices: &[i64], indptr: &[i64], shape: [i64; 2]) -> Csr {
        Csr {
            data: data.to_vec(),
            indices: indices.to_vec(),
            indptr: indptr.to_vec(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn densify_expands_and_sums_duplicates() {
        let c = csr(&[2, 1, 3, 4], &[1, 1, 0, 2], &[0, 2, 2, 4], [3, 3]);
        let mut out = vec![0u8; 9];
        densify(&c, (3, 3), false, &mut out).unwrap();
        assert_eq!(out, [0, 3, 0, 0, 0, 0, 3, 0, 4]);
    }

    #[test]
    fn densify_rejects_each_inconsistency() {
        let mut out = vec![0u8; 6];
        let cases = [
            (csr(&[1], &[0], &[0, 1], [2, 3]), "rows + 1"),
            (csr(&[1], &[3], &[0, 1, 1], [2, 3]), "outside 0..3"),
            (csr(&[1, 1], &[0, 1], &[0, 2, 1], [2, 3]), "decreases"),
            (csr(&[1, 1], &[0], &[0, 1, 1], [2, 3]), "INDICES"),
            (csr(&[1], &[0], &[0, 1, 2], [2, 3]), "ends at 2"),
            (csr(&[1], &[0], &[1, 1, 1], [2, 3]), "starts at 1"),
            (csr(&[-1], &[0], &[0, 1, 1], [2, 3]), "negative"),
            (csr(&[300], &[0], &[0, 1, 1], [2, 3]), "exceeds 255"),
            (
                csr(&[1], &[0], &[0, 1, 1], [3, 2]),
                "session's trials are [2, 3]",
            ),
        ];
        for (c, want) in cases {
            out.fill(0);
            let e = densify(&c, (2, 3), false, &mut out).unwrap_err();
            let want = want.replace("INDICES", INDICES);
            assert!(e.contains(&want), "{e:?} should mention {want:?}");
        }
    }

    #[test]
    fn clip_saturates() {
        let c = csr(&[300, 200, 100], &[0, 1, 1], &[0, 3], [1, 2]);
        let mut out = vec![0u8; 2];
        densify(&c, (1, 2), true, &mut out).unwrap();
        assert_eq!(out, [255, 255]);
    }
}

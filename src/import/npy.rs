//! `ndt import npy`: sessions saved with NumPy.
//!
//! A session is a `.npz` archive (stored or deflated members, as `np.savez` and
//! `np.savez_compressed` write them) or a folder, holding:
//! - `spikes.npy`   counts `[trials, T, N]`: any integer dtype, or floats holding integers; C or
//!   Fortran order; either byte order;
//! - `regions.npy`  optional, `N` strings (`U` or `S` dtype); default "unknown";
//! - `choice.npy`   optional, `trials` values in {-1, 0, +1} (NaN = 0 = unknown);
//! - `reward.npy`, `contrast.npy`, `block.npy`  optional numeric `[trials]` behaviour;
//! - `meta.json`    optional: `id`, `subject`, `lab`, `animal`, `bin_size_s`, `onset_bin`.
//!
//! Everything is checked before anything is written (a first pass over the counts), and all
//! sessions of one command go through one `DatasetWriter`, so a failure leaves the dataset as it was.

use crate::error::{Result, input, io_at, usage};
use crate::store::check_id;
use crate::store::npy::{DType, NpyArray, NpyHeader, parse_header};
use crate::store::writer::{DEFAULT_SPLIT_SEED, DatasetWriter, NewSession};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Names of the optional per-trial behaviour arrays read from a session.
pub const BEHAVIOUR_NAMES: [&str; 3] = ["reward", "contrast", "block"];
use crate::import::bin::{DEFAULT_BIN_SIZE_S, DEFAULT_MIN_TRIALS};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Session `.npz` files or folders holding spikes.npy [trials, T, N] (regions.npy,
    /// choice.npy, reward.npy, contrast.npy, block.npy and meta.json optional).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Dataset directory to create or add sessions to.
    #[arg(long, value_name = "DATASET")]
    pub out: PathBuf,
    /// Session id (one PATH only); default meta.json `id`, else the file or folder name.
    #[arg(long)]
    pub id: Option<String>,
    /// Subject (animal) name; default meta.json `subject`, else "unknown".
    #[arg(long)]
    pub subject: Option<String>,
    /// Lab name; default meta.json `lab`, else "unknown".
    #[arg(long)]
    pub lab: Option<String>,
    /// Clip counts above 255 to 255 instead of refusing them (the store keeps uint8 counts).
    #[arg(long)]
    pub clip: bool,
    /// Seed of the 8:1:1 train/val/test split of each new session's trials.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// Bin size in seconds; default meta.json `bin_size_s`, else 0.02.
    #[arg(long, value_name = "S")]
    pub bin_size: Option<f64>,
    /// Stimulus-onset bin; default meta.json `onset_bin`, else none.
    #[arg(long, value_name = "K")]
    pub onset_bin: Option<usize>,
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
    /// Number of counts that were above 255 and clipped (0 unless `--clip`).
    pub clipped: u64,
}

pub fn run(args: Args) -> Result<()> {
    let done = import(&args)?;
    for s in &done {
        println!(
            "imported `{}` from {}: {} trials x {} bins x {} neurons{}",
            s.id,
            s.source.display(),
            s.shape[0],
            s.shape[1],
            s.shape[2],
            if s.clipped > 0 {
                format!(" ({} counts clipped to 255)", s.clipped)
            } else {
                String::new()
            }
        );
    }
    println!("dataset: {}", args.out.display());
    Ok(())
}

/// Imports every PATH of `args` into `args.out` as one transaction.
pub fn import(args: &Args) -> Result<Vec<Imported>> {
    if args.id.is_some() && args.paths.len() > 1 {
        return Err(usage("--id names one session; give one PATH with it"));
    }
    // Ids become file names (SPEC §9): the flags are checked before any file is read.
    for (flag, what, v) in [
        ("id", "session id", &args.id),
        ("subject", "subject", &args.subject),
        ("lab", "lab", &args.lab),
    ] {
        if let Some(v) = v {
            check_id(what, v).map_err(|m| usage(format!("--{flag}: {m}")))?;
        }
    }
    if let Some(b) = args.bin_size
        && !(b.is_finite() && b > 0.0)
    {
        return Err(usage(format!(
            "--bin-size {b}: must be a positive number of seconds"
        )));
    }
    // Read and check every source before touching the dataset.
    let mut sources = Vec::with_capacity(args.paths.len());
    for p in &args.paths {
        let src = Source::open(p)?;
        let session = src.session(args)?;
        sources.push((src, session));
    }
    let writer = DatasetWriter::open(&args.out, args.split_seed)?;
    let mut done = Vec::new();
    for (src, (new, counts)) in sources {
        let shape = [new.n_trials, new.n_bins, new.n_neurons];
        let id = new.id.clone();
        let clipped = counts.clipped;
        writer.add_session(new, &mut |t, out| {
            counts.fill_trial(t, out, args.clip).map(|_| ())
        })?;
        done.push(Imported {
            id,
            source: src.root.clone(),
            shape,
            clipped,
        });
    }
    writer.commit()?;
    Ok(done)
}

/// The bytes of one array of a session: mapped from a file or decompressed from an archive.
enum Bytes {
    Map(memmap2::Mmap),
    Owned(std::sync::Arc<Vec<u8>>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v.as_slice(),
        }
    }
}

/// One session's source: a folder or an `.npz` archive, with its members loaded on demand.
struct Source {
    root: PathBuf,
    kind: Kind,
}

enum Kind {
    Folder,
    /// The archive, whose members are inflated one at a time when asked for, and the name of
    /// each member (with the `.npy` suffix) with its index in the archive.
    Npz(
        std::sync::Mutex<zip::ZipArchive<std::fs::File>>,
        Vec<(String, usize)>,
    ),
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(io_at(path))?;
        if meta.is_dir() {
            return Ok(Source {
                root: path.to_path_buf(),
                kind: Kind::Folder,
            });
        }
        let (file, _) = crate::fsutil::open_regular(path)?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| {
            input(
                path,
                format!("not a session: expected an .npz (zip) archive or a folder ({e})"),
            )
        })?;
        // Only the names are read here (from the central directory); members are inflated
        // when the session asks for them, so members nobody needs are never decompressed.
        let mut names = Vec::new();
        for i in 0..zip.len() {
            let f = zip
                .by_index_raw(i)
                .map_err(|e| input(path, format!("corrupt .npz archive: {e}")))?;
            if f.is_dir() {
                continue;
            }
            let name = f
                .name()
                .map_err(|e| input(path, format!("corrupt .npz archive: {e}")))?
                .to_string();
            let name = if name.ends_with(".npy") || name.ends_with(".json") {
                name
            } else {
                format!("{name}.npy")
            };
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, i));
            }
        }
        Ok(Source {
            root: path.to_path_buf(),
            kind: Kind::Npz(std::sync::Mutex::new(zip), names),
        })
    }

    /// Path naming member `name` in messages: `folder/name` or `archive.npz/name`.
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The bytes of member `name`, or None if the session has no such member. A folder's
    /// member is mapped (a regular file only); an archive's is inflated as a stream into memory,
    /// never past the uncompressed size its header declares, which must be at most `max` and
    /// fit in the memory available.
    fn member(&self, name: &str, max: u64) -> Result<Option<Bytes>> {
        let p = self.path(name);
        match &self.kind {
            Kind::Folder => {
                if !p.exists() {
                    return Ok(None);
                }
                let (file, len) = crate::fsutil::open_regular(&p)?;
                if len > max {
                    return Err(input(
                        &p,
                        format!("{len} bytes, more than the {max} accepted"),
                    ));
                }
                if len == 0 {
                    return Ok(Some(Bytes::Owned(Default::default())));
                }
                // SAFETY: read-only map of an input file for the duration of the import; a
                // file changed by another program meanwhile is outside what we can defend.
                let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_at(&p))?;
                Ok(Some(Bytes::Map(map)))
            }
            Kind::Npz(zip, names) => {
                let Some(&(_, i)) = names.iter().find(|(n, _)| n == name) else {
                    return Ok(None);
                };
                let mut zip = zip
                    .lock()
                    .map_err(|_| crate::error::internal("npz archive lock poisoned"))?;
                let corrupt = |e: &dyn std::fmt::Display| {
                    input(&p, format!("corrupt .npz member (cannot decompress: {e})"))
                };
                let f = zip.by_index(i).map_err(|e| corrupt(&e))?;
                let declared = f.size();
                if declared > max {
                    return Err(input(
                        &p,
                        format!(
                            "member declares {declared} bytes uncompressed, more than the {max} \
                             accepted"
                        ),
                    ));
                }
                if let Some((avail, from)) = crate::fsutil::available_memory()
                    && declared > avail
                {
                    return Err(input(
                        &p,
                        format!(
                            "member declares {declared} bytes uncompressed, more than the \
                             {avail} bytes of memory available ({from})"
                        ),
                    ));
                }
                // Grown as it inflates (the declared size only caps it), so a lying header
                // costs nothing up front.
                let mut buf = Vec::with_capacity(declared.min(1 << 26) as usize);
                f.take(declared.saturating_add(1))
                    .read_to_end(&mut buf)
                    .map_err(|e| corrupt(&e))?;
                if buf.len() as u64 != declared {
                    return Err(input(
                        &p,
                        format!(
                            "corrupt .npz member: inflates to {}{} bytes, its header declares \
                             {declared}",
                            if buf.len() as u64 > declared {
                                "more than "
                            } else {
                                ""
                            },
                            buf.len()
                        ),
                    ));
                }
                Ok(Some(Bytes::Owned(std::sync::Arc::new(buf))))
            }
        }
    }

    /// A small array member, read and validated.
    fn array(&self, name: &str) -> Result<Option<NpyArray>> {
        match self.member(name, u64::MAX)? {
            None => Ok(None),
            Some(b) => NpyArray::from_bytes(b.to_vec(), &self.path(name)).map(Some),
        }
    }

    /// Reads everything, checks it, and returns the new session plus the counts to stream.
    fn session(&self, args: &Args) -> Result<(NewSession, Counts)> {
        let spikes_path = self.path("spikes.npy");
        let bytes = self.member("spikes.npy", u64::MAX)?.ok_or_else(|| {
            input(
                &self.root,
                "no spikes.npy: a session needs counts [trials, T, N] in spikes.npy",
            )
        })?;
        let header = parse_header(&bytes, &spikes_path)?;
        header.check_len(bytes.len(), &spikes_path)?;
        if !header.dtype.is_numeric() {
            return Err(input(
                &spikes_path,
                format!(
                    "counts must be integers (or floats holding integers), found dtype {}",
                    header.dtype.descr(header.little_endian)
                ),
            ));
        }
        if header.shape.len() != 3 {
            return Err(input(
                &spikes_path,
                format!(
                    "counts must have rank 3 [trials, T, N], found rank {} (shape {:?})",
                    header.shape.len(),
                    header.shape
                ),
            ));
        }
        let [n_trials, n_bins, n_neurons] = [header.shape[0], header.shape[1], header.shape[2]];
        if n_trials == 0 || n_bins == 0 || n_neurons == 0 {
            return Err(input(
                &spikes_path,
                format!("empty session: shape {:?}", header.shape),
            ));
        }
        if n_trials < args.min_trials {
            return Err(input(
                &spikes_path,
                format!(
                    "{n_trials} trials, fewer than a batch ({}); pass --min-trials to accept \
                     smaller sessions",
                    args.min_trials
                ),
            ));
        }
        let mut counts = Counts {
            path: spikes_path.clone(),
            header: header.clone(),
            bytes,
            clipped: 0,
        };
        counts.clipped = counts.check_all(args.clip)?;

        let meta = self.meta()?;
        let meta_path = self.path("meta.json");
        let meta_str = |key: &str| -> Result<Option<String>> {
            match meta.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(input(&meta_path, format!("`{key}` must be a string"))),
            }
        };
        let id = match (&args.id, meta_str("id")?) {
            (Some(id), _) => id.clone(),
            (None, Some(id)) => {
                check_id("session id", &id)
                    .map_err(|m| input(&meta_path, format!("`id`: {m}; fix it or pass --id")))?;
                id
            }
            (None, None) => {
                let id = self.default_id();
                check_id("session id", &id).map_err(|m| {
                    input(
                        &self.root,
                        format!("{m}: the default id comes from the file name; pass --id"),
                    )
                })?;
                id
            }
        };
        let name_field = |what: &str, flag: &Option<String>| -> Result<String> {
            if let Some(v) = flag {
                return Ok(v.clone());
            }
            match meta_str(what)? {
                Some(v) => {
                    check_id(what, &v).map_err(|m| input(&meta_path, format!("`{what}`: {m}")))?;
                    Ok(v)
                }
                None => Ok("unknown".into()),
            }
        };
        let subject = name_field("subject", &args.subject)?;
        let lab = name_field("lab", &args.lab)?;
        let animal = meta_str("animal")?;
        let bin_size_s = match args.bin_size {
            Some(b) => b,
            None => match meta.get("bin_size_s") {
                None | Some(Value::Null) => DEFAULT_BIN_SIZE_S,
                Some(v) => v
                    .as_f64()
                    .filter(|b| b.is_finite() && *b > 0.0)
                    .ok_or_else(|| input(&meta_path, "`bin_size_s` must be a positive number"))?,
            },
        };
        let onset_bin = match args.onset_bin {
            Some(k) => Some(k),
            None => match meta.get("onset_bin") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    input(&meta_path, "`onset_bin` must be a non-negative integer")
                })? as usize),
            },
        };
        if let Some(k) = onset_bin
            && k >= n_bins
        {
            return Err(input(
                &spikes_path,
                format!("onset bin {k} is outside the {n_bins} bins of the session"),
            ));
        }

        let regions = match self.array("regions.npy")? {
            None => vec!["unknown".to_string(); n_neurons],
            Some(a) => {
                let p = self.path("regions.npy");
                if a.shape().len() != 1 {
                    return Err(input(
                        &p,
                        format!("regions must be 1-d [N], found shape {:?}", a.shape()),
                    ));
                }
                let r = a.to_strings(&p)?;
                if r.len() != n_neurons {
                    return Err(input(
                        &p,
                        format!(
                            "{} region labels for {n_neurons} neurons (spikes.npy has N = {n_neurons})",
                            r.len()
                        ),
                    ));
                }
                r
            }
        };

        let choice = match self.array("choice.npy")? {
            None => vec![0i8; n_trials],
            Some(a) => {
                let p = self.path("choice.npy");
                let v = per_trial(&a, &p, n_trials)?;
                let mut c = Vec::with_capacity(n_trials);
                for (k, x) in v.into_iter().enumerate() {
                    c.push(match x {
                        _ if x.is_nan() => 0,
                        -1.0 => -1,
                        0.0 => 0,
                        1.0 => 1,
                        _ => {
                            return Err(input(
                                &p,
                                format!("choice {x} of trial {k} is not -1, +1, 0 or NaN"),
                            ));
                        }
                    });
                }
                c
            }
        };

        let mut behaviour = Vec::new();
        for name in BEHAVIOUR_NAMES {
            let file = format!("{name}.npy");
            if let Some(a) = self.array(&file)? {
                let v = per_trial(&a, &self.path(&file), n_trials)?;
                behaviour.push((name.to_string(), v.into_iter().map(|x| x as f32).collect()));
            }
        }

        let provenance = json!({
            "importer": "npy",
            "source": absolute(&self.root).display().to_string(),
            "source_dtype": header.dtype.descr(header.little_endian),
            "source_fortran_order": header.fortran_order,
            "clip": args.clip,
            "clipped_counts": counts.clipped,
            "meta": Value::Object(meta),
        });
        let new = NewSession {
            id,
            subject,
            lab,
            animal,
            n_trials,
            n_bins,
            n_neurons,
            bin_size_s,
            onset_bin,
            regions,
            choice,
            behaviour,
            provenance,
        };
        Ok((new, counts))
    }

    /// `meta.json` as a JSON object (empty if absent).
    fn meta(&self) -> Result<serde_json::Map<String, Value>> {
        let p = self.path("meta.json");
        let Some(b) = self.member("meta.json", crate::fsutil::MAX_TEXT_BYTES)? else {
            return Ok(serde_json::Map::new());
        };
        match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(input(&p, "meta.json must hold a JSON object")),
            Err(e) => Err(input(&p, format!("not valid JSON: {e}"))),
        }
    }

    /// The file stem of an archive or the name of a folder.
    fn default_id(&self) -> String {
        let name: Cow<str> = match &self.kind {
            Kind::Folder => absolute(&self.root)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned().into())
                .unwrap_or_default(),
            Kind::Npz(..) => self
                .root
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned().into())
                .unwrap_or_default(),
        };
        name.into_owned()
    }
}

/// A 1-d numeric per-trial array as f64, its length checked against the trial count.
fn per_trial(a: &NpyArray, path: &Path, n_trials: usize) -> Result<Vec<f64>> {
    if a.shape().len() != 1 {
        return Err(input(
            path,
            format!(
                "expected a 1-d per-trial array, found shape {:?}",
                a.shape()
            ),
        ));
    }
    if a.shape()[0] != n_trials {
        return Err(input(
            path,
            format!(
                "{} values for {n_trials} trials (spikes.npy has {n_trials} trials)",
                a.shape()[0]
            ),
        ));
    }
    a.to_f64(path)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The counts array of a session, converted trial by trial to uint8.
struct Counts {
    path: PathBuf,
    header: NpyHeader,
    bytes: Bytes,
    clipped: u64,
}

impl Counts {
    /// Checks every count; returns how many exceed 255 (an error unless `clip`).
    fn check_all(&self, clip: bool) -> Result<u64> {
        let [_, t, n] = [
            self.header.shape[0],
            self.header.shape[1],
            self.header.shape[2],
        ];
        let mut buf = vec![0u8; t * n];
        let mut clipped = 0;
        for trial in 0..self.header.shape[0] {
            clipped += self.fill_trial(trial, &mut buf, clip)?;
        }
        Ok(clipped)
    }

    /// Writes trial `trial` as uint8 `[T * N]` into `out`; returns the number of clipped counts.
    fn fill_trial(&self, trial: usize, out: &mut [u8], clip: bool) -> Result<u64> {
        let h = &self.header;
        let (n_trials, t, n) = (h.shape[0], h.shape[1], h.shape[2]);
        let data = &self.bytes[h.data_offset..];
        // Fast path: uint8 in C order is already the store's layout.
        if h.dtype == DType::U8 && !h.fortran_order {
            out.copy_from_slice(&data[trial * t * n..(trial + 1) * t * n]);
            return Ok(0);
        }
        let mut clipped = 0;
        for b in 0..t {
            for j in 0..n {
                // Storage index of element (trial, b, j).
                let i = if h.fortran_order {
                    trial + n_trials * (b + t * j)
                } else {
                    (trial * t + b) * n + j
                };
                let v = crate::store::npy::decode(h.dtype, h.little_endian, data, i);
                let at = || format!("trial {trial}, bin {b}, neuron {j}");
                let c = if v.is_nan() {
                    return Err(input(&self.path, format!("NaN count at {}", at())));
                } else if v < 0.0 {
                    return Err(input(&self.path, format!("negative count {v} at {}", at())));
                } else if v.is_infinite() || v.fract() != 0.0 {
                    return Err(input(
                        &self.path,
                        format!("non-integral count {v} at {}", at()),
                    ));
                } else if v > 255.0 {
                    if !clip {
                        return Err(input(
                            &self.path,
                            format!(
                                "count {v} at {} exceeds 255 (counts are stored as uint8); \
                                 pass --clip to clip counts to 255",
                                at()
                            ),
                        ));
                    }
                    clipped += 1;
                    255
                } else {
                    v as u8
                };
                out[b * n + j] = c;
            }
        }
        Ok(clipped)
    }
}

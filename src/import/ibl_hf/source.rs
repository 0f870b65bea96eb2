//! The files of an IBL HuggingFace release: snappy parquet shards and the Arrow IPC files that
//! `datasets.save_to_disk` writes (stream format; the IPC file format is read too).
//!
//! Rows are addressed by `(unit, row in unit)`, where a unit is a parquet row group or an IPC
//! record batch, so that the second pass can load only the units holding one session's trials.

use crate::error::{Result, input, io_at};
use crate::store::SplitName;
use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Container format of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Parquet,
    IpcStream,
    IpcFile,
}

/// One input file and its schema.
pub struct Source {
    pub path: PathBuf,
    pub kind: Kind,
    pub schema: SchemaRef,
    /// Parquet: first global row of each row group (plus the total at the end).
    rg_starts: Vec<u64>,
}

/// Prefix of decoding errors (a record batch or column chunk that cannot be read).
const DECODE: &str = "cannot decode (the file is truncated or corrupt)";

/// Extensions collected from folders.
const EXTENSIONS: [&str; 2] = ["parquet", "arrow"];

/// The files named by `paths`: files as given, folders searched recursively for `*.parquet`
/// and `*.arrow` (sorted by path). Each file appears once, with the split it names (see
/// [`split_of`]).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Option<SplitName>)>> {
    let mut out: Vec<(PathBuf, Option<SplitName>)> = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io_at(p))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            if found.is_empty() {
                return Err(input(p, "holds no .parquet or .arrow files"));
            }
            out.extend(found.into_iter().map(|f| {
                let split = split_of(&f, p);
                (f, split)
            }));
        } else {
            let split = split_of(p, p.parent().unwrap_or(Path::new("")));
            out.push((p.clone(), split));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(p, _)| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    Ok(out)
}

/// The split a release file names: the start of its file name (HuggingFace shards
/// `train-00000-of-00002.parquet`, `validation-…`, `val-…`, `test-…`), else the nearest folder
/// between it and `given` (the folder it was found in, itself included) named `train`, `val`,
/// `validation` or `test` (the folders of a `save_to_disk` DatasetDict).
pub fn split_of(file: &Path, given: &Path) -> Option<SplitName> {
    let name = |s: &str| match s {
        "train" => Some(SplitName::Train),
        "val" | "validation" => Some(SplitName::Val),
        "test" => Some(SplitName::Test),
        _ => None,
    };
    let stem = file.file_stem()?.to_str()?;
    let head = stem.split(['-', '.']).next().unwrap_or(stem);
    if let Some(s) = name(head) {
        return Some(s);
    }
    let rel = file.parent()?.strip_prefix(given).ok()?;
    let mut folders: Vec<&str> = given
        .file_name()
        .and_then(|n| n.to_str())
        .into_iter()
        .collect();
    folders.extend(rel.components().filter_map(|c| c.as_os_str().to_str()));
    folders.iter().rev().find_map(|f| name(f))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let path = e.map_err(io_at(dir))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| EXTENSIONS.contains(&x))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn arrow_err(path: &Path, what: &str) -> impl Fn(arrow_schema::ArrowError) -> crate::Error {
    let p = path.to_path_buf();
    let what = what.to_string();
    move |e| input(&p, format!("{what}: {e}"))
}

fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> crate::Error {
    let p = path.to_path_buf();
    move |e| input(&p, format!("cannot read as parquet: {e}"))
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(io_at(path))
}

impl Source {
    /// Opens `path`, recognising the format by its first bytes, and reads its schema.
    pub fn open(path: &Path) -> Result<Source> {
        let mut head = [0u8; 8];
        let n = {
            let mut f = open_file(path)?;
            let mut n = 0;
            while n < head.len() {
                let k = f.read(&mut head[n..]).map_err(io_at(path))?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            n
        };
        let kind = if n >= 4 && &head[..4] == b"PAR1" {
            Kind::Parquet
        } else if n >= 6 && &head[..6] == b"ARROW1" {
            Kind::IpcFile
        } else if n >= 8 {
            // An IPC stream starts with a message length (after a 0xFFFFFFFF continuation
            // marker in the current format); StreamReader reports anything else.
            Kind::IpcStream
        } else {
            return Err(input(
                path,
                "is neither a parquet file nor an Arrow IPC file (too short)",
            ));
        };
        let (schema, rg_starts) = match kind {
            Kind::Parquet => {
                let b = ParquetRecordBatchReaderBuilder::try_new(open_file(path)?)
                    .map_err(parquet_err(path))?;
                let mut starts = vec![0u64];
                for rg in b.metadata().row_groups() {
                    let last = *starts.last().unwrap_or(&0);
                    starts.push(last + rg.num_rows().max(0) as u64);
                }
                (b.schema().clone(), starts)
            }
            Kind::IpcFile => {
                let r = FileReader::try_new_buffered(open_file(path)?, None)
                    .map_err(arrow_err(path, "cannot read as an Arrow IPC file"))?;
                (r.schema(), Vec::new())
            }
            Kind::IpcStream => {
                let r = StreamReader::try_new_buffered(open_file(path)?, None).map_err(
                    arrow_err(path, "is neither parquet nor an Arrow IPC stream"),
                )?;
                (r.schema(), Vec::new())
            }
        };
        Ok(Source {
            path: path.to_path_buf(),
            kind,
            schema,
            rg_starts,
        })
    }

    fn indices(&self, columns: &[&str]) -> Vec<usize> {
        columns
            .iter()
            .filter_map(|c| self.schema.index_of(c).ok())
            .collect()
    }

    /// Calls `f(unit, first row of the batch within its unit, global row of that row, batch)`
    /// for every batch of the file, reading only `columns` (those present).
    pub fn for_each_batch(
        &self,
        columns: &[&str],
        mut f: impl FnMut(usize, usize, u64, &RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let idx = self.indices(columns);
        match self.kind {
            Kind::Parquet => {
                let b = ParquetRecordBatchReaderBuilder::try_new(open_file(&self.path)?)
                    .map_err(parquet_err(&self.path))?;
                let mask = ProjectionMask::roots(b.parquet_schema(), idx);
                let reader = b
                    .with_projection(mask)
                    .build()
                    .map_err(parquet_err(&self.path))?;
                let mut global = 0u64;
                for batch in reader {
                    let batch = batch.map_err(arrow_err(&self.path, DECODE))?;
                    // A batch may cross row groups: split it at their boundaries.
                    let mut start = 0usize;
                    while start < batch.num_rows() {
                        let g = global + start as u64;
                        let unit = self.rg_starts.partition_point(|&s| s <= g) - 1;
                        let unit_end = self.rg_starts[unit + 1];
                        let take = ((unit_end - g) as usize).min(batch.num_rows() - start);
                        let part = batch.slice(start, take);
                        f(unit, (g - self.rg_starts[unit]) as usize, g, &part)?;
                        start += take;
                    }
                    global += batch.num_rows() as u64;
                }
            }
            Kind::IpcStream | Kind::IpcFile => {
                let mut global = 0u64;
                let mut reader = self.ipc_reader(Some(idx))?;
                let mut unit = 0usize;
                while let Some(batch) = reader.next_batch(&self.path)? {
                    f(unit, 0, global, &batch)?;
                    global += batch.num_rows() as u64;
                    unit += 1;
                }
            }
        }
        Ok(())
    }

    fn ipc_reader(&self, projection: Option<Vec<usize>>) -> Result<Ipc> {
        Ok(match self.kind {
            Kind::IpcFile => Ipc::File(
                FileReader::try_new_buffered(open_file(&self.path)?, projection)
                    .map_err(arrow_err(&self.path, "cannot read as an Arrow IPC file"))?,
            ),
            _ => Ipc::Stream(
                StreamReader::try_new_buffered(open_file(&self.path)?, projection)
                    .map_err(arrow_err(&self.path, "cannot read as an Arrow IPC stream"))?,
            ),
        })
    }
}

enum Ipc {
    Stream(StreamReader<BufReader<File>>),
    File(FileReader<BufReader<File>>),
}

impl Ipc {
    fn next_batch(&mut self, path: &Path) -> Result<Option<RecordBatch>> {
        let next = match self {
            Ipc::Stream(r) => r.next(),
            Ipc::File(r) => r.next(),
        };
        next.transpose().map_err(arrow_err(path, DECODE))
    }
}

/// One unit's rows, possibly in several batches.
pub struct Chunk(Vec<RecordBatch>);

impl Chunk {
    /// The batch holding row `row` of the unit and the row's index in it.
    pub fn locate(&self, mut row: usize) -> Option<(&RecordBatch, usize)> {
        for b in &self.0 {
            if row < b.num_rows() {
                return Some((b, row));
            }
            row -= b.num_rows();
        }
        None
    }
}

/// Loads units on demand for the second pass, keeping the last unit and an open IPC reader so
/// that reading a file's units in order reads it once.
pub struct UnitCache<'a> {
    sources: &'a [Source],
    columns: Vec<&'static str>,
    current: Option<(usize, usize, Chunk)>,
    ipc: Option<(usize, usize, Ipc)>,
}

impl<'a> UnitCache<'a> {
    pub fn new(sources: &'a [Source], columns: &[&'static str]) -> UnitCache<'a> {
        UnitCache {
            sources,
            columns: columns.to_vec(),
            current: None,
            ipc: None,
        }
    }

    /// The rows of unit `unit` of file `file`.
    pub fn get(&mut self, file: usize, unit: usize) -> Result<&Chunk> {
        let hit = matches!(&self.current, Some((f, u, _)) if *f == file && *u == unit);
        if !hit {
            let chunk = self.load(file, unit)?;
            self.current = Some((file, unit, chunk));
        }
        match &self.current {
            Some((_, _, c)) => Ok(c),
            None => Err(crate::error::internal("unit cache is empty after a load")),
        }
    }

    fn load(&mut self, file: usize, unit: usize) -> Result<Chunk> {
        let src = &self.sources[file];
        let idx = src.indices(&self.columns);
        match src.kind {
            Kind::Parquet => {
                let b = ParquetRecordBatchReaderBuilder::try_new(open_file(&src.path)?)
                    .map_err(parquet_err(&src.path))?;
                let rows = (src.rg_starts[unit + 1] - src.rg_starts[unit]) as usize;
                let mask = ProjectionMask::roots(b.parquet_schema(), idx);
                let reader = b
                    .with_projection(mask)
                    .with_row_groups(vec![unit])
                    .with_batch_size(rows.clamp(1, 1 << 16))
                    .build()
                    .map_err(parquet_err(&src.path))?;
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(arrow_err(&src.path, DECODE))?;
                Ok(Chunk(batches))
            }
            Kind::IpcStream | Kind::IpcFile => {
                let reuse = matches!(&self.ipc, Some((f, next, _)) if *f == file && *next <= unit);
                if !reuse {
                    self.ipc = Some((file, 0, src.ipc_reader(Some(idx))?));
                }
                let Some((_, next, reader)) = self.ipc.as_mut() else {
                    return Err(crate::error::internal("ipc reader missing"));
                };
                if let Ipc::File(r) = reader {
                    r.set_index(unit)
                        .map_err(arrow_err(&src.path, "cannot seek to record batch"))?;
                    *next = unit;
                }
                loop {
                    let batch = reader.next_batch(&src.path)?.ok_or_else(|| {
                        input(
                            &src.path,
                            format!("record batch {unit} vanished on re-reading"),
                        )
                    })?;
                    *next += 1;
                    if *next == unit + 1 {
                        return Ok(Chunk(vec![batch]));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_named_by_files_and_folders() {
        let s = |f: &str, g: &str| split_of(Path::new(f), Path::new(g));
        assert_eq!(
            s("d/train-00000-of-00002.parquet", "d"),
            Some(SplitName::Train)
        );
        assert_eq!(
            s("d/validation-00000-of-00001.parquet", "d"),
            Some(SplitName::Val)
        );
        assert_eq!(s("d/val-00000-of-00001.parquet", "d"), Some(SplitName::Val));
        assert_eq!(
            s("d/data/test-00000-of-00001.parquet", "d"),
            Some(SplitName::Test)
        );
        assert_eq!(
            s("saved/train/data-00000-of-00001.arrow", "saved"),
            Some(SplitName::Train)
        );
        assert_eq!(
            s("saved/test/data-00000-of-00001.arrow", "saved/test"),
            Some(SplitName::Test)
        );
        assert_eq!(s("x/data-00000-of-00001.arrow", "x"), None);
        assert_eq!(s("x/trainer-0.parquet", "x"), None);
        // Folders above the PATH given do not count.
        assert_eq!(s("/test/x/data-0.arrow", "/test/x"), None);
    }
}

//! The few HDF5 reads the NWB importer needs, over the `hdf5-reader` crate: 1-d numeric
//! columns converted to `f64`/`i64`, string columns and scalars, each checked before it is read.
//!
//! Every read is bounded by the file: a dataset stored without filters cannot decode to more
//! bytes than the file holds, and a filtered (chunked) one to more than `MAX_DEFLATE_RATIO` times
//! that, so a corrupt extent is refused before any buffer is sized by it. Errors name the file
//! and the dataset.

use crate::error::{Error, Result, input, io_at};
use hdf5_reader::{Datatype, Hdf5File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Deflate's largest expansion (about 1032:1, zlib technical notes): no gzip chunk can decode
/// to more than this many times its stored size.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// The 8-byte signature every HDF5 file starts with.
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// An open HDF5 file with its path and length.
pub struct H5 {
    file: Hdf5File,
    path: PathBuf,
    len: u64,
}

impl H5 {
    /// Opens `path`, refusing what is not HDF5 or is shorter than its superblock says.
    pub fn open(path: &Path) -> Result<H5> {
        // A regular file (not a FIFO, a device or a directory), opened without blocking.
        let (mut f, len) = crate::fsutil::open_regular(path)?;
        let mut head = [0u8; 8];
        let got = f.read(&mut head).map_err(io_at(path))?;
        // h5py writes the signature at offset 0 (a user block would move it; NWB files have none).
        if got < 8 || head != SIGNATURE {
            return Err(input(
                path,
                "not an HDF5 file (no HDF5 signature at the start); an NWB file is HDF5",
            ));
        }
        let limit = usize::try_from(len.saturating_mul(MAX_DEFLATE_RATIO)).unwrap_or(usize::MAX);
        let opts = OpenOptions::default().with_max_read_bytes(limit);
        let file = Hdf5File::open_with_options(path, opts)
            .map_err(|e| input(path, format!("cannot read the HDF5 superblock: {e}")))?;
        let eof = file.superblock().eof_address;
        if eof > len {
            return Err(input(
                path,
                format!(
                    "truncated: the HDF5 superblock gives the file {eof} bytes, it has {len} \
                     (an interrupted download or copy?)"
                ),
            ));
        }
        Ok(H5 {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        input(&self.path, format!("{what}: {e}"))
    }

    /// Names of the members of group `group` (datasets and groups), or None if no such group.
    pub fn members(&self, group: &str) -> Result<Option<Vec<String>>> {
        let Some(g) = self.group(group)? else {
            return Ok(None);
        };
        let (groups, datasets) = g.member_names().map_err(|e| self.err(group, e))?;
        let mut all = groups;
        all.extend(datasets);
        all.sort();
        Ok(Some(all))
    }

    fn group(&self, path: &str) -> Result<Option<hdf5_reader::group::Group>> {
        let mut g = self.file.root_group().map_err(|e| self.err("/", e))?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let (groups, _) = g.member_names().map_err(|e| self.err(path, e))?;
            if !groups.iter().any(|n| n == part) {
                return Ok(None);
            }
            g = g.group(part).map_err(|e| self.err(path, e))?;
        }
        Ok(Some(g))
    }

    /// Whether `path` names a dataset.
    pub fn has_dataset(&self, path: &str) -> Result<bool> {
        let (parent, name) = split(path);
        let Some(g) = self.group(parent)? else {
            return Ok(false);
        };
        let (_, datasets) = g.member_names().map_err(|e| self.err(path, e))?;
        Ok(datasets.iter().any(|n| n == name))
    }

    /// Dataset `path`, checked to be 1-d (or a scalar when `scalar`) and to fit the file.
    fn dataset(&self, path: &str, scalar: bool) -> Result<hdf5_reader::Dataset> {
        if !self.has_dataset(path)? {
            return Err(input(&self.path, format!("no dataset {path}")));
        }
        let ds = self.file.dataset(path).map_err(|e| self.err(path, e))?;
        let shape = ds.shape().to_vec();
        let ok_rank = if scalar {
            shape.is_empty() || shape == [1]
        } else {
            shape.len() == 1
        };
        if !ok_rank {
            return Err(input(
                &self.path,
                format!(
                    "{path} has shape {shape:?}, expected {}",
                    if scalar { "a scalar" } else { "a 1-d column" }
                ),
            ));
        }
        let n: u64 = shape.iter().product();
        let elem = ds.raw_element_size().map_err(|e| self.err(path, e))? as u64;
        let bound = if ds.chunks().is_some() {
            self.len.saturating_mul(MAX_DEFLATE_RATIO)
        } else {
            self.len
        };
        if n.saturating_mul(elem.max(1)) > bound {
            return Err(input(
                &self.path,
                format!(
                    "{path}: {n} elements of {elem} bytes cannot be stored in a file of {} bytes \
                     (corrupt dataset extent)",
                    self.len
                ),
            ));
        }
        Ok(ds)
    }

    /// Length of 1-d dataset `path`.
    pub fn len_of(&self, path: &str) -> Result<usize> {
        let ds = self.dataset(path, false)?;
        Ok(ds.shape().first().copied().unwrap_or(0) as usize)
    }

    /// A 1-d floating-point (or integer) column as `f64`.
    pub fn f64s(&self, path: &str) -> Result<Vec<f64>> {
        let ds = self.dataset(path, false)?;
        let e = |e| self.err(path, e);
        Ok(match ds.dtype().clone() {
            Datatype::FloatingPoint { size: 8, .. } => {
                // Straight into the result (spike times are the one large read): `dataset`
                // has checked the element count against the file.
                let n = usize::try_from(ds.num_elements().map_err(|e| self.err(path, e))?)
                    .map_err(|_| self.err(path, "too many elements"))?;
                let mut v = vec![0f64; n];
                ds.read_into(&mut v).map_err(e)?;
                v
            }
            Datatype::FloatingPoint { size: 4, .. } => ds
                .read_array::<f32>()
                .map_err(e)?
                .iter()
                .map(|&v| v as f64)
                .collect(),
            Datatype::FixedPoint { .. } => self.i64s(path)?.into_iter().map(|v| v as f64).collect(),
            other => {
                return Err(input(
                    &self.path,
                    format!("{path} holds {other:?}, expected numbers"),
                ));
            }
        })
    }

    /// Whether 1-d dataset `path` holds floating-point numbers.
    pub fn is_float(&self, path: &str) -> Result<bool> {
        let ds = self.dataset(path, false)?;
        Ok(matches!(ds.dtype(), Datatype::FloatingPoint { .. }))
    }

    /// A 1-d integer column as `i64` (unsigned values above `i64::MAX` are refused).
    pub fn i64s(&self, path: &str) -> Result<Vec<i64>> {
        let ds = self.dataset(path, false)?;
        let e = |e| self.err(path, e);
        macro_rules! read {
            ($t:ty) => {
                ds.read_array::<$t>()
                    .map_err(e)?
                    .iter()
                    .map(|&v| i64::try_from(v).ok())
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| {
                        input(&self.path, format!("{path}: a value exceeds {}", i64::MAX))
                    })?
            };
        }
        Ok(match ds.dtype().clone() {
            Datatype::FixedPoint {
                size, signed: true, ..
            } => match size {
                1 => read!(i8),
                2 => read!(i16),
                4 => read!(i32),
                8 => read!(i64),
                _ => return Err(self.err(path, format!("{size}-byte integers"))),
            },
            Datatype::FixedPoint {
                size,
                signed: false,
                ..
            } => match size {
                1 => read!(u8),
                2 => read!(u16),
                4 => read!(u32),
                8 => read!(u64),
                _ => return Err(self.err(path, format!("{size}-byte integers"))),
            },
            other => {
                return Err(input(
                    &self.path,
                    format!("{path} holds {other:?}, expected integers"),
                ));
            }
        })
    }

    /// A 1-d string column (variable-length or fixed-length strings).
    pub fn strings(&self, path: &str) -> Result<Vec<String>> {
        let ds = self.dataset(path, false)?;
        if !is_string(ds.dtype()) {
            return Err(input(
                &self.path,
                format!("{path} holds {:?}, expected strings", ds.dtype()),
            ));
        }
        ds.read_strings().map_err(|e| self.err(path, e))
    }

    /// Whether 1-d dataset `path` holds strings.
    pub fn is_strings(&self, path: &str) -> Result<bool> {
        let ds = self.dataset(path, false)?;
        Ok(is_string(ds.dtype()))
    }

    /// A scalar string dataset, or None if there is no such dataset.
    pub fn scalar_string(&self, path: &str) -> Result<Option<String>> {
        if !self.has_dataset(path)? {
            return Ok(None);
        }
        let ds = self.dataset(path, true)?;
        if !is_string(ds.dtype()) {
            return Err(input(
                &self.path,
                format!("{path} holds {:?}, expected a string", ds.dtype()),
            ));
        }
        let s = if ds.shape().is_empty() {
            ds.read_string().map_err(|e| self.err(path, e))?
        } else {
            ds.read_strings()
                .map_err(|e| self.err(path, e))?
                .into_iter()
                .next()
                .unwrap_or_default()
        };
        Ok(Some(s))
    }

    /// String attribute `name` of the root group, if present and a string.
    pub fn root_attr_string(&self, name: &str) -> Option<String> {
        let g = self.file.root_group().ok()?;
        g.attribute(name).ok()?.read_string().ok()
    }
}

fn is_string(t: &Datatype) -> bool {
    match t {
        Datatype::String { .. } => true,
        Datatype::VarLen { kind, .. } => matches!(kind, hdf5_reader::VarLenKind::String),
        _ => false,
    }
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

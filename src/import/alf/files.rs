//! Reading the session's files, each recorded once (relative path, size, SHA-256) for the
//! manifest's provenance.

use crate::error::{Result, input};
use crate::store::npy::NpyArray;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The files read from one session folder.
pub struct Sources {
    root: PathBuf,
    read: Vec<(String, u64, String)>,
}

impl Sources {
    pub fn new(root: &Path) -> Sources {
        Sources {
            root: root.to_path_buf(),
            read: Vec::new(),
        }
    }

    /// The bytes of `path`, recorded.
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>> {
        let bytes = crate::fsutil::read_regular(path)?;
        let rel = path
            .strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        if !self.read.iter().any(|(r, _, _)| r == &rel) {
            self.read
                .push((rel, bytes.len() as u64, crate::hash::sha256_hex(&bytes)));
        }
        Ok(bytes)
    }

    /// A `.npy` file, read and validated.
    pub fn npy(&mut self, path: &Path) -> Result<NpyArray> {
        let bytes = self.read(path)?;
        NpyArray::from_bytes(bytes, path)
    }

    /// `[{path, bytes, sha256}]`, sorted by path.
    pub fn to_json(&self) -> Value {
        let mut v = self.read.clone();
        v.sort();
        Value::Array(
            v.into_iter()
                .map(|(p, n, h)| json!({"path": p, "bytes": n, "sha256": h}))
                .collect(),
        )
    }
}

/// The elements of a numeric array of shape `[n]` (or `[n, 1]`) as f64.
pub fn vector(a: &NpyArray, path: &Path) -> Result<Vec<f64>> {
    match a.shape() {
        [_] | [_, 1] => a.to_f64(path),
        s => Err(input(
            path,
            format!("expected a 1-d array, found shape {s:?}"),
        )),
    }
}

/// A 1-d array of non-negative integers below 2^32 (indices).
pub fn indices(a: &NpyArray, path: &Path, what: &str) -> Result<Vec<u32>> {
    let v = vector(a, path)?;
    let mut out = Vec::with_capacity(v.len());
    for (i, x) in v.into_iter().enumerate() {
        if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < u32::MAX as f64) {
            return Err(input(
                path,
                format!("{what} {x} at position {i} is not a non-negative integer index"),
            ));
        }
        out.push(x as u32);
    }
    Ok(out)
}

/// A 1-d array of integers (ids, possibly negative).
pub fn integers(a: &NpyArray, path: &Path, what: &str) -> Result<Vec<i64>> {
    let v = vector(a, path)?;
    let mut out = Vec::with_capacity(v.len());
    for (i, x) in v.into_iter().enumerate() {
        if !(x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15) {
            return Err(input(
                path,
                format!("{what} {x} at position {i} is not an integer"),
            ));
        }
        out.push(x as i64);
    }
    Ok(out)
}

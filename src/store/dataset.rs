//! Read side of the store: a dataset directory opened with every session's counts memory-mapped.
//! Nothing reads a whole session into memory; `trial` hands out slices of the map.

use super::manifest::{Manifest, SessionInfo};
use super::npy::{self, DType, NpyArray};
use crate::error::{Result, input, io_at};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// File name of the counts array in each session directory.
pub const SPIKES_FILE: &str = "spikes.npy";
/// File name of the per-trial choice array in each session directory.
pub const CHOICE_FILE: &str = "choice.npy";

/// An opened dataset: the manifest and one read-only map of each session's `spikes.npy`.
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    maps: Vec<SessionMap>,
}

/// The mapped counts of one session.
struct SessionMap {
    map: Mmap,
    /// Byte offset of the first count.
    offset: usize,
    /// Bytes per trial (`n_bins * n_neurons`).
    trial_len: usize,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.dir)
            .field("sessions", &self.manifest.sessions.len())
            .finish()
    }
}

impl Dataset {
    /// Opens `dir`: reads and checks `manifest.json`, then maps every session's `spikes.npy`
    /// and checks its header (uint8, C order, the manifest's shape) and its size.
    pub fn open(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(input(
                dir,
                "not a dataset directory (it does not exist or is not a directory)",
            ));
        }
        let manifest = Manifest::load(dir)?;
        let mut maps = Vec::with_capacity(manifest.sessions.len());
        for s in &manifest.sessions {
            maps.push(map_session(dir, s)?);
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            manifest,
            maps,
        })
    }

    pub fn n_sessions(&self) -> usize {
        self.manifest.sessions.len()
    }

    pub fn session(&self, s: usize) -> &SessionInfo {
        &self.manifest.sessions[s]
    }

    pub fn sessions(&self) -> &[SessionInfo] {
        &self.manifest.sessions
    }

    /// Session index by id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.manifest.sessions.iter().position(|s| s.id == id)
    }

    /// Directory of session `s`.
    pub fn session_dir(&self, s: usize) -> PathBuf {
        self.dir.join(&self.manifest.sessions[s].dir)
    }

    /// Counts of one trial, `[n_bins * n_neurons]` row-major ([bin][neuron]), straight from the map.
    pub fn trial(&self, s: usize, trial: usize) -> &[u8] {
        let m = &self.maps[s];
        let at = m.offset + trial * m.trial_len;
        &m.map[at..at + m.trial_len]
    }

    /// All counts of session `s`, `[n_trials * n_bins * n_neurons]`, straight from the map.
    pub fn counts(&self, s: usize) -> &[u8] {
        let m = &self.maps[s];
        &m.map[m.offset..]
    }

    /// Gathers `trials` of session `s` into `out` as f32, `[trials.len(), n_bins, n_neurons]`.
    pub fn gather_f32(&self, s: usize, trials: &[u32], out: &mut [f32]) {
        let len = self.maps[s].trial_len;
        assert_eq!(out.len(), trials.len() * len, "gather_f32: output size");
        for (dst, &t) in out.chunks_exact_mut(len).zip(trials) {
            for (d, &c) in dst.iter_mut().zip(self.trial(s, t as usize)) {
                *d = c as f32;
            }
        }
    }

    /// Per-trial choices of session `s` (-1, +1, 0 = unknown), read from `choice.npy`.
    pub fn choice(&self, s: usize) -> Result<Vec<i8>> {
        let info = self.session(s);
        let path = self.session_dir(s).join(CHOICE_FILE);
        let a = NpyArray::read(&path)?;
        if a.header.dtype != DType::I8 || a.shape() != [info.n_trials] {
            return Err(input(
                &path,
                format!(
                    "expected int8 [{}], found {} {:?}",
                    info.n_trials,
                    a.header.dtype.descr(a.header.little_endian),
                    a.shape()
                ),
            ));
        }
        let v: Vec<i8> = a.data().iter().map(|&b| b as i8).collect();
        if let Some(k) = v.iter().position(|c| !(-1..=1).contains(c)) {
            return Err(input(
                &path,
                format!("choice {} of trial {k} is not -1, 0 or +1", v[k]),
            ));
        }
        Ok(v)
    }

    /// The optional per-trial behaviour array `name` of session `s` (float32 [n_trials]).
    pub fn behaviour(&self, s: usize, name: &str) -> Result<Vec<f32>> {
        let info = self.session(s);
        if !info.behaviour.iter().any(|b| b == name) {
            return Err(input(
                self.session_dir(s),
                format!("session `{}` has no behaviour array `{name}`", info.id),
            ));
        }
        let path = self.session_dir(s).join(format!("{name}.npy"));
        let a = NpyArray::read(&path)?;
        if a.header.dtype != DType::F32 || a.shape() != [info.n_trials] {
            return Err(input(
                &path,
                format!(
                    "expected float32 [{}], found {} {:?}",
                    info.n_trials,
                    a.header.dtype.descr(a.header.little_endian),
                    a.shape()
                ),
            ));
        }
        Ok(a.to_f64(&path)?.into_iter().map(|v| v as f32).collect())
    }
}

/// Maps `spikes.npy` of session `s` and checks it against the manifest.
fn map_session(dir: &Path, s: &SessionInfo) -> Result<SessionMap> {
    let path = dir.join(&s.dir).join(SPIKES_FILE);
    let (file, _) = crate::fsutil::open_regular(&path)?;
    // SAFETY: the map is read-only and the store never rewrites a committed session file in
    // place (imports write new directories and rename them in); a file truncated by another
    // program while mapped is outside what the store can defend against.
    let map = unsafe { Mmap::map(&file) }.map_err(io_at(&path))?;
    let h = npy::parse_header(&map, &path)?;
    let want = [s.n_trials, s.n_bins, s.n_neurons];
    if h.dtype != DType::U8 || h.fortran_order || h.shape != want {
        return Err(input(
            &path,
            format!(
                "expected uint8 {want:?} in C order (manifest session `{}`), found {} {:?}{}",
                s.id,
                h.dtype.descr(h.little_endian),
                h.shape,
                if h.fortran_order {
                    " in Fortran order"
                } else {
                    ""
                }
            ),
        ));
    }
    h.check_len(map.len(), &path)?;
    // The header's shape equals the manifest's and its size the file's: the product fits.
    let trial_len = s
        .n_bins
        .checked_mul(s.n_neurons)
        .ok_or_else(|| input(&path, format!("shape {want:?} is too large to address")))?;
    Ok(SessionMap {
        offset: h.data_offset,
        trial_len,
        map,
    })
}

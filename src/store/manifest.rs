//! `manifest.json`: the dataset's table of contents (sessions, shapes, regions, splits,
//! provenance) and its format version.

use crate::error::{Result, input};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format name written in every manifest.
pub const FORMAT: &str = "ndt-dataset";
/// Version of the store layout this build writes; it reads this version and older ones.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// `ndt <version>` of the build that last wrote the manifest.
    #[serde(default)]
    pub created_by: String,
    pub sessions: Vec<SessionInfo>,
    /// Free-form dataset-level data (synth stores its ground truth under `extra.synth`).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub subject: String,
    pub lab: String,
    #[serde(default)]
    pub animal: Option<String>,
    pub n_trials: usize,
    pub n_bins: usize,
    pub n_neurons: usize,
    pub bin_size_s: f64,
    #[serde(default)]
    pub onset_bin: Option<usize>,
    /// One region label per neuron.
    pub regions: Vec<String>,
    pub split: Split,
    /// Directory of the session's arrays, relative to the dataset: `sessions/0003`.
    pub dir: String,
    /// Names of the optional per-trial f32 arrays (`<dir>/<name>.npy`).
    #[serde(default)]
    pub behaviour: Vec<String>,
    #[serde(default)]
    pub provenance: serde_json::Value,
}

/// Trial indices of each split, stored (never recomputed) with the seed that drew them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Split {
    pub seed: u64,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub test: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

impl SplitName {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        }
    }
}

impl std::str::FromStr for SplitName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "train" => Ok(SplitName::Train),
            "val" => Ok(SplitName::Val),
            "test" => Ok(SplitName::Test),
            _ => Err(format!("unknown split `{s}` (train, val, test)")),
        }
    }
}

impl SessionInfo {
    /// Trial indices of split `s`.
    pub fn split(&self, s: SplitName) -> &[u32] {
        match s {
            SplitName::Train => &self.split.train,
            SplitName::Val => &self.split.val,
            SplitName::Test => &self.split.test,
        }
    }

    /// Distinct region names in first-appearance order, and each neuron's index into them.
    pub fn region_index(&self) -> (Vec<String>, Vec<u16>) {
        let mut names: Vec<String> = Vec::new();
        let mut index = Vec::with_capacity(self.regions.len());
        for r in &self.regions {
            let k = match names.iter().position(|n| n == r) {
                Some(k) => k,
                None => {
                    names.push(r.clone());
                    names.len() - 1
                }
            };
            index.push(k as u16);
        }
        (names, index)
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}

impl Manifest {
    /// An empty manifest of the current format version.
    pub fn new() -> Manifest {
        Manifest {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            created_by: created_by(),
            sessions: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Reads and checks `dir/manifest.json` (a regular file of at most `fsutil::MAX_TEXT_BYTES`):
    /// first every session's counts against the size of its `spikes.npy` on disk, then the rest
    /// (`validate`), so that no count is trusted before the file that must hold it is seen.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = crate::fsutil::read_bounded(&path, crate::fsutil::MAX_TEXT_BYTES)?;
        let m = Manifest::parse(&bytes, &path)?;
        m.check_sizes(&path, Some(dir))?;
        m.validate(&path)?;
        Ok(m)
    }

    /// Parses and checks a manifest; `path` names it in errors. Without the dataset's files at
    /// hand the counts are only checked to be addressable (see `check_sizes`).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let m = Manifest::parse(bytes, path)?;
        m.check_sizes(path, None)?;
        m.validate(path)?;
        Ok(m)
    }

    /// Checks every session's counts before anything is sized by them: `n_trials · n_bins ·
    /// n_neurons` must not overflow, `n_trials` must be addressable by the u32 split indices, and
    /// with `dir` given, the session's `spikes.npy` must exist as a regular file holding at least
    /// that many bytes.
    pub fn check_sizes(&self, path: &Path, dir: Option<&Path>) -> Result<()> {
        const MAX_TRIALS: u64 = u32::MAX as u64 + 1;
        for (k, s) in self.sessions.iter().enumerate() {
            let bad = |msg: String| {
                input(
                    path,
                    format!("corrupt manifest: session {k} (`{}`): {msg}", s.id),
                )
            };
            let shape = [s.n_trials, s.n_bins, s.n_neurons];
            let Some(cells) = s
                .n_trials
                .checked_mul(s.n_bins)
                .and_then(|c| c.checked_mul(s.n_neurons))
            else {
                return Err(bad(format!("shape {shape:?} is too large to address")));
            };
            if s.n_trials as u64 > MAX_TRIALS {
                return Err(bad(format!(
                    "{} trials, more than split indices (u32) can address",
                    s.n_trials
                )));
            }
            let Some(dir) = dir else { continue };
            if !safe_rel_dir(&s.dir) {
                return Err(bad(format!(
                    "session dir `{}` is not a relative path inside the dataset",
                    s.dir
                )));
            }
            let spikes = dir.join(&s.dir).join(super::dataset::SPIKES_FILE);
            let held = match std::fs::metadata(&spikes) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => return Err(bad(format!("{} is not a regular file", spikes.display()))),
                Err(e) => return Err(bad(format!("{}: {e}", spikes.display()))),
            };
            if cells as u64 > held {
                return Err(bad(format!(
                    "shape {shape:?} needs {cells} bytes of counts, but {} holds {held} bytes",
                    spikes.display()
                )));
            }
        }
        Ok(())
    }

    /// The JSON of a manifest: format and version checked, the schema deserialised; no
    /// consistency checks yet.
    fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        // Read the version before the full schema so that a newer layout reports itself as
        // newer rather than as a schema mismatch.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| input(path, format!("corrupt manifest: not valid JSON ({e})")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| input(path, "corrupt manifest: not a JSON object"))?;
        match obj.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(input(
                    path,
                    format!("not an ndt dataset manifest (format `{other}`, expected `{FORMAT}`)"),
                ));
            }
            None => {
                return Err(input(path, "corrupt manifest: no `format` field"));
            }
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| input(path, "corrupt manifest: no integer `format_version` field"))?;
        if version > FORMAT_VERSION as u64 {
            return Err(input(
                path,
                format!(
                    "dataset format version {version} was written by a newer ndt \
                     (this build reads up to version {FORMAT_VERSION}); upgrade ndt"
                ),
            ));
        }
        serde_json::from_value(value).map_err(|e| input(path, format!("corrupt manifest: {e}")))
    }

    /// Internal consistency: ids, subjects and labs that follow the id rule
    /// ([`check_id`](super::id::check_id): they name result files and folders), unique ids,
    /// lengths, split indices in range and disjoint.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let mut ids = std::collections::HashSet::new();
        for (k, s) in self.sessions.iter().enumerate() {
            // The id as shown in messages: escaped and cut short (it may be anything here).
            let shown: String = s.id.chars().take(40).collect();
            let bad = |msg: String| {
                input(
                    path,
                    format!(
                        "corrupt manifest: session {k} (`{}`): {msg}",
                        shown.escape_debug()
                    ),
                )
            };
            for (what, id) in [
                ("session id", &s.id),
                ("subject", &s.subject),
                ("lab", &s.lab),
            ] {
                super::id::check_id(what, id)
                    .map_err(|m| bad(format!("{m} (ids become file names; see docs/data.md)")))?;
            }
            if !ids.insert(s.id.as_str()) {
                return Err(bad("duplicate session id".into()));
            }
            if s.n_trials == 0 || s.n_bins == 0 || s.n_neurons == 0 {
                return Err(bad(format!(
                    "empty shape [{}, {}, {}]",
                    s.n_trials, s.n_bins, s.n_neurons
                )));
            }
            if s.regions.len() != s.n_neurons {
                return Err(bad(format!(
                    "{} region labels for {} neurons",
                    s.regions.len(),
                    s.n_neurons
                )));
            }
            if !(s.bin_size_s.is_finite() && s.bin_size_s > 0.0) {
                return Err(bad(format!("bin_size_s {} is not positive", s.bin_size_s)));
            }
            if let Some(o) = s.onset_bin
                && o >= s.n_bins
            {
                return Err(bad(format!("onset_bin {o} outside {} bins", s.n_bins)));
            }
            let mut seen = vec![false; s.n_trials];
            for &t in s
                .split
                .train
                .iter()
                .chain(&s.split.val)
                .chain(&s.split.test)
            {
                let t = t as usize;
                if t >= s.n_trials || seen[t] {
                    return Err(bad(format!(
                        "split lists trial {t} twice or outside {} trials",
                        s.n_trials
                    )));
                }
                seen[t] = true;
            }
            if !safe_rel_dir(&s.dir) {
                return Err(bad(format!(
                    "session dir `{}` is not a relative path inside the dataset",
                    s.dir
                )));
            }
            for name in &s.behaviour {
                if !safe_name(name) {
                    return Err(bad(format!(
                        "behaviour name `{name}` is not a plain file name"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Serialised form: JSON with one key per line, arrays of numbers or strings (regions,
    /// split lists) kept on one line, and a trailing newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let v = serde_json::to_value(self)
            .map_err(|e| crate::error::internal(format!("manifest serialisation: {e}")))?;
        let mut out = String::new();
        write_json(&v, 0, &mut out);
        out.push('\n');
        Ok(out.into_bytes())
    }
}

/// Writes `v` indented by `depth` levels; arrays of scalars stay on one line.
fn write_json(v: &serde_json::Value, depth: usize, out: &mut String) {
    use serde_json::Value;
    let pad = |d: usize| "  ".repeat(d);
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push_str("{\n");
            for (k, (key, val)) in m.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_json(val, depth + 1, out);
                out.push_str(if k + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push('}');
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            out.push_str("[\n");
            for (k, val) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_json(val, depth + 1, out);
                out.push_str(if k + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(depth));
            out.push(']');
        }
        Value::Array(a) => {
            out.push('[');
            for (k, val) in a.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                out.push_str(&val.to_string());
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `ndt <version>`.
pub fn created_by() -> String {
    format!("ndt {}", env!("CARGO_PKG_VERSION"))
}

/// A relative path of plain components (no `..`, no root, no empty parts).
fn safe_rel_dir(dir: &str) -> bool {
    !dir.is_empty() && dir.split('/').all(safe_name)
}

/// A plain file name: no separators, not `.` or `..`.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

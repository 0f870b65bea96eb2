//! Write side of the store, used by every importer and by `ndt synth`.
//!
//! New sessions are streamed into a staging directory inside the dataset (`.staging-<pid>-<t>/`);
//! `commit` renames them to `sessions/<k>` and then replaces `manifest.json` atomically. Until the
//! manifest is replaced nothing a reader sees has changed, and a writer dropped without `commit`
//! (an error anywhere) removes what it staged, leaving the dataset byte-for-byte as it was.
//! An exclusive lock on `DIR/.ndt.lock` keeps two writers off one dataset.
//!
//! A process killed inside `commit` can leave session folders moved into `sessions/` that the
//! manifest does not list yet. The next writer, holding the lock, removes them together with
//! dead writers' staging directories and temporary manifests; it only ever removes names it
//! writes itself (`sessions/<4 or more digits>/`, `.staging-*`, `.manifest.json.tmp*`).

use super::dataset::{CHOICE_FILE, SPIKES_FILE};
use super::id::check_id;
use super::manifest::{MANIFEST_FILE, Manifest, SessionInfo, Split, safe_name};
use super::npy;
use crate::error::{Error, Result, input, internal, io_at};
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the lock file in a dataset directory.
pub const LOCK_FILE: &str = ".ndt.lock";
/// Default seed of the train/val/test split.
pub const DEFAULT_SPLIT_SEED: u64 = 42;
/// Stream number of the split shuffle in `crate::rng`.
const SPLIT_STREAM: u64 = 0x0053_504c_4954;

/// One session to add: metadata plus the small per-trial arrays; the counts come through the
/// `fill` callback of [`DatasetWriter::add_session`].
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub subject: String,
    pub lab: String,
    pub animal: Option<String>,
    pub n_trials: usize,
    pub n_bins: usize,
    pub n_neurons: usize,
    pub bin_size_s: f64,
    pub onset_bin: Option<usize>,
    /// One label per neuron.
    pub regions: Vec<String>,
    /// One per trial: -1, +1, or 0 (unknown).
    pub choice: Vec<i8>,
    /// Optional per-trial arrays (reward, contrast, block, ...), each `n_trials` long.
    pub behaviour: Vec<(String, Vec<f32>)>,
    /// Where the session came from (source file, importer, options).
    pub provenance: serde_json::Value,
}

/// Adds sessions to a dataset directory; see the module documentation for the guarantees.
pub struct DatasetWriter {
    dir: PathBuf,
    staging: PathBuf,
    split_seed: u64,
    /// Whether `open` created `dir` (removed again if the writer is dropped uncommitted).
    created_dir: bool,
    /// Whether `open` created the lock file in an existing directory.
    created_lock: bool,
    _lock: File,
    next_seq: AtomicU64,
    state: Mutex<State>,
    committed: bool,
}

struct State {
    base: Manifest,
    /// Ids of the base manifest and of sessions being or already staged.
    ids: HashSet<String>,
    staged: Vec<Staged>,
    extra: serde_json::Map<String, serde_json::Value>,
}

struct Staged {
    /// Sort key of the session among the new ones: (0, slot) for `add_session_ordered`,
    /// (1, entry order) for `add_session`.
    key: (u8, u64),
    /// Directory name inside the staging directory.
    name: String,
    info: SessionInfo,
}

impl DatasetWriter {
    /// Opens DIR for adding sessions (creating it if missing). New files go to a staging
    /// directory inside DIR; nothing visible changes until `commit`. New sessions get a
    /// train/val/test split drawn with `split_seed`.
    pub fn open(dir: &Path, split_seed: u64) -> Result<DatasetWriter> {
        let mut created_dir = false;
        let base = if dir.join(MANIFEST_FILE).exists() {
            Manifest::load(dir)?
        } else {
            if dir.exists() {
                if !dir.is_dir() {
                    return Err(input(dir, "exists and is not a directory"));
                }
                let visible = std::fs::read_dir(dir)
                    .map_err(io_at(dir))?
                    .filter_map(|e| e.ok())
                    .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
                if visible {
                    return Err(input(
                        dir,
                        format!(
                            "exists but is not an ndt dataset (no {MANIFEST_FILE}); \
                             give a new or empty directory"
                        ),
                    ));
                }
            } else {
                std::fs::create_dir_all(dir).map_err(io_at(dir))?;
                created_dir = true;
            }
            Manifest::new()
        };
        let lock_path = dir.join(LOCK_FILE);
        let created_lock = !lock_path.exists();
        let cleanup = |e: Error| {
            if created_dir {
                let _ = std::fs::remove_dir_all(dir);
            } else if created_lock {
                let _ = std::fs::remove_file(&lock_path);
            }
            e
        };
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))
            .map_err(cleanup)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(cleanup(input(
                    dir,
                    "another ndt process is writing to this dataset; retry when it has finished",
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(cleanup(io_at(&lock_path)(e))),
        }
        // The manifest may have changed between the first read and taking the lock.
        let base = if dir.join(MANIFEST_FILE).exists() {
            Manifest::load(dir).map_err(cleanup)?
        } else {
            base
        };
        // Holding the lock, no other writer is at work: staging directories, temporary
        // manifests and unlisted session folders found now were left by a process that died.
        remove_leftovers(dir, &base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let staging = dir.join(format!(".staging-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&staging)
            .map_err(io_at(&staging))
            .map_err(cleanup)?;
        let ids = base.sessions.iter().map(|s| s.id.clone()).collect();
        let extra = base.extra.clone();
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            staging,
            split_seed,
            created_dir,
            created_lock,
            _lock: lock,
            next_seq: AtomicU64::new(0),
            state: Mutex::new(State {
                base,
                ids,
                staged: Vec::new(),
                extra,
            }),
            committed: false,
        })
    }

    /// The dataset directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ids of the sessions already in the dataset (before this writer's additions).
    pub fn existing_ids(&self) -> Vec<String> {
        self.lock_state()
            .base
            .sessions
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    /// Streams one session to disk: `fill(trial, out)` writes trial `trial`'s counts
    /// (`out.len() == n_bins * n_neurons`, row-major [bin][neuron]). Validates the metadata
    /// (lengths, duplicate id, empty session). May be called from several threads at once.
    /// New sessions go into the manifest in the order their `add_session` calls began.
    pub fn add_session(
        &self,
        s: NewSession,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.add(s, (1, seq), None, fill)
    }

    /// As [`add_session`](Self::add_session), but the new sessions are ordered by `slot` in the
    /// manifest (ahead of those added with `add_session`), whatever order threads finish in.
    pub fn add_session_ordered(
        &self,
        slot: u64,
        s: NewSession,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.add(s, (0, slot), None, fill)
    }

    /// As [`add_session_ordered`](Self::add_session_ordered), with the session's split given
    /// (a release's own train/val/test assignment) instead of drawn with the writer's seed.
    pub fn add_session_ordered_with_split(
        &self,
        slot: u64,
        s: NewSession,
        split: Split,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.add(s, (0, slot), Some(split), fill)
    }

    /// Sets `extra[key]` of the manifest (dataset-level free-form data).
    pub fn set_extra(&self, key: &str, value: serde_json::Value) {
        self.lock_state().extra.insert(key.to_string(), value);
    }

    /// Moves staged sessions into place and writes manifest.json atomically (tmp + rename).
    /// On any earlier error, dropping the writer removes the staging dir: the dataset stays as it was.
    pub fn commit(mut self) -> Result<()> {
        let state = std::mem::replace(
            &mut *self.lock_state(),
            State {
                base: Manifest::new(),
                ids: HashSet::new(),
                staged: Vec::new(),
                extra: serde_json::Map::new(),
            },
        );
        let State {
            base,
            mut staged,
            extra,
            ..
        } = state;
        staged.sort_by_key(|s| s.key);
        let sessions_dir = self.dir.join("sessions");
        let created_sessions_dir = !sessions_dir.exists();
        let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
        let res = (|| -> Result<()> {
            std::fs::create_dir_all(&sessions_dir).map_err(io_at(&sessions_dir))?;
            let mut next = next_session_number(&sessions_dir, &base)?;
            let mut manifest = base.clone();
            for st in staged {
                let (name, target) = loop {
                    let name = format!("{next:04}");
                    next += 1;
                    let target = sessions_dir.join(&name);
                    if !target.exists() {
                        break (name, target);
                    }
                };
                let from = self.staging.join(&st.name);
                std::fs::rename(&from, &target).map_err(io_at(&target))?;
                moved.push((from, target));
                let mut info = st.info;
                info.dir = format!("sessions/{name}");
                manifest.sessions.push(info);
            }
            manifest.extra = extra;
            manifest.format_version = super::manifest::FORMAT_VERSION;
            manifest.created_by = super::manifest::created_by();
            let path = self.dir.join(MANIFEST_FILE);
            manifest
                .validate(&path)
                .map_err(|e| internal(format!("manifest about to be written is invalid: {e}")))?;
            crate::fsutil::write_atomic(&path, &manifest.to_bytes()?)
        })();
        if let Err(e) = res {
            for (from, target) in moved.iter().rev() {
                if std::fs::rename(target, from).is_err() {
                    let _ = std::fs::remove_dir_all(target);
                }
            }
            if created_sessions_dir {
                let _ = std::fs::remove_dir(&sessions_dir);
            }
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        self.committed = true;
        Ok(())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in another thread while holding the lock leaves the state consistent
        // (every update is a single push/insert), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(
        &self,
        s: NewSession,
        key: (u8, u64),
        split: Option<Split>,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.check(&s)?;
        if let Some(sp) = &split {
            let mut seen = vec![false; s.n_trials];
            for &t in sp.train.iter().chain(&sp.val).chain(&sp.test) {
                match seen.get_mut(t as usize) {
                    Some(x) if !*x => *x = true,
                    _ => {
                        return Err(internal(format!(
                            "session `{}`: the given split lists trial {t} twice or outside {} trials",
                            s.id, s.n_trials
                        )));
                    }
                }
            }
        }
        {
            let mut st = self.lock_state();
            if !st.ids.insert(s.id.clone()) {
                return Err(input(
                    self.dir.join(MANIFEST_FILE),
                    format!("session id `{}` is already in the dataset", s.id),
                ));
            }
        }
        let name = format!("s{}-{}", key.0, key.1);
        let sdir = self.staging.join(&name);
        let res = self.write_session(&sdir, &s, fill);
        match res {
            Ok(()) => {
                let info = SessionInfo {
                    id: s.id,
                    subject: s.subject,
                    lab: s.lab,
                    animal: s.animal,
                    n_trials: s.n_trials,
                    n_bins: s.n_bins,
                    n_neurons: s.n_neurons,
                    bin_size_s: s.bin_size_s,
                    onset_bin: s.onset_bin,
                    regions: s.regions,
                    split: split.unwrap_or_else(|| split_trials(s.n_trials, self.split_seed)),
                    dir: String::new(),
                    behaviour: s.behaviour.into_iter().map(|(n, _)| n).collect(),
                    provenance: s.provenance,
                };
                self.lock_state().staged.push(Staged { key, name, info });
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&sdir);
                self.lock_state().ids.remove(&s.id);
                Err(e)
            }
        }
    }

    /// Validates the metadata of a new session (the importers check their inputs first and
    /// name the source files; this is the store's own guard).
    fn check(&self, s: &NewSession) -> Result<()> {
        let bad = |msg: String| {
            input(
                &self.dir,
                format!("session `{}`: {msg}", s.id.escape_debug()),
            )
        };
        for (what, id) in [
            ("session id", &s.id),
            ("subject", &s.subject),
            ("lab", &s.lab),
        ] {
            check_id(what, id).map_err(bad)?;
        }
        if s.n_trials == 0 || s.n_bins == 0 || s.n_neurons == 0 {
            return Err(bad(format!(
                "empty session: shape [{}, {}, {}]",
                s.n_trials, s.n_bins, s.n_neurons
            )));
        }
        if s.n_trials
            .checked_mul(s.n_bins)
            .and_then(|x| x.checked_mul(s.n_neurons))
            .is_none()
            || s.n_trials > u32::MAX as usize
        {
            return Err(bad("session too large".into()));
        }
        if s.regions.len() != s.n_neurons {
            return Err(bad(format!(
                "{} region labels for {} neurons",
                s.regions.len(),
                s.n_neurons
            )));
        }
        if s.choice.len() != s.n_trials {
            return Err(bad(format!(
                "{} choices for {} trials",
                s.choice.len(),
                s.n_trials
            )));
        }
        if let Some(k) = s.choice.iter().position(|c| !(-1..=1).contains(c)) {
            return Err(bad(format!(
                "choice {} of trial {k} is not -1, 0 or +1",
                s.choice[k]
            )));
        }
        if !(s.bin_size_s.is_finite() && s.bin_size_s > 0.0) {
            return Err(bad(format!("bin size {} s is not positive", s.bin_size_s)));
        }
        if let Some(o) = s.onset_bin
            && o >= s.n_bins
        {
            return Err(bad(format!("onset bin {o} outside {} bins", s.n_bins)));
        }
        let mut names = HashSet::new();
        for (name, v) in &s.behaviour {
            if !safe_name(name)
                || name.contains('.')
                || name == "spikes"
                || name == "choice"
                || name == "regions"
            {
                return Err(bad(format!("behaviour name `{name}` is not allowed")));
            }
            if !names.insert(name.as_str()) {
                return Err(bad(format!("behaviour `{name}` given twice")));
            }
            if v.len() != s.n_trials {
                return Err(bad(format!(
                    "behaviour `{name}` has {} values for {} trials",
                    v.len(),
                    s.n_trials
                )));
            }
        }
        Ok(())
    }

    fn write_session(
        &self,
        sdir: &Path,
        s: &NewSession,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        std::fs::create_dir(sdir).map_err(io_at(sdir))?;
        let path = sdir.join(SPIKES_FILE);
        let file = File::create(&path).map_err(io_at(&path))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&npy::header_bytes(
            npy::DType::U8,
            &[s.n_trials, s.n_bins, s.n_neurons],
        ))
        .map_err(io_at(&path))?;
        let mut buf = vec![0u8; s.n_bins * s.n_neurons];
        for t in 0..s.n_trials {
            buf.fill(0);
            fill(t, &mut buf)?;
            w.write_all(&buf).map_err(io_at(&path))?;
        }
        let file = w.into_inner().map_err(|e| io_at(&path)(e.into_error()))?;
        file.sync_all().map_err(io_at(&path))?;
        drop(file);
        npy::write_npy_i8(&sdir.join(CHOICE_FILE), &[s.n_trials], &s.choice)?;
        npy::write_npy_unicode(&sdir.join("regions.npy"), &s.regions)?;
        for (name, v) in &s.behaviour {
            npy::write_npy_f32(&sdir.join(format!("{name}.npy")), &[s.n_trials], v)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for DatasetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("dir", &self.dir)
            .field("staging", &self.staging)
            .field("split_seed", &self.split_seed)
            .finish()
    }
}

impl Drop for DatasetWriter {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.created_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if self.created_lock {
            let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
        }
    }
}

/// Whether `name` is one `commit` gives a session folder: four or more ASCII digits.
fn is_session_folder_name(name: &str) -> bool {
    name.len() >= 4 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Removes what writers that died left in `dir`: `.staging-*` directories,
/// `.manifest.json.tmp*` files, and numbered folders in `sessions/` that `base` (the manifest,
/// read under the lock) does not list. Other files and folders are the user's and stay.
fn remove_leftovers(dir: &Path, base: &Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".staging-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name.starts_with(&format!(".{MANIFEST_FILE}.tmp")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let sessions = dir.join("sessions");
    let Ok(entries) = std::fs::read_dir(&sessions) else {
        return;
    };
    let listed: HashSet<&str> = base.sessions.iter().map(|s| s.dir.as_str()).collect();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // `file_type` does not follow links: a link is never taken for a folder.
        if is_session_folder_name(&name)
            && e.file_type().is_ok_and(|t| t.is_dir())
            && !listed.contains(format!("sessions/{name}").as_str())
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The first free session number: one past the largest of the numbered directories present in
/// `sessions/` and those the manifest names.
fn next_session_number(sessions_dir: &Path, base: &Manifest) -> Result<u64> {
    let mut next = 0u64;
    let mut see = |name: &str| {
        if let Ok(k) = name.parse::<u64>() {
            next = next.max(k + 1);
        }
    };
    for s in &base.sessions {
        if let Some(name) = s.dir.strip_prefix("sessions/") {
            see(name);
        }
    }
    for e in std::fs::read_dir(sessions_dir).map_err(io_at(sessions_dir))? {
        let e = e.map_err(io_at(sessions_dir))?;
        see(&e.file_name().to_string_lossy());
    }
    Ok(next)
}

/// The stored split of `n_trials` trials: a Fisher-Yates shuffle of `0..n` driven by
/// `crate::rng` with `seed`; the first `round(n/10)` shuffled trials are validation, the next
/// `round(n/10)` test, the rest train (8:1:1). Each list is sorted ascending.
pub fn split_trials(n_trials: usize, seed: u64) -> Split {
    let key = crate::rng::key(seed, SPLIT_STREAM);
    let mut order: Vec<u32> = (0..n_trials as u32).collect();
    for i in (1..order.len()).rev() {
        let j = crate::rng::below(key, i as u64, i as u32 + 1) as usize;
        order.swap(i, j);
    }
    let n_val = (n_trials + 5) / 10;
    let n_test = ((n_trials + 5) / 10).min(n_trials - n_val.min(n_trials));
    let n_val = n_val.min(n_trials);
    let mut val = order[..n_val].to_vec();
    let mut test = order[n_val..n_val + n_test].to_vec();
    let mut train = order[n_val + n_test..].to_vec();
    val.sort_unstable();
    test.sort_unstable();
    train.sort_unstable();
    Split {
        seed,
        train,
        val,
        test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Dataset;

    fn session(id: &str, n_trials: usize, value: u8) -> (NewSession, u8) {
        let s = NewSession {
            id: id.into(),
            subject: "KS014".into(),
            lab: "cortexlab".into(),
            animal: None,
            n_trials,
            n_bins: 3,
            n_neurons: 2,
            bin_size_s: 0.02,
            onset_bin: None,
            regions: vec!["CA1".into(); 2],
            choice: vec![1; n_trials],
            behaviour: Vec::new(),
            provenance: serde_json::Value::Null,
        };
        (s, value)
    }

    fn import(dir: &Path, id: &str, n_trials: usize, value: u8) -> Result<()> {
        let w = DatasetWriter::open(dir, DEFAULT_SPLIT_SEED)?;
        let (s, v) = session(id, n_trials, value);
        w.add_session(s, &mut |_, out| {
            out.fill(v);
            Ok(())
        })?;
        w.commit()
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ndt-writer-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn next_writer_removes_what_a_killed_commit_left_and_nothing_else() {
        let dir = temp("leftovers");
        import(&dir, "first", 10, 1).unwrap();
        // A commit killed after moving its session into place, before replacing the manifest
        // (the folder holds another session's arrays), plus a dead writer's staging folder.
        let sessions = dir.join("sessions");
        std::fs::create_dir(sessions.join("0001")).unwrap();
        for f in std::fs::read_dir(sessions.join("0000")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, sessions.join("0001").join(f.file_name().unwrap())).unwrap();
        }
        std::fs::create_dir_all(dir.join(".staging-1-2/s1-0")).unwrap();
        // What the writer does not name stays: the user's notes and folders.
        std::fs::write(sessions.join("notes.txt"), "mine").unwrap();
        std::fs::create_dir(sessions.join("12")).unwrap();
        std::fs::create_dir(sessions.join("0007x")).unwrap();

        import(&dir, "second", 20, 2).unwrap();

        let ds = Dataset::open(&dir).unwrap();
        assert_eq!(ds.n_sessions(), 2);
        let second = ds.find("second").unwrap();
        // Numbered past every numbered name present, the user's `12` included.
        assert_eq!(ds.session(second).dir, "sessions/0013");
        assert_eq!(ds.session(second).n_trials, 20);
        assert!(ds.counts(second).iter().all(|&c| c == 2));
        assert!(ds.counts(ds.find("first").unwrap()).iter().all(|&c| c == 1));
        let mut names: Vec<String> = std::fs::read_dir(&sessions)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["0000", "0007x", "0013", "12", "notes.txt"]);
        assert!(!dir.join(".staging-1-2").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_subjects_and_labs_must_follow_the_id_rule() {
        let dir = temp("ids");
        import(&dir, "good", 10, 1).unwrap();
        let before = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
        for (field, bad) in [
            ("id", "/../../../../x"),
            ("id", "../x"),
            ("subject", "a/b"),
            ("lab", ".."),
        ] {
            let w = DatasetWriter::open(&dir, DEFAULT_SPLIT_SEED).unwrap();
            let (mut s, _) = session("fine", 10, 1);
            match field {
                "id" => s.id = bad.into(),
                "subject" => s.subject = bad.into(),
                _ => s.lab = bad.into(),
            }
            let err = w.add_session(s, &mut |_, _| Ok(())).unwrap_err();
            assert_eq!(err.exit_code(), 1);
            let what = if field == "id" { "session id" } else { field };
            assert!(err.to_string().contains(what), "{err}");
            drop(w);
            assert_eq!(std::fs::read(dir.join(MANIFEST_FILE)).unwrap(), before);
        }
        assert!(!dir.parent().unwrap().join("x").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

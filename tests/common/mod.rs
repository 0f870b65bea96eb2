//! Helpers shared by the integration tests: the Python interpreter, temporary directories,
//! the built `ndt` binary, fixtures, and snapshots of directory trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/<rel>` under the crate root.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("fixtures").join(rel)
}

/// The Python interpreter for tests: `$NDT_PYTHON`, else `<crate>/.venv/bin/python`.
/// Panics (fails the test) when neither exists.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NDT_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "NDT_PYTHON={} does not exist; run tools/setup.sh",
            p.display()
        );
        return p;
    }
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "no Python for the tests: {} is missing and NDT_PYTHON is not set; run tools/setup.sh",
        p.display()
    );
    p
}

/// Runs `python -c <code> <args...>`; panics with its stderr if it fails.
pub fn run_python(code: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory under cargo's test tmp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the built `ndt` binary with `args`.
pub fn ndt<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(args)
        .output()
        .expect("start ndt")
}

/// Runs `ndt` and asserts it succeeded; returns stdout.
pub fn ndt_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = ndt(args);
    assert!(
        out.status.success(),
        "ndt {:?} failed ({:?}):\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` (relative path -> contents); directories appear with empty contents
/// and a trailing `/`. Comparing two snapshots checks a tree byte for byte.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// A run directory's `log.jsonl` without its timings (`time_s`, `step_s`: the only fields that
/// differ between two runs of the same training).
pub fn log_sans_times(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .expect("read log.jsonl")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("a log line");
            let o = v.as_object_mut().expect("a log line object");
            o.remove("time_s");
            o.remove("step_s");
            v
        })
        .collect()
}

/// Copies a directory tree (fixtures into a temp dir before altering them).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        let dst = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).expect("copy");
        }
    }
}

/// `fixtures/npy/expected.json`, written by tools/make_npy_fixtures.py with numpy.
pub fn npy_expected() -> serde_json::Value {
    let p = fixture("npy/expected.json");
    serde_json::from_slice(&std::fs::read(&p).expect("read expected.json")).expect("parse")
}

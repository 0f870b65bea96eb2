//! Bad input to `ndt import npy` and `ndt inspect` (SPEC §9): each case exits with status 1,
//! names the file and the problem on stderr, and leaves an existing dataset byte-for-byte as it was.

mod common;

use common::{TempDir, copy_tree, fixture, ndt, ndt_ok, snapshot, stderr};
use std::path::{Path, PathBuf};

/// A dataset with one good session, in a fresh temporary directory.
fn existing(tag: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(tag);
    let dir = d.join("ds");
    let src = fixture("npy/c_u8");
    ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    (d, dir)
}

/// Imports `paths` into a dataset holding one session and checks the failure contract:
/// exit status 1, stderr naming `file` and containing `problem`, dataset unchanged.
fn refused(tag: &str, paths: &[&Path], extra: &[&str], file: &Path, problem: &str) {
    let (_d, dir) = existing(tag);
    let before = snapshot(&dir);
    let mut args: Vec<&std::ffi::OsStr> = vec!["import".as_ref(), "npy".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    args.extend(["--out".as_ref(), dir.as_os_str()]);
    let out = ndt(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
    assert!(
        err.contains(&*file.to_string_lossy()),
        "{tag}: stderr does not name {}: {err}",
        file.display()
    );
    assert!(
        err.contains(problem),
        "{tag}: stderr lacks `{problem}`: {err}"
    );
    assert_eq!(snapshot(&dir), before, "{tag}: dataset changed");
}

fn bad(name: &str) -> PathBuf {
    fixture(&format!("npy/bad/{name}"))
}

/// A copy of the c_u8 fixture whose spikes.npy is altered by `f`.
fn altered(d: &TempDir, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let src = d.join("src");
    copy_tree(&fixture("npy/c_u8"), &src);
    let p = src.join("spikes.npy");
    let mut bytes = std::fs::read(&p).unwrap();
    f(&mut bytes);
    std::fs::write(&p, bytes).unwrap();
    src
}

#[test]
fn truncated_npy() {
    let d = TempDir::new("bad-trunc-src");
    let src = altered(&d, |b| b.truncate(b.len() - 10));
    refused(
        "bad-trunc",
        &[&src],
        &[],
        &src.join("spikes.npy"),
        "truncated",
    );
}

#[test]
fn wrong_magic() {
    let d = TempDir::new("bad-magic-src");
    let src = altered(&d, |b| b[0] = b'P');
    refused(
        "bad-magic",
        &[&src],
        &[],
        &src.join("spikes.npy"),
        "wrong magic",
    );
}

#[test]
fn object_dtype() {
    let p = bad("object");
    refused(
        "bad-object",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "object dtype",
    );
}

#[test]
fn rank_not_3() {
    let p = bad("rank2");
    refused(
        "bad-rank",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "rank 3 [trials, T, N], found rank 2",
    );
}

#[test]
fn counts_over_255_need_clip() {
    let p = fixture("npy/clip");
    refused("bad-255", &[&p], &[], &p.join("spikes.npy"), "exceeds 255");
    refused("bad-255b", &[&p], &[], &p.join("spikes.npy"), "--clip");
}

#[test]
fn negative_counts() {
    let p = bad("negative");
    refused(
        "bad-neg",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "negative count -1 at trial 4, bin 1, neuron 0",
    );
}

#[test]
fn nan_counts() {
    let p = bad("nan");
    refused(
        "bad-nan",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "NaN count at trial 7, bin 0, neuron 1",
    );
}

#[test]
fn non_integral_counts() {
    let p = bad("fractional");
    refused(
        "bad-frac",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "non-integral count 1.5",
    );
}

#[test]
fn regions_length_mismatch() {
    let p = bad("regions_len");
    refused(
        "bad-regions",
        &[&p],
        &[],
        &p.join("regions.npy"),
        "4 region labels for 3 neurons",
    );
}

#[test]
fn choice_length_mismatch() {
    let p = bad("choice_len");
    refused(
        "bad-choice",
        &[&p],
        &[],
        &p.join("choice.npy"),
        "15 values for 16 trials",
    );
}

#[test]
fn empty_session() {
    let p = bad("empty");
    refused(
        "bad-empty",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "empty session",
    );
}

#[test]
fn fewer_trials_than_a_batch() {
    let p = bad("few_trials");
    refused(
        "bad-few",
        &[&p],
        &[],
        &p.join("spikes.npy"),
        "15 trials, fewer than a batch (16)",
    );
    // Allowed when the user lowers the limit.
    let d = TempDir::new("bad-few-ok");
    ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        p.as_os_str(),
        "--min-trials".as_ref(),
        "8".as_ref(),
        "--out".as_ref(),
        d.join("ds").as_os_str(),
    ]);
}

#[test]
fn no_spikes_and_not_an_archive() {
    let d = TempDir::new("bad-nospikes-src");
    let empty = d.join("nothing");
    std::fs::create_dir(&empty).unwrap();
    refused("bad-nospikes", &[&empty], &[], &empty, "no spikes.npy");
    let junk = d.join("junk.npz");
    std::fs::write(&junk, b"not a zip archive").unwrap();
    refused("bad-junk", &[&junk], &[], &junk, "not a session");
}

#[test]
fn one_bad_session_imports_nothing() {
    // A good session listed before a bad one is not imported either.
    let good = fixture("npy/i16");
    let p = bad("nan");
    refused(
        "bad-mixed",
        &[&good, &p],
        &[],
        &p.join("spikes.npy"),
        "NaN count",
    );
}

#[test]
fn failed_import_into_a_new_directory_leaves_nothing() {
    let d = TempDir::new("bad-new");
    let dir = d.join("ds");
    let good = fixture("npy/i16");
    let p = bad("negative");
    // The bad session is found while checking sources, before the directory is created ...
    let out = ndt(&[
        "import".as_ref(),
        "npy".as_ref(),
        p.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.exists());
    // ... and a duplicate id is found by the writer, after it: the directory is removed again.
    let out = ndt(&[
        "import".as_ref(),
        "npy".as_ref(),
        good.as_os_str(),
        good.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already"), "{}", stderr(&out));
    assert!(!dir.exists());
}

/// Rewrites manifest.json of `dir` with `f` and checks that inspect and import both refuse it
/// with `problem`, naming manifest.json, and change nothing.
fn bad_manifest(tag: &str, f: impl FnOnce(String) -> String, problem: &str) {
    let (_d, dir) = existing(tag);
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, f(text)).unwrap();
    let before = snapshot(&dir);
    let src = fixture("npy/i16");
    for args in [
        vec!["inspect".as_ref(), dir.as_os_str()],
        vec![
            "import".as_ref(),
            "npy".as_ref(),
            src.as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
        ],
    ] {
        let out = ndt(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{tag}: {err}");
        assert!(err.contains(&*manifest.to_string_lossy()), "{tag}: {err}");
        assert!(err.contains(problem), "{tag}: {err}");
        assert_eq!(snapshot(&dir), before, "{tag}");
    }
}

#[test]
fn corrupt_manifest() {
    bad_manifest(
        "bad-manifest",
        |t| t[..t.len() / 3].to_string(),
        "corrupt manifest",
    );
    bad_manifest(
        "bad-manifest2",
        |t| t.replace("\"n_trials\": 20", "\"n_trials\": \"x\""),
        "corrupt manifest",
    );
}

#[test]
fn newer_manifest_version() {
    bad_manifest(
        "bad-newer",
        |t| t.replace("\"format_version\": 1", "\"format_version\": 9"),
        "written by a newer ndt",
    );
}

#[test]
fn an_import_after_a_killed_commit_removes_its_leftovers() {
    let (_d, dir) = existing("leftover");
    // What a kill between commit's renames and its manifest replacement leaves: a session folder
    // the manifest does not list, and the dead writer's staging folder and temporary manifest.
    let sessions = dir.join("sessions");
    copy_tree(&sessions.join("0000"), &sessions.join("0001"));
    std::fs::create_dir_all(dir.join(".staging-99-1/s1-0")).unwrap();
    std::fs::write(dir.join(".manifest.json.tmp-99"), "{").unwrap();
    std::fs::write(sessions.join("README"), "kept").unwrap();
    let src = fixture("npy/i16");
    ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    let ds = ndt::store::Dataset::open(&dir).unwrap();
    let dirs: Vec<&str> = ds.sessions().iter().map(|s| s.dir.as_str()).collect();
    assert_eq!(dirs, ["sessions/0000", "sessions/0001"]);
    let i16 = ds.find("i16").unwrap();
    // sessions/0001 now holds the new session's arrays, not the leftover's.
    let want = ds.session(i16);
    let header = std::fs::read(sessions.join("0001/spikes.npy")).unwrap();
    let shape = format!("({}, {}, {})", want.n_trials, want.n_bins, want.n_neurons);
    assert!(
        String::from_utf8_lossy(&header[..128]).contains(&shape),
        "{shape}"
    );
    assert!(!dir.join(".staging-99-1").exists());
    assert!(!dir.join(".manifest.json.tmp-99").exists());
    assert_eq!(std::fs::read(sessions.join("README")).unwrap(), b"kept");
    ndt_ok(&["inspect".as_ref(), dir.as_os_str()]);
}

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

// ---- hostile input: every case below crashed, hung or misreported before the readers were
// hardened; each now exits 1 naming the file.

/// A `.npy` file (version 1.0) with `dict` as its header text and `data` after it.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let text = format!("{dict}\n");
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn deeply_nested_npy_header_is_refused_without_recursing() {
    // 32,000 nested `(` overflowed the parser's stack (exit 134).
    let d = TempDir::new("bad-nest-src");
    let nested = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': {}}}",
        "(".repeat(32_000)
    );
    let src = altered(&d, |b| *b = npy_with_header(&nested, &[]));
    refused("bad-nest", &[&src], &[], &src.join("spikes.npy"), "nested");
}

#[test]
fn string_widths_that_wrap_or_are_zero_are_refused() {
    // `<U4611686018427387904`: 4·n wrapped to 0, so no data was needed for any width.
    // `<U0` with shape (10**15,): zero bytes of data declared 10^15 strings.
    for (tag, descr, shape) in [
        ("bad-uwrap", "<U4611686018427387904", "(5,)"),
        ("bad-u0", "<U0", "(1000000000000000,)"),
    ] {
        let d = TempDir::new(&format!("{tag}-src"));
        let src = d.join("src");
        copy_tree(&fixture("npy/c_u8"), &src);
        let p = src.join("regions.npy");
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        std::fs::write(&p, npy_with_header(&header, &[])).unwrap();
        refused(tag, &[&src], &[], &p, "string width");
    }
}

#[test]
fn manifest_counts_beyond_the_files_are_refused_before_allocating() {
    // n_trials of 10^15 or 2^63 aborted every command in the allocator.
    for (tag, n) in [
        ("bad-ntrials15", "1000000000000000"),
        ("bad-ntrials63", "9223372036854775808"),
    ] {
        bad_manifest(
            tag,
            |t| t.replace("\"n_trials\": 20", &format!("\"n_trials\": {n}")),
            "corrupt manifest",
        );
    }
}

/// Runs `ndt` with `args`, killing it after `secs` seconds; None if it had to be killed.
fn ndt_within(args: &[&std::ffi::OsStr], secs: u64) -> Option<std::process::Output> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn special_files_in_place_of_inputs_are_refused_at_once() {
    // A FIFO blocked every reader forever; /dev/zero (here behind a symlink) read until memory
    // ran out. Both are refused as not regular files, naming the path.
    for special in ["fifo", "zero"] {
        let make = |p: &Path| {
            let _ = std::fs::remove_file(p);
            match special {
                "fifo" => mkfifo(p),
                _ => std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            }
        };
        // The manifest of a dataset, through inspect.
        let (_d, dir) = existing(&format!("bad-special-m-{special}"));
        let manifest = dir.join("manifest.json");
        make(&manifest);
        let out =
            ndt_within(&["inspect".as_ref(), dir.as_os_str()], 20).expect("inspect did not return");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&*manifest.to_string_lossy()),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("regular file"), "{}", stderr(&out));
        // spikes.npy of a session to import.
        let d = TempDir::new(&format!("bad-special-s-{special}"));
        let src = d.join("src");
        copy_tree(&fixture("npy/c_u8"), &src);
        let spikes = src.join("spikes.npy");
        make(&spikes);
        let out_dir = d.join("ds");
        let out = ndt_within(
            &[
                "import".as_ref(),
                "npy".as_ref(),
                src.as_os_str(),
                "--out".as_ref(),
                out_dir.as_os_str(),
            ],
            20,
        )
        .expect("import did not return");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&*spikes.to_string_lossy()),
            "{}",
            stderr(&out)
        );
        // A sweep plan and a run config.
        let plan = d.join("plan.toml");
        make(&plan);
        let out = ndt_within(&["sweep".as_ref(), plan.as_os_str(), "--list".as_ref()], 20)
            .expect("sweep did not return");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&*plan.to_string_lossy()),
            "{}",
            stderr(&out)
        );
        let (_d2, ds) = existing(&format!("bad-special-c-{special}"));
        let cfg = d.join("run.toml");
        make(&cfg);
        let out = ndt_within(
            &[
                "train".as_ref(),
                ds.as_os_str(),
                "--config".as_ref(),
                cfg.as_os_str(),
                "--out".as_ref(),
                d.join("run").as_os_str(),
            ],
            20,
        )
        .expect("train did not return");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&*cfg.to_string_lossy()),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn hostile_plan_values_are_refused_naming_the_plan_and_key() {
    // lr = nan / inf / 1e39 passed `--list` and failed later as an internal error (exit 2).
    let (_d, ds) = existing("bad-plan");
    for (value, key) in [
        ("[pretrain]\nlr = nan\n", "pretrain.lr"),
        ("[finetune]\nlr = inf\n", "finetune.lr"),
        ("[rank]\nlr = 1e39\n", "rank.lr"),
        ("shuffles = 1000000000000\n", "shuffles"),
    ] {
        let plan = ds.parent().unwrap().join("plan.toml");
        let text = format!(
            "dataset = \"{}\"\nresults = \"res\"\nheldout_last = 1\nsizes = [1]\n{value}",
            ds.display()
        );
        // Top-level keys must come before the first table.
        let text = if value.starts_with('[') {
            text
        } else {
            format!("{value}{}", text.replace(value, ""))
        };
        std::fs::write(&plan, text).unwrap();
        let out = ndt_within(&["sweep".as_ref(), plan.as_os_str(), "--list".as_ref()], 60)
            .expect("sweep --list did not return");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{key}: {err}");
        assert!(err.contains(&*plan.to_string_lossy()), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn epochs_that_would_wrap_the_schedule_are_a_usage_error() {
    // 3074457345618258603 epochs × 6 batches wrapped the step count to 2.
    let (d, ds) = existing("bad-epochs");
    let out = ndt_within(
        &[
            "train".as_ref(),
            ds.as_os_str(),
            "--config".as_ref(),
            "small".as_ref(),
            "--epochs".as_ref(),
            "3074457345618258603".as_ref(),
            "--stop-after".as_ref(),
            "1".as_ref(),
            "--device".as_ref(),
            "cpu".as_ref(),
            "--out".as_ref(),
            d.join("run").as_os_str(),
        ],
        120,
    )
    .expect("train did not return");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("epochs") && err.contains("1000000"), "{err}");
    assert!(!d.join("run").join("last.safetensors").exists());
}

#[test]
fn a_config_beyond_memory_is_refused_with_both_figures() {
    // About 10^11 parameters: this aborted in the allocator.
    let (d, ds) = existing("bad-bigcfg");
    let cfg = d.join("big.toml");
    std::fs::write(
        &cfg,
        "preset = \"small\"\n[model]\nd_model = 131072\nd_ff = 131072\nn_heads = 1\nn_layers = 2\n",
    )
    .unwrap();
    let out = ndt_within(
        &[
            "train".as_ref(),
            ds.as_os_str(),
            "--config".as_ref(),
            cfg.as_os_str(),
            "--device".as_ref(),
            "cpu".as_ref(),
            "--out".as_ref(),
            d.join("run").as_os_str(),
        ],
        60,
    )
    .expect("train did not return");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&*cfg.to_string_lossy()), "{err}");
    assert!(err.contains("needs") && err.contains("available"), "{err}");
}

#[test]
fn a_result_that_is_not_an_object_names_the_file() {
    // A `result.json` holding an array was read as a finished job, then failed unnamed (exit 2).
    let d = TempDir::new("bad-result");
    let job = ndt::exp::jobs::Job::new(d.path(), "eval", serde_json::json!({"x": 1}));
    std::fs::create_dir_all(&job.dir).unwrap();
    for text in ["[]", "[1, 2]", "3", "\"x\""] {
        std::fs::write(job.result_path(), text).unwrap();
        let e = job.result().unwrap_err();
        assert_eq!(e.exit_code(), 1, "{text}: {e}");
        assert!(e.to_string().contains("result.json"), "{text}: {e}");
    }
}

#[test]
fn a_checkpoint_with_non_finite_weights_is_refused() {
    // All-NaN weights: `eval` exited 0 with an accuracy.
    use ndt::model::{ModelConfig, ParamTable, checkpoint};
    let d = TempDir::new("bad-nan-ckpt");
    let cfg = ModelConfig {
        d_model: 8,
        d_tok: 8,
        d_embed_hidden: 8,
        n_layers: 1,
        n_heads: 2,
        d_ff: 8,
        n_bins: 6,
        ln_eps: 1e-5,
        sessions: [("s".to_string(), 5)].into_iter().collect(),
    };
    let table = ParamTable::new(&cfg);
    let p = d.join("nan.safetensors");
    for bad in [f32::NAN, f32::INFINITY] {
        let mut params = vec![0.5f32; table.total];
        params[table.total / 2] = bad;
        checkpoint::save(&p, &cfg, &table, &params, &Default::default()).unwrap();
        let e = checkpoint::load(&p).unwrap_err();
        assert_eq!(e.exit_code(), 1, "{e}");
        assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
        assert!(e.to_string().contains("non-finite"), "{e}");
    }
    let params = vec![0.5f32; table.total];
    checkpoint::save(&p, &cfg, &table, &params, &Default::default()).unwrap();
    assert_eq!(checkpoint::load(&p).unwrap().1, params);
}

#[test]
fn npz_members_nobody_needs_are_not_inflated() {
    // Every member used to be inflated up front: here `junk.npy` holds 1.5 GiB of zeros in
    // about 1.5 MB. Under a 1 GiB address-space limit the import must still succeed.
    let d = TempDir::new("bad-npz-bomb");
    let bomb = d.join("bomb.npz");
    common::run_python(
        r#"
import sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    for n in ['spikes.npy', 'regions.npy', 'choice.npy']:
        z.write(src + '/' + n, n)
    with z.open('junk.npy', 'w', force_zip64=True) as f:
        block = bytes(1 << 24)
        for _ in range(96):
            f.write(block)
"#,
        &[&fixture("npy/c_u8"), &bomb],
    );
    assert!(std::fs::metadata(&bomb).unwrap().len() < 16 << 20);
    let out_dir = d.join("ds");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ndt"));
    cmd.args(["import".as_ref(), "npy".as_ref(), bomb.as_os_str()])
        .args(["--out".as_ref(), out_dir.as_os_str()]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert!(out_dir.join("manifest.json").exists());
}

#[test]
fn an_npz_member_inflating_past_its_declared_size_is_refused() {
    // The archive's headers say spikes.npy holds 100 bytes; it inflates to 5504.
    let d = TempDir::new("bad-npz-lie-src");
    let lie = d.join("lie.npz");
    common::run_python(
        r#"
import sys, struct
data = bytearray(open(sys.argv[1], 'rb').read())
# Local header of the first member (spikes.npy): uncompressed size at +22.
assert data[:4] == b'PK\x03\x04'
struct.pack_into('<I', data, 22, 100)
# Its central directory entry: uncompressed size at +24.
c = data.find(b'PK\x01\x02')
assert data[c + 46:c + 46 + 10] == b'spikes.npy'
struct.pack_into('<I', data, c + 24, 100)
open(sys.argv[2], 'wb').write(data)
"#,
        &[&fixture("npy/session.npz"), &lie],
    );
    refused(
        "bad-npz-lie",
        &[&lie],
        &[],
        &lie.join("spikes.npy"),
        "declare",
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

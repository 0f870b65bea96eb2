//! The id rule (SPEC §9, `store::check_id`) at every entry point an id comes through: `import
//! npy --id`, `meta.json` of a folder or an `.npz`, a default id taken from a file name, an edited
//! manifest, a sweep plan and a result file. Each is refused with exit 1 naming the file or the
//! flag, and nothing is written anywhere (the whole temporary tree is compared byte for byte).

mod common;

use common::{TempDir, copy_tree, fixture, ndt, ndt_ok, run_python, snapshot, stderr};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// An id that, joined to a folder, names a file four levels up.
const TRAVERSAL: &str = "/../../../../x";

/// A test tree nested deep enough that a traversal id still lands inside it (so the snapshot of
/// the tree would see anything it wrote): `<tmp>/a/b/c/d/` holds the dataset and the sources.
fn deep(tag: &str) -> (TempDir, PathBuf) {
    let d = TempDir::new(tag);
    let work = d.join("a/b/c/d");
    std::fs::create_dir_all(&work).unwrap();
    (d, work)
}

/// Imports a good session into `work/ds` (fixture id `c-u8-session`).
fn dataset(work: &Path) -> PathBuf {
    let ds = work.join("ds");
    let src = fixture("npy/c_u8");
    ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        ds.as_os_str(),
    ]);
    ds
}

/// Runs `ndt args`, checks exit 1 and that stderr holds every one of `needles`, and that the
/// whole tree `root` is byte for byte as before.
fn refused(root: &Path, args: &[&OsStr], needles: &[&str]) {
    let before = snapshot(root);
    let out = ndt(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`: {err}");
    }
    assert_eq!(snapshot(root), before, "{args:?} wrote or changed files");
}

fn import_args<'a>(src: &'a Path, ds: &'a Path, extra: &[&'a str]) -> Vec<&'a OsStr> {
    let mut a: Vec<&OsStr> = vec!["import".as_ref(), "npy".as_ref(), src.as_os_str()];
    a.extend(extra.iter().map(|s| OsStr::new(*s)));
    a.extend(["--out".as_ref(), ds.as_os_str()]);
    a
}

#[test]
fn import_refuses_a_bad_id_flag() {
    let (d, work) = deep("ids-flag");
    let ds = dataset(&work);
    let src = fixture("npy/i16");
    for (flag, bad) in [
        ("--id", TRAVERSAL),
        ("--id", ".."),
        ("--id", "a b"),
        ("--subject", "../s"),
        ("--lab", "l/x"),
    ] {
        refused(
            d.path(),
            &import_args(&src, &ds, &[flag, bad]),
            &[flag, &format!("`{bad}`")],
        );
    }
    // Into a new directory: it is not created.
    let new = work.join("new");
    refused(
        d.path(),
        &import_args(&src, &new, &["--id", TRAVERSAL]),
        &["--id"],
    );
    assert!(!new.exists());
    // A good id is still accepted.
    ndt_ok(&import_args(&src, &ds, &["--id", "i16.b-2"]));
}

/// `meta.json` with `field` set to `value`, in a copy of the c_u8 folder and in an `.npz` made
/// from that folder.
fn sources_with_meta(work: &Path, field: &str, value: &str) -> [PathBuf; 2] {
    let folder = work.join(format!("src-{field}"));
    copy_tree(&fixture("npy/c_u8"), &folder);
    let meta_path = folder.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta[field] = value.into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let npz = work.join(format!("session-{field}.npz"));
    run_python(
        "import sys, zipfile, pathlib\n\
         src, out = pathlib.Path(sys.argv[1]), sys.argv[2]\n\
         with zipfile.ZipFile(out, 'w') as z:\n\
         \x20   for p in sorted(src.iterdir()):\n\
         \x20       z.write(p, p.name)\n",
        &[&folder, &npz],
    );
    [folder, npz]
}

#[test]
fn import_refuses_a_bad_id_in_meta_json() {
    let (d, work) = deep("ids-meta");
    let ds = dataset(&work);
    for (field, shown) in [("id", "session id"), ("subject", "subject"), ("lab", "lab")] {
        for src in sources_with_meta(&work, field, TRAVERSAL) {
            let meta = src.join("meta.json");
            refused(
                d.path(),
                &import_args(&src, &ds, &[]),
                &[&meta.to_string_lossy(), shown, "holds `/`"],
            );
        }
    }
    // `--id` overrides a bad meta.json id.
    let [folder, _] = sources_with_meta(&work, "id", TRAVERSAL);
    ndt_ok(&import_args(&folder, &ds, &["--id", "fixed"]));
}

#[test]
fn a_default_id_from_a_file_name_that_breaks_the_rule_asks_for_id() {
    let (d, work) = deep("ids-default");
    let ds = dataset(&work);
    // The i16 fixture has no meta.json: its id comes from the folder name.
    let src = work.join("my session");
    copy_tree(&fixture("npy/i16"), &src);
    refused(
        d.path(),
        &import_args(&src, &ds, &[]),
        &["my session", "file name", "pass --id"],
    );
    let npz = work.join("-x.npz");
    std::fs::copy(fixture("npy/session.npz"), &npz).unwrap();
    refused(
        d.path(),
        &import_args(&npz, &ds, &[]),
        &["-x.npz", "pass --id"],
    );
    ndt_ok(&import_args(&src, &ds, &["--id", "my_session"]));
}

/// Rewrites `ds/manifest.json` with `f`.
fn edit_manifest(ds: &Path, f: impl FnOnce(String) -> String) -> PathBuf {
    let m = ds.join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, f(text)).unwrap();
    m
}

const PLAN: &str = "dataset = \"ds\"\nresults = \"results\"\nheldout_last = 1\nsizes = [1]\n\
                    seeds = [1]\ndevice = \"cpu\"\n";

#[test]
fn a_manifest_holding_a_bad_id_is_refused_by_every_reader() {
    let (d, work) = deep("ids-manifest");
    let ds = dataset(&work);
    ndt_ok(&import_args(&fixture("npy/i16"), &ds, &[]));
    let plan = work.join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();
    for (field, good, shown) in [
        ("id", "i16", "session id"),
        ("subject", "unknown", "subject"),
        ("lab", "cortexlab", "lab"),
    ] {
        let m = edit_manifest(&ds, |t| {
            t.replacen(
                &format!("\"{field}\": \"{good}\""),
                &format!("\"{field}\": \"{}\"", TRAVERSAL),
                1,
            )
        });
        assert!(std::fs::read_to_string(&m).unwrap().contains(TRAVERSAL));
        let m_shown = m.to_string_lossy().into_owned();
        let needles = [m_shown.as_str(), shown, "holds `/`"];
        refused(d.path(), &["inspect".as_ref(), ds.as_os_str()], &needles);
        refused(
            d.path(),
            &import_args(&fixture("npy/f64_integral"), &ds, &[]),
            &needles,
        );
        for extra in [&[][..], &["--list"][..]] {
            let mut args: Vec<&OsStr> = vec!["sweep".as_ref(), plan.as_os_str()];
            args.extend(extra.iter().map(OsStr::new));
            refused(d.path(), &args, &needles);
        }
        refused(d.path(), &["rank".as_ref(), plan.as_os_str()], &needles);
        edit_manifest(&ds, |t| t.replace(TRAVERSAL, good));
        ndt_ok(&["inspect".as_ref(), ds.as_os_str()]);
    }
}

#[test]
fn a_plan_with_a_bad_held_out_id_writes_nothing() {
    let (d, work) = deep("ids-plan");
    let ds = dataset(&work);
    ndt_ok(&import_args(&fixture("npy/i16"), &ds, &[]));
    let plan = work.join("plan.toml");
    for bad in [TRAVERSAL, "../i16", "i16/.."] {
        std::fs::write(
            &plan,
            PLAN.replace("heldout_last = 1", &format!("heldout = [\"{bad}\"]")),
        )
        .unwrap();
        for cmd in ["sweep", "rank"] {
            refused(
                d.path(),
                &[cmd.as_ref(), plan.as_os_str()],
                &["plan.toml", "held-out session id"],
            );
        }
        assert!(!work.join("results").exists());
    }
}

#[test]
fn report_refuses_a_result_whose_held_out_id_breaks_the_rule() {
    let (d, work) = deep("ids-report");
    let results = work.join("results");
    std::fs::create_dir_all(results.join("points")).unwrap();
    let version = ndt::exp::jobs::RESULTS_VERSION;
    let point = serde_json::json!({"results_version": version, "heldout": TRAVERSAL,
        "order": "baseline", "shuffle": 0, "k": 0, "seed": 1, "total_trials": 0, "full": false,
        "metrics": {"forward": 0.2}});
    let file = results.join("points/00000_x.json");
    std::fs::write(&file, point.to_string()).unwrap();
    refused(
        d.path(),
        &["report".as_ref(), results.as_os_str()],
        &[&file.to_string_lossy(), "held-out session id"],
    );
}

#[test]
fn ibl_import_refuses_a_bad_eid_subject_or_lab() {
    let (d, work) = deep("ids-ibl");
    let ds = dataset(&work);
    let shard = fixture("ibl/good/parquet/train-00000-of-00002.parquet");
    for column in ["eid", "subject", "lab"] {
        let bad = work.join(format!("bad-{column}.parquet"));
        run_python(
            &format!(
                "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
                 t = pq.read_table(sys.argv[1])\n\
                 i = t.schema.get_field_index('{column}')\n\
                 f = t.schema.field(i)\n\
                 t = t.set_column(i, f, pa.array(['{TRAVERSAL}'] * t.num_rows, type=f.type))\n\
                 pq.write_table(t, sys.argv[2])\n"
            ),
            &[&shard, &bad],
        );
        refused(
            d.path(),
            &[
                "import".as_ref(),
                "ibl-hf".as_ref(),
                bad.as_os_str(),
                "--out".as_ref(),
                ds.as_os_str(),
            ],
            &[&bad.to_string_lossy(), column, "holds `/`"],
        );
    }
}

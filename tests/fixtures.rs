//! Every reference fixture in `fixtures/` (written by tools/reference/make_fixtures.py from an
//! independent JAX implementation) through the CPU backend, within SPEC §8 tolerances; and the
//! check itself: a perturbed expectation fails, malformed fixtures give errors naming the file.

use ndt::fixture::{self, Tolerances};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn all_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    v.sort();
    v
}

fn base_fixture() -> PathBuf {
    fixtures_dir().join("co_smooth_2sess.safetensors")
}

/// Tensors (shape, f32 data) and metadata of a safetensors file.
type Raw = (
    BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    HashMap<String, String>,
);

fn read_raw(path: &Path) -> Raw {
    let buf = std::fs::read(path).expect("read fixture");
    let st = SafeTensors::deserialize(&buf).expect("safetensors");
    let (_, header) = SafeTensors::read_metadata(&buf).expect("header");
    let meta = header.metadata().clone().unwrap_or_default();
    let tensors = st
        .iter()
        .map(|(name, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name.to_string(), (v.shape().to_vec(), data))
        })
        .collect();
    (tensors, meta)
}

/// Writes `raw` as a safetensors file named `name` under this test's scratch directory.
fn write_raw(name: &str, raw: &Raw) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures-test");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = raw
        .0
        .iter()
        .map(|(k, (s, d))| (k.clone(), s.clone(), bytemuck::cast_slice(d).to_vec()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let buf = safetensors::tensor::serialize(views, Some(raw.1.clone())).expect("serialize");
    std::fs::write(&path, buf).expect("write");
    path
}

fn scale(raw: &mut Raw, name: &str, factor: f32) {
    let (_, d) = raw.0.get_mut(name).expect("tensor present");
    d.iter_mut().for_each(|x| *x *= factor);
}

fn load_err(path: &Path) -> String {
    match fixture::load(path) {
        Ok(_) => panic!("{} loaded, expected an error", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_fixture_passes_on_cpu() {
    let files = all_fixtures();
    assert!(
        files.len() >= 8,
        "expected the reference fixtures in {}, found {}",
        fixtures_dir().display(),
        files.len()
    );
    let mut schemes = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for f in &files {
        let r = fixture::check_fixture(f, &fixture::open_cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        schemes.insert(r.scheme);
        // Every parameter of the config has its gradient compared, plus loss and log-rates.
        let fx = fixture::load(f).expect("load");
        assert_eq!(r.tensors.len(), fx.table.entries.len() + 2);
        for t in r.failures() {
            bad.push(format!(
                "{}: {} rel.err {:.3e} > {:.0e}",
                f.display(),
                t.name,
                t.rel_err,
                t.tol
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "tensors over tolerance:\n{}",
        bad.join("\n")
    );
    assert_eq!(schemes.len(), 4, "the fixtures cover every scheme");
}

#[test]
fn perturbed_gradient_fails() {
    let mut raw = read_raw(&base_fixture());
    // 3e-4 relative: three times the gradient tolerance.
    scale(&mut raw, "grad.blocks.1.mlp.fc1.weight", 1.0 + 3e-4);
    let path = write_raw("perturbed_grad.safetensors", &raw);
    let r = fixture::check_fixture(&path, &fixture::open_cpu).expect("runs");
    assert!(!r.passed);
    let names: Vec<&str> = r.failures().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["grad.blocks.1.mlp.fc1.weight"]);
    let t = r.failures()[0];
    assert!((t.rel_err - 3e-4).abs() < 2e-5, "{}", t.rel_err);
}

#[test]
fn perturbed_outputs_fail() {
    let mut raw = read_raw(&base_fixture());
    scale(&mut raw, "log_rates", 1.0 + 3e-5);
    scale(&mut raw, "loss", 1.0 + 3e-5);
    let path = write_raw("perturbed_outputs.safetensors", &raw);
    let r = fixture::check_fixture(&path, &fixture::open_cpu).expect("runs");
    let names: Vec<&str> = r.failures().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["loss", "log_rates"]);
}

#[test]
fn gradient_of_another_session_must_be_zero() {
    // The expected gradient of session b is zero (the batch is session a); a non-zero
    // expectation there must fail, so zero gradients are compared too.
    let mut raw = read_raw(&base_fixture());
    let (_, d) = raw.0.get_mut("grad.sessions.b.token").expect("present");
    assert!(d.iter().all(|&x| x == 0.0));
    d[3] = 1e-3;
    let path = write_raw("other_session_grad.safetensors", &raw);
    let r = fixture::check_fixture(&path, &fixture::open_cpu).expect("runs");
    let names: Vec<&str> = r.failures().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["grad.sessions.b.token"]);
}

#[test]
fn tolerances_are_the_spec_ones() {
    let t = Tolerances::default();
    assert_eq!((t.output, t.grad), (1e-5, 1e-4));
}

#[test]
fn missing_tensor_is_named() {
    let mut raw = read_raw(&base_fixture());
    raw.0.remove("grad.ln_f.bias");
    let path = write_raw("missing_tensor.safetensors", &raw);
    let e = load_err(&path);
    assert!(e.contains("missing_tensor.safetensors"), "{e}");
    assert!(e.contains("missing tensor 'grad.ln_f.bias'"), "{e}");
}

#[test]
fn wrong_format_string_is_rejected() {
    let mut raw = read_raw(&base_fixture());
    raw.1.insert("format".into(), "ndt-fixture/0".into());
    let path = write_raw("wrong_format.safetensors", &raw);
    let e = load_err(&path);
    assert!(e.contains("wrong_format.safetensors"), "{e}");
    assert!(
        e.contains("'ndt-fixture/0', expected 'ndt-fixture/1'"),
        "{e}"
    );

    raw.1.remove("format");
    let path = write_raw("no_format.safetensors", &raw);
    let e = load_err(&path);
    assert!(e.contains("no 'format'"), "{e}");
}

#[test]
fn bad_metadata_and_shapes_are_rejected() {
    let raw = read_raw(&base_fixture());

    let mut r = raw.clone();
    r.1.insert("session".into(), "zz".into());
    let e = load_err(&write_raw("bad_session.safetensors", &r));
    assert!(e.contains("'zz' is not a session"), "{e}");

    let mut r = raw.clone();
    r.1.insert("scheme".into(), "backward".into());
    let e = load_err(&write_raw("bad_scheme.safetensors", &r));
    assert!(e.contains("'backward' is not one of"), "{e}");

    let mut r = raw.clone();
    r.1.insert("config".into(), "{\"d_model\": 16}".into());
    let e = load_err(&write_raw("bad_config.safetensors", &r));
    assert!(e.contains("metadata 'config'"), "{e}");

    let mut r = raw.clone();
    r.0.get_mut("mask").expect("mask").1[0] = 0.5;
    let e = load_err(&write_raw("bad_mask.safetensors", &r));
    assert!(e.contains("tensor 'mask' element 0 is 0.5"), "{e}");

    let mut r = raw.clone();
    let (shape, _) = r.0.get_mut("pos").expect("pos");
    shape.swap(0, 1);
    let e = load_err(&write_raw("bad_shape.safetensors", &r));
    assert!(
        e.contains("tensor 'pos' has shape [16, 11], expected [11, 16]"),
        "{e}"
    );

    let mut r = raw.clone();
    r.0.insert("extra".into(), (vec![1], vec![0.0]));
    let e = load_err(&write_raw("extra_tensor.safetensors", &r));
    assert!(e.contains("unknown tensor 'extra'"), "{e}");

    let mut r = raw.clone();
    r.0.get_mut("grad.pos").expect("grad.pos").1[5] = f32::NAN;
    let e = load_err(&write_raw("nan.safetensors", &r));
    assert!(e.contains("'grad.pos' holds a non-finite value"), "{e}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures-test");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").expect("write");
    let e = load_err(&garbage);
    assert!(
        e.contains("garbage.safetensors: not a valid safetensors file"),
        "{e}"
    );

    let e = load_err(&dir.join("does_not_exist.safetensors"));
    assert!(e.contains("does_not_exist.safetensors"), "{e}");
}

#[test]
fn cli_exit_status_follows_the_check() {
    let bin = env!("CARGO_BIN_EXE_ndt");
    let ok = Command::new(bin)
        .args(["check-fixture", "--threads", "2"])
        .arg(base_fixture())
        .output()
        .expect("run ndt");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("PASS") && stdout.contains("grad.blocks.1.attn.qkv.weight"));

    let mut raw = read_raw(&base_fixture());
    scale(&mut raw, "grad.embed.fc2.bias", 1.0 + 1e-3);
    let bad = write_raw("cli_perturbed.safetensors", &raw);
    let out = Command::new(bin)
        .args(["check-fixture", "--json"])
        .arg(base_fixture())
        .arg(&bad)
        .output()
        .expect("run ndt");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cli_perturbed.safetensors") && stderr.contains("grad.embed.fc2.bias"),
        "{stderr}"
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(reports[0]["passed"], true);
    assert_eq!(reports[1]["passed"], false);

    let missing = Command::new(bin)
        .args(["check-fixture", "no/such/file.safetensors"])
        .output()
        .expect("run ndt");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.safetensors"));
}

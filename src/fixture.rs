//! Reference fixture checks (SPEC §8).
//!
//! A fixture is one safetensors file written by an independent reference implementation
//! (`tools/reference/`): the parameters of a small model under their SPEC §2 names, one batch
//! (`x`, `mask`, `target`, each `[B, n_bins, N]`), and the expected `log_rates`, `loss` `[1]` and
//! `grad.{name}` of every parameter, all f32, with dropout off. Metadata: `format` =
//! `ndt-fixture/1`, `config` (the model config JSON), `session` and `scheme`.
//!
//! `check` runs the batch through a backend's `loss_and_grad` and reports, per tensor, the
//! relative error `‖got − want‖ / ‖want‖` (`‖got‖` when `want` is zero), accumulated in f64.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{Result, input, io_at};
use crate::model::checkpoint::validate_config;
use crate::model::{ModelConfig, ParamTable};
use crate::scheme::Scheme;
use safetensors::tensor::{Dtype, SafeTensors};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Value of the metadata key `format` of every fixture this module reads.
pub const FORMAT: &str = "ndt-fixture/1";

/// Relative-error tolerances of a check (SPEC §8 defaults for the f32 path).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    /// For `loss` and `log_rates`.
    pub output: f64,
    /// For every `grad.{name}`.
    pub grad: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            output: 1e-5,
            grad: 1e-4,
        }
    }
}

impl Tolerances {
    /// Defaults of the CUDA bf16 path (GEMM operands rounded to 8 bits): about three times
    /// the largest errors the fixtures show there (outputs 3e-3, gradients 1.4e-2; docs/cuda.md).
    pub const BF16: Tolerances = Tolerances {
        output: 1e-2,
        grad: 5e-2,
    };
}

/// One fixture, read and validated: parameters and expected gradients in the flat
/// `ParamTable::new(&cfg)` layout, the batch, and the expected outputs.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub path: PathBuf,
    pub cfg: ModelConfig,
    pub table: ParamTable,
    pub params: Vec<f32>,
    pub batch: Batch,
    /// `[B, n_bins, N]`
    pub log_rates: Vec<f32>,
    pub loss: f32,
    /// Expected gradient, `ParamTable` layout.
    pub grads: Vec<f32>,
}

/// The comparison of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorCheck {
    /// `loss`, `log_rates` or `grad.{parameter name}`.
    pub name: String,
    pub elements: usize,
    /// ‖want‖ (f64).
    pub norm_want: f64,
    /// ‖got − want‖ / ‖want‖, or ‖got‖ when ‖want‖ = 0; NaN when `got` is not finite.
    pub rel_err: f64,
    pub tol: f64,
}

impl TensorCheck {
    /// Within tolerance (a NaN error never is).
    pub fn ok(&self) -> bool {
        self.rel_err <= self.tol
    }
}

/// The result of checking one fixture on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct FixtureReport {
    pub path: PathBuf,
    pub backend: String,
    pub session: String,
    pub scheme: Scheme,
    /// `loss`, `log_rates`, then the gradients in `ParamTable` order.
    pub tensors: Vec<TensorCheck>,
    pub passed: bool,
}

impl FixtureReport {
    /// The tensors over their tolerance.
    pub fn failures(&self) -> Vec<&TensorCheck> {
        self.tensors.iter().filter(|t| !t.ok()).collect()
    }

    /// The tensor with the largest error relative to its tolerance.
    pub fn worst(&self) -> Option<&TensorCheck> {
        let key = |t: &TensorCheck| {
            if t.rel_err.is_nan() {
                f64::INFINITY
            } else {
                t.rel_err / t.tol
            }
        };
        self.tensors.iter().max_by(|a, b| key(a).total_cmp(&key(b)))
    }
}

/// `‖got − want‖ / ‖want‖` in f64, or `‖got‖` when `want` is all zeros. NaN if either side holds
/// a NaN or an infinity (so that it fails every tolerance). Panics if the lengths differ.
pub fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "rel_err: length mismatch");
    let (mut diff, mut nw, mut ng) = (0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        if !(g.is_finite() && w.is_finite()) {
            return f64::NAN;
        }
        diff += (g - w) * (g - w);
        nw += w * w;
        ng += g * g;
    }
    if nw > 0.0 {
        (diff / nw).sqrt()
    } else {
        ng.sqrt()
    }
}

/// The tensors of a safetensors file as f32 with their shapes, and its string metadata.
type RawTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_raw(path: &Path) -> Result<(BTreeMap<String, String>, RawTensors)> {
    let buf = std::fs::read(path).map_err(io_at(path))?;
    let bad = |e: safetensors::SafeTensorError| {
        input(path, format!("not a valid safetensors file ({e})"))
    };
    let st = SafeTensors::deserialize(&buf).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(bad)?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut tensors = RawTensors::new();
    for (name, view) in st.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(input(
                path,
                format!(
                    "tensor '{name}' has dtype {:?}, fixtures are F32",
                    view.dtype()
                ),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    Ok((meta, tensors))
}

/// Reads and validates a fixture: format and metadata, every tensor present with the shape
/// the config implies, no unknown tensors, 0/1 masks, finite values. Errors name the file.
pub fn load(path: &Path) -> Result<Fixture> {
    let (meta, mut tensors) = read_raw(path)?;
    let get_meta = |k: &str| {
        meta.get(k).ok_or_else(|| {
            input(
                path,
                format!("no '{k}' in the safetensors metadata (not an {FORMAT} fixture)"),
            )
        })
    };
    let format = get_meta("format")?;
    if format != FORMAT {
        return Err(input(
            path,
            format!("fixture format is '{format}', expected '{FORMAT}'"),
        ));
    }
    let cfg: ModelConfig = serde_json::from_str(get_meta("config")?).map_err(|e| {
        input(
            path,
            format!("metadata 'config' is not a model config: {e}"),
        )
    })?;
    validate_config(&cfg).map_err(|m| input(path, format!("metadata 'config': {m}")))?;
    let session_id = get_meta("session")?.clone();
    let (session, n) = match cfg.sessions.iter().position(|(s, _)| *s == session_id) {
        Some(i) => (i, cfg.sessions[&session_id]),
        None => {
            return Err(input(
                path,
                format!("metadata 'session' = '{session_id}' is not a session of the config"),
            ));
        }
    };
    let scheme_name = get_meta("scheme")?;
    let scheme = Scheme::parse(scheme_name).ok_or_else(|| {
        input(
            path,
            format!(
                "metadata 'scheme' = '{scheme_name}' is not one of \
                 co-smooth, forward, inter-region, intra-region"
            ),
        )
    })?;

    let b = match tensors.get("x") {
        Some((shape, _)) if shape.len() == 3 && shape[0] > 0 => shape[0],
        Some((shape, _)) => {
            return Err(input(
                path,
                format!(
                    "tensor 'x' has shape {shape:?}, expected [B, {}, {n}]",
                    cfg.n_bins
                ),
            ));
        }
        None => return Err(input(path, "missing tensor 'x'")),
    };
    let mut take = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let (got, data) = tensors
            .remove(name)
            .ok_or_else(|| input(path, format!("missing tensor '{name}'")))?;
        if got != shape {
            return Err(input(
                path,
                format!("tensor '{name}' has shape {got:?}, expected {shape:?}"),
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(input(
                path,
                format!("tensor '{name}' holds a non-finite value at element {i}"),
            ));
        }
        Ok(data)
    };

    let table = ParamTable::new(&cfg);
    let mut params = vec![0f32; table.total];
    let mut grads = vec![0f32; table.total];
    for e in &table.entries {
        params[e.range()].copy_from_slice(&take(&e.name, &e.shape)?);
        grads[e.range()].copy_from_slice(&take(&format!("grad.{}", e.name), &e.shape)?);
    }

    let t = cfg.n_bins;
    let counts = take("x", &[b, t, n])?;
    let mask = take("mask", &[b, t, n])?;
    let target = take("target", &[b, t, n])?;
    let log_rates = take("log_rates", &[b, t, n])?;
    let loss = take("loss", &[1])?[0];
    if let Some(name) = tensors.keys().next() {
        return Err(input(
            path,
            format!(
                "unknown tensor '{name}' (not a parameter of the config, a batch array or an expected value)"
            ),
        ));
    }
    let to_u8 = |name: &str, v: &[f32]| -> Result<Vec<u8>> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| match x {
                0.0 => Ok(0),
                1.0 => Ok(1),
                _ => Err(input(
                    path,
                    format!("tensor '{name}' element {i} is {x}, expected 0 or 1"),
                )),
            })
            .collect()
    };
    let mask = to_u8("mask", &mask)?;
    let target = to_u8("target", &target)?;
    if let Some(i) = counts.iter().position(|&c| c < 0.0) {
        return Err(input(
            path,
            format!("tensor 'x' element {i} is a negative count"),
        ));
    }
    if !target.contains(&1) {
        return Err(input(path, "tensor 'target' has no entry in the loss"));
    }
    let batch = Batch {
        session,
        session_id,
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        mask,
        target,
        scheme,
    };
    Ok(Fixture {
        path: path.to_path_buf(),
        cfg,
        table,
        params,
        batch,
        log_rates,
        loss,
        grads,
    })
}

/// Runs a loaded fixture on `backend` (built for `fx.cfg`) and compares every tensor.
pub fn check(fx: &Fixture, backend: &mut dyn Backend, tol: Tolerances) -> Result<FixtureReport> {
    backend.set_params(&fx.params)?;
    let (out, grads) = backend.loss_and_grad(&fx.batch)?;
    let mut tensors = Vec::with_capacity(fx.table.entries.len() + 2);
    let mut add = |name: String, got: &[f32], want: &[f32], tol: f64| {
        // A backend returning the wrong number of elements is its own bug: report it as NaN.
        let rel_err = if got.len() == want.len() {
            rel_err(got, want)
        } else {
            f64::NAN
        };
        tensors.push(TensorCheck {
            name,
            elements: want.len(),
            norm_want: want
                .iter()
                .map(|&w| (w as f64) * (w as f64))
                .sum::<f64>()
                .sqrt(),
            rel_err,
            tol,
        });
    };
    add("loss".into(), &[out.loss], &[fx.loss], tol.output);
    add(
        "log_rates".into(),
        &out.log_rates,
        &fx.log_rates,
        tol.output,
    );
    for e in &fx.table.entries {
        let got = grads.get(e.range()).unwrap_or(&[]);
        add(
            format!("grad.{}", e.name),
            got,
            &fx.grads[e.range()],
            tol.grad,
        );
    }
    let passed = tensors.iter().all(TensorCheck::ok);
    Ok(FixtureReport {
        path: fx.path.clone(),
        backend: backend.name(),
        session: fx.batch.session_id.clone(),
        scheme: fx.batch.scheme,
        tensors,
        passed,
    })
}

/// Opens a backend for a fixture's config.
pub type OpenBackend<'a> = &'a dyn Fn(&ModelConfig) -> Result<Box<dyn Backend>>;

/// Loads the fixture at `path`, opens a backend for its config with `open`, and checks it
/// with the default tolerances.
pub fn check_fixture(path: &Path, open: OpenBackend) -> Result<FixtureReport> {
    let fx = load(path)?;
    let mut backend = open(&fx.cfg)?;
    check(&fx, backend.as_mut(), Tolerances::default())
}

/// The CPU reference backend for `cfg`, on every available core.
pub fn open_cpu(cfg: &ModelConfig) -> Result<Box<dyn Backend>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Box::new(crate::cpu::CpuBackend::new(cfg.clone(), threads)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_err_is_relative_to_want() {
        assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        // 2^-8 is exact in f32: ||(0, 2^-8)|| / ||(3, 4)|| = 2^-8 / 5.
        let e = rel_err(&[3.0, 4.0 + 0.00390625], &[3.0, 4.0]);
        assert!((e - 0.00390625 / 5.0).abs() < 1e-15, "{e}");
    }

    #[test]
    fn rel_err_uses_norm_of_got_when_want_is_zero() {
        assert_eq!(rel_err(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        let e = rel_err(&[3e-6, 4e-6], &[0.0, 0.0]);
        assert!((e - 5e-6).abs() < 1e-12, "{e}");
    }

    #[test]
    fn non_finite_values_fail_every_tolerance() {
        let c = TensorCheck {
            name: "x".into(),
            elements: 2,
            norm_want: 1.0,
            rel_err: rel_err(&[f32::NAN, 0.0], &[1.0, 0.0]),
            tol: 1.0,
        };
        assert!(c.rel_err.is_nan());
        assert!(!c.ok());
        assert!(rel_err(&[f32::INFINITY], &[0.0]).is_nan());
    }
}

//! `ndt check-fixture FILE... [--device cpu|cuda] [--json]`: runs reference fixtures (SPEC §8)
//! through a backend and prints the relative error of every tensor. Exits 1 when a tensor is
//! over its tolerance.

use crate::backend::Backend;
use crate::error::{Result, input, internal, usage};
use crate::fixture::{self, FixtureReport, Tolerances};
use crate::model::ModelConfig;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Fixture files (safetensors, format ndt-fixture/1), e.g. fixtures/*.safetensors.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Backend to check.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub device: String,
    /// CPU threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Relative-error tolerance of the loss and the log-rates [default: 1e-5; 1e-2 with
    /// --precision bf16].
    #[arg(long)]
    pub tol_output: Option<f64>,
    /// Relative-error tolerance of every gradient [default: 1e-4; 5e-2 with --precision bf16].
    #[arg(long)]
    pub tol_grad: Option<f64>,
    /// CUDA precision: f32 (exact, checked at the fixture tolerances) or bf16 (tensor cores,
    /// checked at the looser bf16 tolerances unless --tol-output / --tol-grad are given).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub precision: String,
    /// Print the reports as JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let base = if args.device == "cuda" && args.precision == "bf16" {
        Tolerances::BF16
    } else {
        Tolerances::default()
    };
    let tol = Tolerances {
        output: args.tol_output.unwrap_or(base.output),
        grad: args.tol_grad.unwrap_or(base.grad),
    };
    for (flag, v) in [("--tol-output", tol.output), ("--tol-grad", tol.grad)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(usage(format!("{flag} must be a positive number, got {v}")));
        }
    }
    if args.threads == Some(0) {
        return Err(usage("--threads must be at least 1"));
    }
    let mut reports = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let fx = fixture::load(path)?;
        let mut backend = open(&args, &fx.cfg, cuda)?;
        let report = fixture::check(&fx, backend.as_mut(), tol)?;
        if !args.json {
            print_table(&report);
        }
        reports.push(report);
    }
    if args.json {
        let s = serde_json::to_string_pretty(&reports)
            .map_err(|e| internal(format!("report JSON: {e}")))?;
        println!("{s}");
    }
    let failed: Vec<&FixtureReport> = reports.iter().filter(|r| !r.passed).collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => {
            let worst = first
                .worst()
                .map(|t| format!("; worst {} at {:.2e} > {:.0e}", t.name, t.rel_err, t.tol))
                .unwrap_or_default();
            Err(input(
                &first.path,
                format!(
                    "{} of {} tensors over tolerance on {}{worst} ({} of {} fixtures failed)",
                    first.failures().len(),
                    first.tensors.len(),
                    first.backend,
                    failed.len(),
                    reports.len()
                ),
            ))
        }
    }
}

fn open(args: &Args, cfg: &ModelConfig, cuda: &crate::cuda::Settings) -> Result<Box<dyn Backend>> {
    match args.device.as_str() {
        "cpu" => match args.threads {
            Some(n) => Ok(Box::new(crate::cpu::CpuBackend::new(cfg.clone(), n))),
            None => fixture::open_cpu(cfg),
        },
        _ => {
            let prec = if args.precision == "bf16" {
                crate::cuda::Precision::Bf16
            } else {
                crate::cuda::Precision::F32
            };
            let settings = crate::cuda::Settings {
                precision: prec,
                ..*cuda
            };
            crate::cuda::open_backend(cfg.clone(), &settings)
        }
    }
}

fn print_table(r: &FixtureReport) {
    println!(
        "{}  backend {}  session {}  scheme {}  {}",
        r.path.display(),
        r.backend,
        r.session,
        r.scheme,
        if r.passed { "PASS" } else { "FAIL" }
    );
    let w = r.tensors.iter().map(|t| t.name.len()).max().unwrap_or(6);
    println!(
        "  {:<w$}  {:>8}  {:>10}  {:>9}  {:>7}",
        "tensor", "elements", "|want|", "rel.err", "tol"
    );
    for t in &r.tensors {
        println!(
            "  {:<w$}  {:>8}  {:>10.3e}  {:>9.2e}  {:>7.0e}{}",
            t.name,
            t.elements,
            t.norm_want,
            t.rel_err,
            t.tol,
            if t.ok() { "" } else { "  FAIL" }
        );
    }
    println!();
}

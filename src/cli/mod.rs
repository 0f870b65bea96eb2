//! The `ndt` command line (SPEC §10). Each subcommand lives in its own file with its clap
//! `Args` and a `run` function; this file only dispatches and maps errors to exit codes.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod check_fixture;
pub mod eval;
pub mod finetune;
pub mod import;
pub mod inspect;
pub mod rank;
pub mod report;
pub mod sweep;
pub mod synth;
pub mod train;

#[derive(Parser, Debug)]
#[command(
    name = "ndt",
    version,
    about = "Neural Data Transformers on multi-session spike recordings"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a synthetic multi-session dataset with known heterogeneity.
    Synth(synth::Args),
    /// Import sessions into a dataset (formats: npy, ibl-hf, alf, nwb).
    #[command(subcommand)]
    Import(import::Command),
    /// Summarise a dataset.
    Inspect(inspect::Args),
    /// Pretrain a model on sessions of a dataset.
    Train(train::Args),
    /// Finetune a pretrained model on a new session.
    Finetune(finetune::Args),
    /// Evaluate a model on a session's test split.
    Eval(eval::Args),
    /// Check the model against a reference fixture.
    CheckFixture(check_fixture::Args),
    /// Time training steps and evaluation.
    Bench(bench::Args),
    /// Rank pretraining sessions for held-out sessions (session selection).
    Rank(rank::Args),
    /// Run a sweep plan (pretraining sizes x orders x seeds x held-out sessions).
    Sweep(sweep::Args),
    /// Tables and plots from sweep results.
    Report(report::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    // The backend's settings: read from the environment here, once, by the commands that open
    // a backend, and passed down (`crate::cuda::Settings`).
    let cuda = crate::cuda::Settings::from_env;
    let res = match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Import(c) => import::run(c),
        Command::Inspect(a) => inspect::run(a),
        Command::Train(a) => cuda().and_then(|s| train::run(a, &s)),
        Command::Finetune(a) => cuda().and_then(|s| finetune::run(a, &s)),
        Command::Eval(a) => cuda().and_then(|s| eval::run(a, &s)),
        Command::CheckFixture(a) => cuda().and_then(|s| check_fixture::run(a, &s)),
        Command::Bench(a) => cuda().and_then(|s| bench::run(a, &s)),
        Command::Rank(a) => cuda().and_then(|s| rank::run(a, &s)),
        Command::Sweep(a) => cuda().and_then(|s| sweep::run(a, &s)),
        Command::Report(a) => report::run(a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

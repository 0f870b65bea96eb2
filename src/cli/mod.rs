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
    let res = match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Import(c) => import::run(c),
        Command::Inspect(a) => inspect::run(a),
        Command::Train(a) => train::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Eval(a) => eval::run(a),
        Command::CheckFixture(a) => check_fixture::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Rank(a) => rank::run(a),
        Command::Sweep(a) => sweep::run(a),
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

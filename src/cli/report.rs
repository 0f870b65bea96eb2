//! `ndt report RESULTS [--out DIR]`: gathers every point result of a sweep (wherever it ran, as
//! long as its results folder is reachable) and writes the paper's tables and plots.

use crate::error::{Result, input};
use crate::exp::{report, sweep};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A sweep's results folder (the plan's `results`), or the plan file itself.
    pub results: PathBuf,
    /// Where the report goes (default: RESULTS/report).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let results = if args.results.is_file() {
        crate::exp::plan::Plan::load(&args.results)?.results
    } else {
        args.results.clone()
    };
    let points = sweep::gather(&results)?;
    if points.is_empty() {
        return Err(input(
            &results,
            "no point results found under points/ (has the sweep run?)",
        ));
    }
    let rankings = sweep::gather_rankings(&results)?;
    let out = args.out.unwrap_or_else(|| results.join("report"));
    let md = report::write_report(&out, &points, &rankings)?;
    if args.json {
        let (_, t1) = report::table1(&points);
        let v = serde_json::json!({"points": points.len(), "out": out, "table1_csv": t1,
            "fits": report::scaling_fits(&points), "rankings": rankings});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{md}");
        eprintln!("report written to {}", out.display());
    }
    Ok(())
}

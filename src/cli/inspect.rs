//! `ndt inspect DATASET [--json]`.

use crate::error::{Result, internal};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset directory (holding manifest.json).
    pub dataset: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ds = crate::store::Dataset::open(&args.dataset)?;
    let sum = crate::inspect::summarize(&ds);
    if args.json {
        let text = serde_json::to_string_pretty(&sum)
            .map_err(|e| internal(format!("inspect json: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", crate::inspect::render_table(&sum));
    }
    Ok(())
}

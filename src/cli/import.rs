//! `ndt import npy|ibl-hf`.

use crate::error::{Result, usage};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// A session as .npz or a folder of .npy files.
    Npy,
    /// HuggingFace parquet shards / Arrow IPC files of the IBL releases.
    IblHf,
}

pub fn run(_cmd: Command) -> Result<()> {
    Err(usage("ndt import: not built yet"))
}

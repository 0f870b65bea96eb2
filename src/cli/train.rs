//! `ndt train`.

use crate::error::{Result, usage};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> Result<()> {
    Err(usage("ndt train: not built yet"))
}

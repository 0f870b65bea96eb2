//! `ndt import npy|ibl-hf`.

use crate::error::Result;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Sessions saved with NumPy: .npz archives or folders of .npy files.
    Npy(crate::import::npy::Args),
    /// HuggingFace parquet shards / Arrow IPC files of the IBL releases.
    IblHf(crate::import::ibl_hf::Args),
    /// IBL sessions as the ONE API downloads them (ALF folders), binned into trials.
    Alf(crate::import::alf::Args),
    /// Neurodata Without Borders (NWB 2, HDF5) files: units binned into trial windows.
    Nwb(crate::import::nwb::Args),
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Npy(a) => crate::import::npy::run(a),
        Command::IblHf(a) => crate::import::ibl_hf::run(a),
        Command::Alf(a) => crate::import::alf::run(a),
        Command::Nwb(a) => crate::import::nwb::run(a),
    }
}

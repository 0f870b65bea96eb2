//! `ndt import FORMAT`: one subcommand per importer of `src/import/`, registered in
//! `importers!` below (the variant's name is the subcommand: `IblHf` is `ibl-hf`).

use crate::error::Result;

/// Declares the `import` subcommands and their dispatch from one list: each entry is an
/// importer module of `crate::import` with `pub struct Args` (clap) and `pub fn run(Args)`.
macro_rules! importers {
    ($($(#[doc = $doc:literal])* $variant:ident => $module:ident,)*) => {
        #[derive(clap::Subcommand, Debug)]
        pub enum Command {
            $($(#[doc = $doc])* $variant(crate::import::$module::Args),)*
        }

        pub fn run(cmd: Command) -> Result<()> {
            match cmd {
                $(Command::$variant(a) => crate::import::$module::run(a),)*
            }
        }
    };
}

importers! {
    /// Sessions saved with NumPy: .npz archives or folders of .npy files.
    Npy => npy,
    /// HuggingFace parquet shards / Arrow IPC files of the IBL releases.
    IblHf => ibl_hf,
    /// IBL sessions as the ONE API downloads them (ALF folders), binned into trials.
    Alf => alf,
    /// Neurodata Without Borders (NWB 2, HDF5) files: units binned into trial windows.
    Nwb => nwb,
}

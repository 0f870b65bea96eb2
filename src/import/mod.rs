//! Importers (SPEC §1): `npy` (sessions saved with NumPy), `ibl_hf` (the IBL releases on
//! HuggingFace) and `alf` (IBL sessions as ONE downloads them, binned with `bin`). Each reads
//! and checks its sources, then streams sessions into the store through
//! `crate::store::DatasetWriter`.

pub mod alf;
pub mod bin;
pub mod ibl_hf;
pub mod npy;
pub mod nwb;

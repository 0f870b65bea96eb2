//! Importers (SPEC §1): `npy` (sessions saved with NumPy) and `ibl_hf` (the IBL releases on
//! HuggingFace). Each reads and checks its sources, then streams sessions into the store through
//! `crate::store::DatasetWriter`.

pub mod ibl_hf;
pub mod npy;
pub mod nwb;

//! Dataset store (SPEC §1): one directory per dataset, every array a plain `.npy` file that
//! `numpy.load(..., mmap_mode="r")` opens, plus `manifest.json`.
//!
//! ```text
//! DATASET/manifest.json                 format "ndt-dataset", format_version 1
//! DATASET/sessions/<k>/spikes.npy       uint8 [n_trials, n_bins, n_neurons], C order
//! DATASET/sessions/<k>/choice.npy       int8 [n_trials]  (-1 / +1, 0 = unknown)
//! DATASET/sessions/<k>/regions.npy      unicode [n_neurons] (a copy of the manifest's labels)
//! DATASET/sessions/<k>/<name>.npy       float32 [n_trials] optional behaviour (reward, ...)
//! ```
//!
//! - `id`: the rule for ids that become paths.
//! - `npy`: the `.npy` reader and writer.
//! - `manifest`: the manifest schema and its checks.
//! - `dataset`: the read side (memory-mapped counts).
//! - `writer`: the write side (staged, atomic commit).

pub mod dataset;
pub mod id;
pub mod manifest;
pub mod npy;
pub mod writer;

pub use dataset::Dataset;
pub use id::{MAX_ID_LEN, check_id, is_valid_id};
pub use manifest::{FORMAT_VERSION, Manifest, SessionInfo, Split, SplitName};
pub use writer::{DatasetWriter, NewSession};

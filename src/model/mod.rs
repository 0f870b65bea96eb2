//! The model: config, parameter table, init, checkpoints.

pub mod adamw;
pub mod checkpoint;
pub mod config;
pub mod init;
pub mod params;
pub use config::ModelConfig;
pub use params::{ParamEntry, ParamTable};

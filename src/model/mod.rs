//! The model: config, parameter table, shapes, dropout rules, init, checkpoints.

pub mod adamw;
pub mod checkpoint;
pub mod config;
pub mod dropout;
pub mod init;
pub mod params;
pub mod shape;
pub use config::ModelConfig;
pub use params::{ParamEntry, ParamTable};

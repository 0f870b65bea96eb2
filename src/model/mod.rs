//! The model: config, parameter table, init, checkpoints.

pub mod config;
pub use config::ModelConfig;

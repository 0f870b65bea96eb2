//! Training (SPEC §4): the OneCycle schedule, the epoch loop over a backend, checkpoints,
//! resume, finetuning set-up and the JSON-lines log.

pub mod config;
pub mod device;
pub mod finetune;
pub mod log;
pub mod run;
pub mod schedule;
pub mod state;
pub mod trainer;

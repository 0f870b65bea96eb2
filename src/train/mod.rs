//! Training (SPEC §4): the OneCycle schedule, the epoch loop over a backend, checkpoints at a
//! cadence, resume, the run lock, stop signals, finetuning set-up and the JSON-lines log.

pub mod cadence;
pub mod config;
pub mod device;
pub mod finetune;
pub mod group;
pub mod lock;
pub mod log;
pub mod run;
pub mod schedule;
pub mod signals;
pub mod state;
pub mod trainer;

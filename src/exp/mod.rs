//! Experiments of the paper as commands (SPEC §6): session ranking, sweeps, reports.

pub mod jobs;
pub mod plan;
pub mod rank_methods;
pub mod rank_stitch;
pub mod report;
pub mod slurm;
pub mod stats;
pub mod sweep;
pub mod work;

//! Experiments: rank, sweep, report.

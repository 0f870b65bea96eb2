//! Synthetic data (SPEC §1).

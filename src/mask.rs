//! Masking (SPEC §3).

//! Reference fixture checks (SPEC §8).

//! Dataset store (SPEC §1).

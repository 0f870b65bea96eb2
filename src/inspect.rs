//! `ndt inspect`.

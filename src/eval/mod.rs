//! Evaluation (SPEC §5): bits per spike, the four masked-prediction tasks on a session's test
//! split, and choice decoding from intermediate features.

pub mod bps;
pub mod bwb;
pub mod choice;
pub mod d2;
pub mod glm;
pub mod tasks;

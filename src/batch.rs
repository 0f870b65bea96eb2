//! Single-session batches: counts, input mask and target mask, `[B, T, N]` row-major
//! (trial-major, then bin, then neuron), as SPEC §3 defines them.
//!
//! The iterator over a split lives here too (see `BatchIter`).

use crate::scheme::Scheme;

/// One batch of one session. All three arrays are `[b, t, n]`, row-major.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Index of the session in the dataset manifest.
    pub session: usize,
    /// Session id: selects the stitchers and session token of the model.
    pub session_id: String,
    /// Trial indices (within the session) of the batch rows.
    pub trials: Vec<u32>,
    pub b: usize,
    pub t: usize,
    pub n: usize,
    /// Spike counts as f32 (exact small integers).
    pub counts: Vec<f32>,
    /// 1 where the input is zeroed.
    pub mask: Vec<u8>,
    /// 1 where the entry is in the loss.
    pub target: Vec<u8>,
    /// The scheme that produced mask/target; selects the prompt token and causal attention.
    pub scheme: Scheme,
}

impl Batch {
    pub fn causal(&self) -> bool {
        self.scheme.causal()
    }
}

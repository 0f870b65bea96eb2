//! Model configuration (SPEC §2 defaults = the paper's Table 2).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub d_model: usize,
    pub d_tok: usize,
    /// Hidden width of the embedding MLP (default 2·d_tok).
    pub d_embed_hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub n_bins: usize,
    pub ln_eps: f32,
    /// Session id -> number of neurons. Ordered by id; the order fixes the parameter layout.
    pub sessions: BTreeMap<String, usize>,
}

impl ModelConfig {
    /// The paper's Table 2 config for the given sessions.
    pub fn paper(n_bins: usize, sessions: BTreeMap<String, usize>) -> Self {
        ModelConfig {
            d_model: 512,
            d_tok: 668,
            d_embed_hidden: 2 * 668,
            n_layers: 5,
            n_heads: 8,
            d_ff: 1024,
            n_bins,
            ln_eps: 1e-5,
            sessions,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Sequence length including the two prefix tokens.
    pub fn seq_len(&self) -> usize {
        self.n_bins + 2
    }
}

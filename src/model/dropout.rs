//! defines: DropoutCfg, check_dropout, dropout_streams
//!
//! The dropout rules both backends follow. A pass drops with probability `p` and the step seed
//! `seed` (`StepHyper.seed`); every dropout site of the model draws from its own RNG stream, so
//! a kernel reproduces the CPU's draws without sharing state. The draw itself (key
//! `rng::key(seed, stream)`, element `i` kept iff `rng::uniform(key, i) >= p`, a kept element
//! scaled by `1 / (1 − p)`) is written in `src/cpu/dropout.rs` and its twin `ndt_drop_factor` (`kernels/common.cuh`).
//!
//! Streams: 0 = the input sequence `[B, S, D]` (step 4 of SPEC §2); for block `l`: `1 + 3l` =
//! attention probabilities `[B, H, S, S]`, `2 + 3l` = the attention residual branch
//! `[B, S, D]`, `3 + 3l` = the MLP residual branch `[B, S, D]`.

use crate::error::{Result, usage};

/// Dropout of one pass: probability and step seed (p = 0: off, e.g. evaluation).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DropoutCfg {
    pub p: f32,
    pub seed: u64,
}

impl DropoutCfg {
    pub const OFF: DropoutCfg = DropoutCfg { p: 0.0, seed: 0 };
}

/// Checks that a training step's dropout probability is in [0, 1).
pub fn check_dropout(p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(usage(format!("dropout {p} is not in [0, 1)")));
    }
    Ok(())
}

/// The dropout stream numbers of the model (documented at the top of this file).
pub mod dropout_streams {
    pub const SEQUENCE: u64 = 0;
    pub fn attn_probs(layer: usize) -> u64 {
        1 + 3 * layer as u64
    }
    pub fn attn_resid(layer: usize) -> u64 {
        2 + 3 * layer as u64
    }
    pub fn mlp_resid(layer: usize) -> u64 {
        3 + 3 * layer as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn check_dropout_takes_zero_up_to_but_not_one() {
        for p in [0.0, 0.2, 0.999] {
            assert!(check_dropout(p).is_ok(), "{p}");
        }
        for p in [1.0, -0.1, f32::NAN, f32::INFINITY] {
            match check_dropout(p) {
                Err(Error::Usage(m)) => assert!(m.contains("is not in [0, 1)"), "{m}"),
                other => panic!("dropout {p}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_site_has_its_own_stream_in_layer_order() {
        let mut streams = vec![dropout_streams::SEQUENCE];
        for l in 0..4 {
            streams.push(dropout_streams::attn_probs(l));
            streams.push(dropout_streams::attn_resid(l));
            streams.push(dropout_streams::mlp_resid(l));
        }
        assert_eq!(streams, (0..13).collect::<Vec<u64>>());
    }
}

//! defines: Dims, Layout, check_batch, check_block
//!
//! The shapes of the model that every backend shares: `Dims` holds the dimension letters of one
//! batch through one model, `Layout` the ranges of every named parameter tensor in the flat
//! vector (from `ParamTable`), and `check_batch` and `check_block` say whether a batch, and a
//! block whose output a forward captures, fit the model at all. The activation buffers are
//! each backend's own (`src/cpu/workspace.rs`, `src/cuda/workspace.rs`).
//!
//! Dimension letters: B batch, T bins, S = T + 2 sequence, N neurons, D d_model, E d_tok,
//! G d_embed_hidden, F d_ff, H heads, L blocks.

use crate::batch::Batch;
use crate::error::{Result, internal, usage};
use crate::model::{ModelConfig, ParamTable};
use std::collections::BTreeMap;
use std::ops::Range;

/// The dimensions of one batch through one model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub s: usize,
    pub n: usize,
    pub d: usize,
    pub e: usize,
    pub g: usize,
    pub f: usize,
    pub h: usize,
    pub l: usize,
}

impl Dims {
    pub fn new(cfg: &ModelConfig, b: usize, t: usize, n: usize) -> Dims {
        Dims {
            b,
            t,
            s: t + 2,
            n,
            d: cfg.d_model,
            e: cfg.d_tok,
            g: cfg.d_embed_hidden,
            f: cfg.d_ff,
            h: cfg.n_heads,
            l: cfg.n_layers,
        }
    }

    /// B·T rows of the data tokens.
    pub fn bt(&self) -> usize {
        self.b * self.t
    }

    /// B·S rows of the sequence.
    pub fn bs(&self) -> usize {
        self.b * self.s
    }

    /// Elements of one `[B, H, S, S]` attention tensor.
    pub fn bhss(&self) -> usize {
        self.b * self.h * self.s * self.s
    }
}

/// Ranges of one session's tensors.
#[derive(Clone, Debug)]
pub struct SessionRanges {
    pub in_w: Range<usize>,
    pub in_b: Range<usize>,
    pub out_w: Range<usize>,
    pub out_b: Range<usize>,
    pub token: Range<usize>,
}

/// Ranges of one block's tensors.
#[derive(Clone, Debug)]
pub struct BlockRanges {
    pub ln1_w: Range<usize>,
    pub ln1_b: Range<usize>,
    pub qkv_w: Range<usize>,
    pub qkv_b: Range<usize>,
    pub out_w: Range<usize>,
    pub out_b: Range<usize>,
    pub ln2_w: Range<usize>,
    pub ln2_b: Range<usize>,
    pub fc1_w: Range<usize>,
    pub fc1_b: Range<usize>,
    pub fc2_w: Range<usize>,
    pub fc2_b: Range<usize>,
}

/// Ranges of every named tensor in the flat parameter vector.
#[derive(Clone, Debug)]
pub struct Layout {
    pub sessions: BTreeMap<String, SessionRanges>,
    pub emb_fc1_w: Range<usize>,
    pub emb_fc1_b: Range<usize>,
    pub emb_fc2_w: Range<usize>,
    pub emb_fc2_b: Range<usize>,
    pub pos: Range<usize>,
    pub mask_tokens: Range<usize>,
    pub blocks: Vec<BlockRanges>,
    pub lnf_w: Range<usize>,
    pub lnf_b: Range<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(cfg: &ModelConfig, table: &ParamTable) -> Layout {
        let r = |name: &str| table.entry(name).range();
        let sessions = cfg
            .sessions
            .keys()
            .map(|sid| {
                let p = format!("sessions.{sid}");
                let s = SessionRanges {
                    in_w: r(&format!("{p}.stitch_in.weight")),
                    in_b: r(&format!("{p}.stitch_in.bias")),
                    out_w: r(&format!("{p}.stitch_out.weight")),
                    out_b: r(&format!("{p}.stitch_out.bias")),
                    token: r(&format!("{p}.token")),
                };
                (sid.clone(), s)
            })
            .collect();
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let p = |s: &str| r(&format!("blocks.{i}.{s}"));
                BlockRanges {
                    ln1_w: p("ln1.weight"),
                    ln1_b: p("ln1.bias"),
                    qkv_w: p("attn.qkv.weight"),
                    qkv_b: p("attn.qkv.bias"),
                    out_w: p("attn.out.weight"),
                    out_b: p("attn.out.bias"),
                    ln2_w: p("ln2.weight"),
                    ln2_b: p("ln2.bias"),
                    fc1_w: p("mlp.fc1.weight"),
                    fc1_b: p("mlp.fc1.bias"),
                    fc2_w: p("mlp.fc2.weight"),
                    fc2_b: p("mlp.fc2.bias"),
                }
            })
            .collect();
        Layout {
            sessions,
            emb_fc1_w: r("embed.fc1.weight"),
            emb_fc1_b: r("embed.fc1.bias"),
            emb_fc2_w: r("embed.fc2.weight"),
            emb_fc2_b: r("embed.fc2.bias"),
            pos: r("pos"),
            mask_tokens: r("mask_tokens"),
            blocks,
            lnf_w: r("ln_f.weight"),
            lnf_b: r("ln_f.bias"),
            total: table.total,
        }
    }
}

/// Checks that `batch` fits the model: a known session with the right N, 1 ≤ T ≤ n_bins,
/// and arrays of length B·T·N.
pub fn check_batch(cfg: &ModelConfig, batch: &Batch) -> Result<()> {
    let n = *cfg.sessions.get(&batch.session_id).ok_or_else(|| {
        usage(format!(
            "session '{}' is not in the model (it has {})",
            batch.session_id,
            cfg.sessions.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    if batch.n != n {
        return Err(usage(format!(
            "session '{}' has {} neurons in the batch but {n} in the model",
            batch.session_id, batch.n
        )));
    }
    if batch.t == 0 || batch.t > cfg.n_bins || batch.b == 0 {
        return Err(usage(format!(
            "batch of {} trials × {} bins does not fit a model of {} bins",
            batch.b, batch.t, cfg.n_bins
        )));
    }
    let len = batch.b * batch.t * batch.n;
    if batch.counts.len() != len || batch.mask.len() != len || batch.target.len() != len {
        return Err(internal(format!(
            "batch arrays have lengths {}/{}/{}, expected {len}",
            batch.counts.len(),
            batch.mask.len(),
            batch.target.len()
        )));
    }
    Ok(())
}

/// Checks that block `k` (0-based, the block whose output a forward captures) is in the model.
pub fn check_block(cfg: &ModelConfig, k: usize) -> Result<()> {
    if k >= cfg.n_layers {
        return Err(usage(format!(
            "block {k} does not exist (the model has {} blocks)",
            cfg.n_layers
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::scheme::Scheme;

    fn cfg() -> ModelConfig {
        let mut c = ModelConfig::paper(5, BTreeMap::from([("a".to_string(), 3)]));
        c.n_layers = 2;
        c
    }

    fn batch(b: usize, t: usize, n: usize) -> Batch {
        Batch {
            session: 0,
            session_id: "a".into(),
            trials: (0..b as u32).collect(),
            b,
            t,
            n,
            counts: vec![0.0; b * t * n],
            mask: vec![0; b * t * n],
            target: vec![0; b * t * n],
            scheme: Scheme::CoSmooth,
        }
    }

    #[test]
    fn check_batch_takes_a_batch_that_fits() {
        let c = cfg();
        assert!(check_batch(&c, &batch(2, 5, 3)).is_ok());
        assert!(check_batch(&c, &batch(1, 1, 3)).is_ok());
    }

    #[test]
    fn check_batch_names_what_does_not_fit() {
        let c = cfg();
        let usage_with = |b: &Batch, want: &str| match check_batch(&c, b) {
            Err(Error::Usage(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: {other:?}"),
        };
        let mut other = batch(2, 5, 3);
        other.session_id = "b".into();
        usage_with(&other, "session 'b' is not in the model (it has a)");
        usage_with(
            &batch(2, 5, 4),
            "has 4 neurons in the batch but 3 in the model",
        );
        usage_with(
            &batch(2, 6, 3),
            "2 trials × 6 bins does not fit a model of 5 bins",
        );
        usage_with(&batch(2, 0, 3), "does not fit");
        usage_with(&batch(0, 5, 3), "does not fit");
        let mut short = batch(2, 5, 3);
        short.mask.pop();
        match check_batch(&c, &short) {
            Err(Error::Internal(m)) => assert!(m.contains("30/29/30, expected 30"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_block_takes_the_blocks_of_the_model() {
        let c = cfg();
        assert!(check_block(&c, 0).is_ok());
        assert!(check_block(&c, 1).is_ok());
        match check_block(&c, 2) {
            Err(Error::Usage(m)) => {
                assert_eq!(m, "block 2 does not exist (the model has 2 blocks)")
            }
            other => panic!("{other:?}"),
        }
    }
}

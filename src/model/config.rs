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

/// What training a config on the CPU backend holds in memory, in bytes (see `memory_need`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Parameters in the model.
    pub n_params: u64,
    /// Parameters, gradients and both AdamW moments (4 f32 each) plus the trainable mask (1 byte).
    pub state: u64,
    /// The activation workspace for one batch (`cpu::workspace::Workspace::ensure`).
    pub workspace: u64,
    /// `state + workspace`.
    pub total: u64,
}

impl ModelConfig {
    /// Number of parameters (`ParamTable::new(self).total`) computed with checked arithmetic:
    /// None where it does not fit in a u64.
    pub fn n_params(&self) -> Option<u64> {
        let u = |v: usize| v as u64;
        let (d, e, g, f, l) = (
            u(self.d_model),
            u(self.d_tok),
            u(self.d_embed_hidden),
            u(self.d_ff),
            u(self.n_layers),
        );
        let mut total: u64 = 0;
        let mut add = |v: Option<u64>| -> Option<()> {
            total = total.checked_add(v?)?;
            Some(())
        };
        for &n in self.sessions.values() {
            let n = u(n);
            // stitch_in [E, N] + [E], stitch_out [N, D] + [N], token [D]
            add(e
                .checked_mul(n)?
                .checked_add(e)?
                .checked_add(n.checked_mul(d)?))?;
            add(n.checked_add(d))?;
        }
        // embed fc1 [G, E] + [G], fc2 [D, G] + [D], pos [T, D], mask_tokens [4, D]
        add(g.checked_mul(e)?.checked_add(g))?;
        add(d.checked_mul(g)?.checked_add(d))?;
        add(u(self.n_bins).checked_mul(d))?;
        add(d.checked_mul(4))?;
        // per block: ln1 2D, qkv 3D·D + 3D, out D·D + D, ln2 2D, fc1 F·D + F, fc2 D·F + D
        let block = d
            .checked_mul(d)?
            .checked_mul(4)?
            .checked_add(d.checked_mul(f)?.checked_mul(2)?)?
            .checked_add(d.checked_mul(9)?)?
            .checked_add(f)?;
        add(block.checked_mul(l))?;
        // ln_f
        add(d.checked_mul(2))?;
        Some(total)
    }

    /// Memory the CPU backend needs to train this config with batches of `batch` trials of its
    /// widest session: parameters, gradients, two moments, the trainable mask, and every
    /// buffer `Workspace::ensure` grows (42 f32 buffers; sizes in `cpu/workspace.rs`). None on
    /// overflow (which is more than any machine has).
    pub fn memory_need(&self, batch: usize) -> Option<MemoryNeed> {
        let u = |v: usize| v as u64;
        let n_params = self.n_params()?;
        let state = n_params.checked_mul(4 * 4 + 1)?;
        let n = u(self.sessions.values().copied().max().unwrap_or(1));
        let (b, t) = (u(batch), u(self.n_bins));
        let s = t.checked_add(2)?;
        let (d, e, g, f, h, l) = (
            u(self.d_model),
            u(self.d_tok),
            u(self.d_embed_hidden),
            u(self.d_ff),
            u(self.n_heads),
            u(self.n_layers),
        );
        let bt = b.checked_mul(t)?;
        let bs = b.checked_mul(s)?;
        let bsd = bs.checked_mul(d)?;
        let bhss = b.checked_mul(h)?.checked_mul(s)?.checked_mul(s)?;
        let terms = [
            // x, xin, r, dr: [B, T, N]
            bt.checked_mul(n)?.checked_mul(4)?,
            // h, dh: [B, T, E]
            bt.checked_mul(e)?.checked_mul(2)?,
            // a1, sg, dsg, da1: [B, T, G]
            bt.checked_mul(g)?.checked_mul(4)?,
            // emb, y, dy, demb: [B, T, D]
            bt.checked_mul(d)?.checked_mul(4)?,
            // seq, lnf, branch, dresid, dbranch, dln, datty, dseq: [B, S, D]
            bsd.checked_mul(8)?,
            // resid: [L + 1, B, S, D]
            bsd.checked_mul(l.checked_add(1)?)?,
            // ln1, atty, resid_mid, ln2: [L, B, S, D]; qkv [L, B, S, 3D]; dqkv [B, S, 3D]
            bsd.checked_mul(l)?.checked_mul(7)?,
            bsd.checked_mul(3)?,
            // ln1/ln2 mean and rstd: [L, B, S]; lnf mean and rstd: [B, S]
            bs.checked_mul(l)?.checked_mul(4)?,
            bs.checked_mul(2)?,
            // att, attd: [L, B, H, S, S]; datt: [B, H, S, S]
            bhss.checked_mul(l)?.checked_mul(2)?,
            bhss,
            // fch, fcg: [L, B, S, F]; dfcg, dfch: [B, S, F]
            bs.checked_mul(f)?.checked_mul(l)?.checked_mul(2)?,
            bs.checked_mul(f)?.checked_mul(2)?,
        ];
        let floats = terms.iter().try_fold(0u64, |a, &x| a.checked_add(x))?;
        let workspace = floats.checked_mul(4)?;
        Some(MemoryNeed {
            n_params,
            state,
            workspace,
            total: state.checked_add(workspace)?,
        })
    }

    /// Refuses, before anything is allocated, a config whose training state and workspace at
    /// `batch` would not fit in the memory available (`fsutil::available_memory`); the message
    /// gives both figures. Passes where the available memory cannot be read.
    pub fn check_memory(&self, batch: usize) -> std::result::Result<(), String> {
        let avail = crate::fsutil::available_memory();
        let Some(need) = self.memory_need(batch) else {
            return Err(format!(
                "the model's memory does not fit in 64-bit arithmetic ({} parameters or more); \
                 it cannot be trained on any machine",
                self.n_params()
                    .map_or("2^64".to_string(), |n| n.to_string())
            ));
        };
        match avail {
            Some((have, from)) if need.total > have => Err(format!(
                "the model needs {} of memory ({} parameters: {} for parameters, gradients and \
                 two AdamW moments, {} of workspace for a batch of {batch}), but {} is \
                 available ({from})",
                gib(need.total),
                need.n_params,
                gib(need.state),
                gib(need.workspace),
                gib(have)
            )),
            _ => Ok(()),
        }
    }
}

/// `bytes` as `123456789 bytes (0.11 GiB)`.
fn gib(bytes: u64) -> String {
    format!(
        "{bytes} bytes ({:.2} GiB)",
        bytes as f64 / (1u64 << 30) as f64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::workspace::Workspace;
    use crate::model::ParamTable;
    use crate::model::shape::Dims;

    fn cfg() -> ModelConfig {
        ModelConfig {
            d_model: 12,
            d_tok: 10,
            d_embed_hidden: 14,
            n_layers: 3,
            n_heads: 3,
            d_ff: 20,
            n_bins: 7,
            ln_eps: 1e-5,
            sessions: BTreeMap::from([("a".to_string(), 5), ("b".to_string(), 9)]),
        }
    }

    #[test]
    fn n_params_matches_the_layout_table() {
        let c = cfg();
        assert_eq!(c.n_params(), Some(ParamTable::new(&c).total as u64));
        let p = ModelConfig::paper(30, BTreeMap::from([("s".to_string(), 200)]));
        assert_eq!(p.n_params(), Some(ParamTable::new(&p).total as u64));
    }

    #[test]
    fn workspace_need_matches_what_the_workspace_grows_to() {
        let c = cfg();
        let batch = 4;
        let mut ws = Workspace::<f32>::new();
        ws.ensure(&Dims::new(&c, batch, c.n_bins, 9));
        let w = &ws;
        let floats: usize = [
            &w.x,
            &w.xin,
            &w.h,
            &w.a1,
            &w.sg,
            &w.emb,
            &w.seq,
            &w.resid,
            &w.ln1,
            &w.ln1_mean,
            &w.ln1_rstd,
            &w.qkv,
            &w.att,
            &w.attd,
            &w.atty,
            &w.resid_mid,
            &w.ln2,
            &w.ln2_mean,
            &w.ln2_rstd,
            &w.fch,
            &w.fcg,
            &w.lnf,
            &w.lnf_mean,
            &w.lnf_rstd,
            &w.y,
            &w.r,
            &w.branch,
            &w.dr,
            &w.dy,
            &w.dresid,
            &w.dbranch,
            &w.dln,
            &w.dqkv,
            &w.datty,
            &w.datt,
            &w.dfcg,
            &w.dfch,
            &w.dseq,
            &w.demb,
            &w.dsg,
            &w.da1,
            &w.dh,
        ]
        .iter()
        .map(|v| v.len())
        .sum();
        let need = c.memory_need(batch).unwrap();
        assert_eq!(need.workspace, 4 * floats as u64);
        assert_eq!(need.state, 17 * ParamTable::new(&c).total as u64);
        assert_eq!(need.total, need.state + need.workspace);
    }

    #[test]
    fn a_config_beyond_memory_is_refused_with_both_figures() {
        // About 1.0e11 parameters: 1.7 TB of training state, more than any test machine has.
        let mut c = cfg();
        c.d_model = 1 << 17;
        c.n_heads = 1;
        c.d_ff = 1 << 17;
        c.n_layers = 1;
        c.d_embed_hidden = 1;
        let e = c.check_memory(16).unwrap_err();
        assert!(e.contains("needs") && e.contains("available"), "{e}");
        assert!(e.contains(&c.n_params().unwrap().to_string()), "{e}");
        // Overflowing sizes are refused too, not wrapped.
        c.n_layers = usize::MAX / 2;
        assert!(c.check_memory(16).unwrap_err().contains("64-bit"));
        // A small config passes.
        assert_eq!(cfg().check_memory(16), Ok(()));
    }
}

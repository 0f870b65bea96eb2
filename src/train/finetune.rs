//! Finetuning set-up (SPEC §4): a pretrained model moved to a new session. The core (embedding,
//! positions, blocks, final norm) and the mask tokens come from the checkpoint; the session's
//! stitchers and token are freshly initialised. `full` trains everything, `frozen-core` only the
//! session's own tensors.
//!
//! The baseline of the paper is not a finetune: it is `ndt train` on the held-out session alone.

use crate::error::{Result, usage};
use crate::model::{ModelConfig, ParamTable, checkpoint, init};
use std::collections::BTreeMap;

/// Which parameters train during finetuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything trains (paper Sec. 3).
    Full,
    /// Only the new session's stitchers and token train (paper Sec. 4).
    FrozenCore,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::FrozenCore => "frozen-core",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "full" => Ok(Mode::Full),
            "frozen-core" => Ok(Mode::FrozenCore),
            _ => Err(usage(format!(
                "unknown finetuning mode '{s}' (full, frozen-core)"
            ))),
        }
    }

    /// The trainable mask of this mode for session `sid` of `cfg` (None = all trainable).
    pub fn trainable(self, cfg: &ModelConfig, sid: &str) -> Option<Vec<u8>> {
        match self {
            Mode::Full => None,
            Mode::FrozenCore => Some(ParamTable::new(cfg).session_only_mask(sid)),
        }
    }
}

/// The model config and initial parameters for finetuning the model `(src_cfg, src)` on
/// session `sid` with `n_neurons` neurons and `n_bins` bins: a config holding only that session,
/// the core and mask tokens copied from the source, the session's tensors freshly initialised
/// from `seed` (even when the source has a session of the same id).
pub fn finetune_init(
    src_cfg: &ModelConfig,
    src: &[f32],
    sid: &str,
    n_neurons: usize,
    n_bins: usize,
    seed: u64,
) -> Result<(ModelConfig, Vec<f32>)> {
    if src_cfg.n_bins != n_bins {
        return Err(usage(format!(
            "the checkpoint's model has {} bins, session {sid} has {n_bins}",
            src_cfg.n_bins
        )));
    }
    let cfg = ModelConfig {
        sessions: BTreeMap::from([(sid.to_string(), n_neurons)]),
        ..src_cfg.clone()
    };
    let table = ParamTable::new(&cfg);
    let mut params = init::init_params(&cfg, &table, seed);
    checkpoint::transfer(src_cfg, src, &cfg, &mut params);
    init::init_session(&cfg, &table, &mut params, sid, seed);
    Ok((cfg, params))
}

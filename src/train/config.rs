//! Run configuration: the model's dimensions and the training hyper-parameters, from a preset
//! (`small`, `paper`) or a TOML file that starts from a preset and overrides fields.
//!
//! ```toml
//! preset = "small"          # optional base, default "paper"
//! [model]
//! d_model = 256             # any ModelDims field
//! [train]
//! epochs = 200              # any TrainHyper field
//! schemes = ["forward"]
//! ```

use crate::error::{Result, input, usage};
use crate::model::ModelConfig;
use crate::scheme::Scheme;
use crate::train::schedule::OneCycle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The model's dimensions: a `ModelConfig` without the data-dependent parts (bins, sessions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDims {
    pub d_model: usize,
    pub d_tok: usize,
    pub d_embed_hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub ln_eps: f32,
}

impl ModelDims {
    /// The paper's Table 2 (SPEC §2): D 512, D_tok 668, 8 heads, F 1024, 5 blocks.
    pub fn paper() -> ModelDims {
        let c = ModelConfig::paper(1, BTreeMap::new());
        ModelDims::of(&c)
    }

    /// A model small enough to train on a laptop CPU in minutes: D 128, D_tok 128, 4 heads of 32,
    /// F 256, 3 blocks (so block 3 exists for choice decoding).
    pub fn small() -> ModelDims {
        ModelDims {
            d_model: 128,
            d_tok: 128,
            d_embed_hidden: 256,
            n_layers: 3,
            n_heads: 4,
            d_ff: 256,
            ln_eps: 1e-5,
        }
    }

    /// The dimensions of an existing config.
    pub fn of(c: &ModelConfig) -> ModelDims {
        ModelDims {
            d_model: c.d_model,
            d_tok: c.d_tok,
            d_embed_hidden: c.d_embed_hidden,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            d_ff: c.d_ff,
            ln_eps: c.ln_eps,
        }
    }

    /// The full model config for `n_bins` bins and the given sessions (id -> neurons).
    pub fn config(&self, n_bins: usize, sessions: BTreeMap<String, usize>) -> ModelConfig {
        ModelConfig {
            d_model: self.d_model,
            d_tok: self.d_tok,
            d_embed_hidden: self.d_embed_hidden,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            n_bins,
            ln_eps: self.ln_eps,
            sessions,
        }
    }
}

/// Most epochs a run may ask for (the paper trains 1000). With at most `u32::MAX + 1` trials a
/// session, epochs × steps per epoch stays far inside a u64 (`schedule::total_steps`).
pub const MAX_EPOCHS: usize = 1_000_000;

/// Largest batch a run may ask for, in trials (the paper uses 16).
pub const MAX_BATCH: usize = 1 << 16;

/// Training hyper-parameters (SPEC §4 defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainHyper {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate of the OneCycle schedule.
    pub lr: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub clip: f64,
    pub dropout: f64,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    /// β₁ at the peak learning rate.
    pub base_momentum: f64,
    /// β₁ at the start and the end.
    pub max_momentum: f64,
    /// Masking ratio ρ.
    pub mask_ratio: f64,
    /// Masking schemes drawn from (uniformly, one per batch).
    pub schemes: Vec<Scheme>,
    /// Validation every this many epochs (and after the last one).
    pub val_every: usize,
    /// Seed of initialisation, batch order, masks and dropout.
    pub seed: u64,
}

impl Default for TrainHyper {
    fn default() -> Self {
        TrainHyper {
            epochs: 1000,
            batch_size: 16,
            lr: 1e-4,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: 1.0,
            dropout: 0.2,
            pct_start: 0.15,
            div_factor: 10.0,
            final_div_factor: 1e4,
            base_momentum: 0.85,
            max_momentum: 0.95,
            mask_ratio: 0.3,
            schemes: Scheme::ALL.to_vec(),
            val_every: 1,
            seed: 42,
        }
    }
}

impl TrainHyper {
    /// The OneCycle schedule these hyper-parameters describe.
    pub fn schedule(&self) -> OneCycle {
        OneCycle {
            max_lr: self.lr,
            pct_start: self.pct_start,
            div_factor: self.div_factor,
            final_div_factor: self.final_div_factor,
            base_momentum: self.base_momentum,
            max_momentum: self.max_momentum,
        }
    }

    /// Rejects values that cannot train (the message names the field).
    pub fn check(&self) -> std::result::Result<(), String> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if self.epochs == 0 {
            return Err("epochs must be at least 1".into());
        }
        if self.epochs > MAX_EPOCHS {
            return Err(format!(
                "epochs {} is more than the {MAX_EPOCHS} a run may ask for",
                self.epochs
            ));
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if self.batch_size > MAX_BATCH {
            return Err(format!(
                "batch_size {} is more than the {MAX_BATCH} trials a batch may hold",
                self.batch_size
            ));
        }
        if self.val_every == 0 {
            return Err("val_every must be at least 1".into());
        }
        if !pos(self.lr) || !pos(self.eps) || !pos(self.div_factor) || !pos(self.final_div_factor) {
            return Err("lr, eps, div_factor and final_div_factor must be positive".into());
        }
        if !(0.0..1.0).contains(&self.beta2)
            || !(0.0..1.0).contains(&self.base_momentum)
            || !(0.0..1.0).contains(&self.max_momentum)
        {
            return Err("beta2, base_momentum and max_momentum must be in [0, 1)".into());
        }
        if !(self.pct_start > 0.0 && self.pct_start < 1.0) {
            return Err("pct_start must be in (0, 1)".into());
        }
        if !(self.weight_decay >= 0.0 && self.clip >= 0.0) {
            return Err("weight_decay and clip must be >= 0".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("dropout must be in [0, 1)".into());
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio <= 1.0) {
            return Err("mask_ratio must be in (0, 1]".into());
        }
        if self.schemes.is_empty() {
            return Err("schemes is empty".into());
        }
        Ok(())
    }
}

/// A whole run configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelDims,
    pub train: TrainHyper,
}

impl RunConfig {
    /// `paper`: Table 2 and SPEC §4 (1000 epochs). `small`: `ModelDims::small` and 100 epochs.
    pub fn preset(name: &str) -> Option<RunConfig> {
        match name {
            "paper" => Some(RunConfig {
                model: ModelDims::paper(),
                train: TrainHyper::default(),
            }),
            "small" => Some(RunConfig {
                model: ModelDims::small(),
                train: TrainHyper {
                    epochs: 100,
                    ..TrainHyper::default()
                },
            }),
            _ => None,
        }
    }

    /// A preset name or the path of a TOML file (see the module docs).
    pub fn load(spec: &str) -> Result<RunConfig> {
        if let Some(c) = RunConfig::preset(spec) {
            return Ok(c);
        }
        let path = Path::new(spec);
        if !path.exists() {
            return Err(usage(format!(
                "--config {spec}: neither a preset (small, paper) nor an existing file"
            )));
        }
        let text = crate::fsutil::read_text(path)?;
        RunConfig::from_toml(&text, path)
    }

    /// Parses a TOML run config (a preset plus overrides); errors name `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<RunConfig> {
        let mut file: toml::Table = text
            .parse()
            .map_err(|e| input(path, format!("not valid TOML: {e}")))?;
        let preset = match file.remove("preset") {
            None => "paper".to_string(),
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(input(path, format!("preset = {v}: expected a string"))),
        };
        let base = RunConfig::preset(&preset)
            .ok_or_else(|| input(path, format!("unknown preset '{preset}' (small, paper)")))?;
        let mut table = toml::Table::try_from(&base)
            .map_err(|e| crate::error::internal(format!("preset to TOML: {e}")))?;
        for (section, value) in file {
            let toml::Value::Table(over) = value else {
                return Err(input(
                    path,
                    format!("'{section}' must be a section ([model] or [train])"),
                ));
            };
            let Some(toml::Value::Table(dst)) = table.get_mut(&section) else {
                return Err(input(
                    path,
                    format!("unknown section [{section}] (model, train)"),
                ));
            };
            for (k, v) in over {
                dst.insert(k, v);
            }
        }
        let cfg: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| input(path, format!("{e}")))?;
        cfg.train.check().map_err(|m| input(path, m))?;
        // The data adds bins and sessions later; the core alone at this batch size must fit.
        cfg.model
            .config(1, BTreeMap::new())
            .check_memory(cfg.train.batch_size)
            .map_err(|m| input(path, m))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_a_preset() {
        let text = "preset = \"small\"\n[model]\nd_model = 64\n[train]\nepochs = 3\nschemes = [\"forward\"]\n";
        let c = RunConfig::from_toml(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.model.d_model, 64);
        assert_eq!(c.model.n_layers, ModelDims::small().n_layers);
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.train.schemes, vec![Scheme::Forward]);
        assert_eq!(c.train.lr, 1e-4);
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_file() {
        for text in [
            "[train]\nepoch = 3\n",
            "[modle]\nd_model = 3\n",
            "preset = \"huge\"\n",
            "[train]\nlr = -1.0\n",
            "[train]\nschemes = [\"sideways\"]\n",
            "[train]\nepochs = 3074457345618258603\n",
            "[train]\nbatch_size = 1000000000000\n",
            "[model]\nd_model = 131072\nd_ff = 131072\nn_heads = 1\nn_layers = 1\n",
        ] {
            let e = RunConfig::from_toml(text, Path::new("run.toml")).unwrap_err();
            assert!(e.to_string().contains("run.toml"), "{e}");
        }
    }
}

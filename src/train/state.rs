//! Resume state of a run (`RUN/state.safetensors`): parameters, both AdamW moments, the best
//! parameters so far and the loop counters in one safetensors file, written atomically at the
//! run's checkpoint cadence, at `stop_after` and on a stop signal. A run killed anywhere restarts
//! from the last state written with bit-identical results on the CPU backend (a run killed
//! before its first write has no state and starts over).
//!
//! Tensors `params`, `m`, `v` and, once a validation ran, `best` (flat f32, `ParamTable`
//! layout); metadata `ndt_state` = the `Counters` JSON, `config` = the `ModelConfig` JSON and,
//! with `best`, `best_meta` = the metadata of `best.safetensors` (so that file can be rewritten
//! exactly from the state).
//!
//! A finished run's state (`save_finished`) has no tensors: resuming it restores nothing (its
//! results are `best.safetensors` and `last.safetensors`), so it holds the counters and the
//! config only; `load` returns it with empty `params`, `m` and `v` and no `best`.

use crate::error::{Result, input, internal};
use crate::model::ModelConfig;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The running sums of an epoch stopped part way (`Counters::batch` > 0). Floats are kept as
/// their bit patterns so that they survive JSON exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub loss_bits: u64,
    pub targets: u64,
    pub grad_norm_bits: u64,
    pub steps: u64,
    /// Seconds spent so far in the epoch's training steps (informational).
    pub step_s: f64,
    /// Seconds spent so far in the epoch (informational).
    pub time_s: f64,
}

/// Where the loop stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Epochs finished (1-based count; 0 = before training).
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Best validation loss so far (None before the first validation).
    pub best_val: Option<f64>,
    /// Epoch of `best_val`.
    pub best_epoch: Option<usize>,
    /// `best_val`'s bits (exact; `best_val` is for people reading the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_val_bits: Option<u64>,
    /// Batches of epoch `epoch + 1` already taken (0 = at an epoch boundary).
    #[serde(default)]
    pub batch: u64,
    /// The sums of those batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
}

impl Counters {
    pub fn start() -> Counters {
        Counters {
            epoch: 0,
            step: 0,
            best_val: None,
            best_epoch: None,
            best_val_bits: None,
            batch: 0,
            partial: None,
        }
    }

    /// The best validation loss, exactly.
    pub fn best(&self) -> Option<f64> {
        match self.best_val_bits {
            Some(b) => Some(f64::from_bits(b)),
            None => self.best_val,
        }
    }

    pub fn set_best(&mut self, v: f64, epoch: usize) {
        self.best_val = Some(v);
        self.best_val_bits = Some(v.to_bits());
        self.best_epoch = Some(epoch);
    }
}

/// Everything a resumed run needs.
#[derive(Clone, Debug)]
pub struct State {
    pub config: ModelConfig,
    pub counters: Counters,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// The best parameters so far and their checkpoint metadata.
    pub best: Option<(Vec<f32>, BTreeMap<String, String>)>,
}

const STATE_KEY: &str = "ndt_state";
const CONFIG_KEY: &str = "config";
const BEST_META_KEY: &str = "best_meta";

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let best = state.best.as_ref().map(|(b, m)| (b.as_slice(), m));
    save_parts(
        path,
        &state.config,
        &state.counters,
        [&state.params, &state.m, &state.v],
        best,
    )
}

/// Writes the state of a finished run (counters and config, no tensors) to `path` atomically.
pub fn save_finished(path: &Path, config: &ModelConfig, counters: &Counters) -> Result<()> {
    if counters.batch > 0 || counters.partial.is_some() {
        return Err(internal(
            "a finished run's state stopped part way through an epoch",
        ));
    }
    save_parts(path, config, counters, [&[], &[], &[]], None)
}

/// Whether `state` is a finished run's (no tensors; see `save_finished`).
pub fn is_finished(state: &State) -> bool {
    state.params.is_empty() && state.best.is_none()
}

/// `save` from borrowed parts: `[params, m, v]` and the best parameters with their metadata
/// (all empty and no best: a finished run's state, written without tensors).
pub fn save_parts(
    path: &Path,
    config: &ModelConfig,
    counters: &Counters,
    pmv: [&[f32]; 3],
    best: Option<(&[f32], &BTreeMap<String, String>)>,
) -> Result<()> {
    let n = pmv[0].len();
    if pmv.iter().any(|a| a.len() != n) || best.is_some_and(|b| b.0.len() != n) {
        return Err(internal(
            "resume state: moments, best and parameters differ in length",
        ));
    }
    let mut arrays: Vec<(&str, &[f32])> = Vec::new();
    if n > 0 || best.is_some() {
        arrays = vec![("params", pmv[0]), ("m", pmv[1]), ("v", pmv[2])];
    }
    if let Some((b, _)) = best {
        arrays.push(("best", b));
    }
    let mut views = Vec::with_capacity(arrays.len());
    for (name, a) in arrays {
        let v = TensorView::new(Dtype::F32, vec![n], bytemuck::cast_slice(a))
            .map_err(|e| internal(format!("state tensor {name}: {e}")))?;
        views.push((name, v));
    }
    let mut meta = HashMap::new();
    meta.insert(STATE_KEY.to_string(), to_json(counters)?);
    meta.insert(CONFIG_KEY.to_string(), to_json(config)?);
    if let Some((_, m)) = best {
        meta.insert(BEST_META_KEY.to_string(), to_json(m)?);
    }
    let mut buf = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| internal(format!("serialize {}: {e}", path.display())))?;
    crate::model::checkpoint::sort_header(&mut buf)
        .map_err(|m| internal(format!("serialize {}: {m}", path.display())))?;
    crate::fsutil::write_atomic(path, &buf)
}

/// Reads a state written by `save`, checking every size and that the counters are coherent
/// (`check` checks them against the run).
pub fn load(path: &Path) -> Result<State> {
    let buf = crate::fsutil::read_regular(path)?;
    let bad = |m: String| input(path, m);
    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| bad(format!("not a valid resume state ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&buf)
        .map_err(|e| bad(format!("not a valid resume state ({e})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| bad(format!("no '{k}' in the metadata")))
    };
    let counters: Counters = serde_json::from_str(get(STATE_KEY)?)
        .map_err(|e| bad(format!("metadata '{STATE_KEY}': {e}")))?;
    let config: ModelConfig = serde_json::from_str(get(CONFIG_KEY)?)
        .map_err(|e| bad(format!("metadata '{CONFIG_KEY}': {e}")))?;
    crate::model::checkpoint::validate_config(&config)
        .map_err(|m| bad(format!("metadata '{CONFIG_KEY}': {m}")))?;
    let total = crate::model::ParamTable::new(&config).total;
    let tensor = |name: &str| -> Result<Vec<f32>> {
        let view = st
            .tensor(name)
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != [total] {
            return Err(bad(format!(
                "tensor '{name}' is {:?} {:?}, expected F32 [{total}]",
                view.dtype(),
                view.shape()
            )));
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let finished = st.is_empty();
    if finished && (counters.batch > 0 || counters.partial.is_some()) {
        return Err(bad(
            "a state without parameters (a finished run's) stopped part way through an epoch"
                .into(),
        ));
    }
    let (params, m, v) = if finished {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        (tensor("params")?, tensor("m")?, tensor("v")?)
    };
    let has_best = st.names().contains(&"best");
    let best = if has_best {
        let bm: BTreeMap<String, String> = serde_json::from_str(get(BEST_META_KEY)?)
            .map_err(|e| bad(format!("metadata '{BEST_META_KEY}': {e}")))?;
        Some((tensor("best")?, bm))
    } else {
        None
    };
    let c = &counters;
    if c.best_epoch.is_some() != c.best().is_some() {
        return Err(bad(
            "counters: best_val and best_epoch must be given together".into(),
        ));
    }
    if c.best().is_some_and(|v| !v.is_finite()) {
        return Err(bad("counters: best_val is not finite".into()));
    }
    if c.best_epoch.is_some_and(|e| e == 0 || e > c.epoch) {
        return Err(bad(format!(
            "counters: best_epoch {:?} is not within the {} epochs done",
            c.best_epoch, c.epoch
        )));
    }
    if best.is_some() && c.best_epoch.is_none() {
        return Err(bad("best parameters without a best epoch".into()));
    }
    if (c.batch > 0) != c.partial.is_some() {
        return Err(bad(
            "counters: a part-way epoch needs both `batch` and `partial`".into(),
        ));
    }
    // A state written before best weights were kept in it (no `best` tensor) is still valid.
    Ok(State {
        config,
        counters,
        params,
        m,
        v,
        best,
    })
}

/// Checks the counters against the run: `epochs` in all, `per_epoch` steps an epoch.
pub fn check(path: &Path, c: &Counters, epochs: usize, per_epoch: u64) -> Result<()> {
    let bad = |m: String| Err(input(path, format!("counters out of range: {m}")));
    if c.epoch > epochs {
        return bad(format!(
            "epoch {} is past the run's {epochs} epochs",
            c.epoch
        ));
    }
    if c.batch >= per_epoch.max(1) || (c.batch > 0 && c.epoch == epochs) {
        return bad(format!(
            "batch {} of epoch {} (the run has {per_epoch} batches an epoch, {epochs} epochs)",
            c.batch,
            c.epoch + 1
        ));
    }
    let expect = (c.epoch as u64)
        .checked_mul(per_epoch)
        .and_then(|s| s.checked_add(c.batch));
    if expect != Some(c.step) {
        return bad(format!(
            "step {} does not match epoch {} and batch {} at {per_epoch} batches an epoch",
            c.step, c.epoch, c.batch
        ));
    }
    if let Some(p) = &c.partial
        && (p.steps != c.batch || p.targets > c.batch.saturating_mul(1 << 40))
    {
        return bad(format!(
            "the part-way epoch's sums do not match its {} batches",
            c.batch
        ));
    }
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| internal(format!("state JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata map is a `HashMap`: without the sorted header two saves of one state would
    /// differ in the order of its keys.
    #[test]
    fn the_same_state_is_the_same_bytes() {
        let dir = std::env::temp_dir().join(format!("ndt-state-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config: ModelConfig = serde_json::from_str(
            r#"{"d_model":8,"d_tok":8,"d_embed_hidden":8,"n_layers":1,"n_heads":2,"d_ff":8,
            "n_bins":4,"ln_eps":0.00001,"sessions":{"a":3}}"#,
        )
        .unwrap();
        let n = crate::model::ParamTable::new(&config).total;
        let mut counters = Counters::start();
        counters.set_best(0.5, 1);
        counters.epoch = 1;
        let p: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let meta = BTreeMap::from([("kind".to_string(), "best".to_string())]);
        let mut files = Vec::new();
        for i in 0..8 {
            let path = dir.join(format!("s{i}"));
            save_parts(&path, &config, &counters, [&p, &p, &p], Some((&p, &meta))).unwrap();
            files.push(std::fs::read(&path).unwrap());
            let back = load(&path).unwrap();
            assert_eq!(back.counters, counters);
            assert_eq!(back.best.unwrap().1, meta);
        }
        assert!(files.windows(2).all(|w| w[0] == w[1]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

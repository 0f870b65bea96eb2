//! Resume state of a run: parameters, both AdamW moments and the loop counters in one
//! safetensors file (`RUN/state.safetensors`), written atomically after every epoch, so a killed
//! run restarts from its last finished epoch with bit-identical results on the CPU backend.
//!
//! Tensors `params`, `m`, `v` (flat f32, `ParamTable` layout); metadata `ndt_state` = the
//! `Counters` JSON and `config` = the `ModelConfig` JSON.

use crate::error::{Result, input, internal};
use crate::model::ModelConfig;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Where the loop stands after an epoch.
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
}

/// Everything a resumed run needs.
#[derive(Clone, Debug)]
pub struct State {
    pub config: ModelConfig,
    pub counters: Counters,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

const STATE_KEY: &str = "ndt_state";
const CONFIG_KEY: &str = "config";

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let n = state.params.len();
    if state.m.len() != n || state.v.len() != n {
        return Err(internal(
            "resume state: moments and parameters differ in length",
        ));
    }
    let arrays = [("params", &state.params), ("m", &state.m), ("v", &state.v)];
    let mut views = Vec::with_capacity(3);
    for (name, a) in arrays {
        let v = TensorView::new(Dtype::F32, vec![n], bytemuck::cast_slice(a))
            .map_err(|e| internal(format!("state tensor {name}: {e}")))?;
        views.push((name, v));
    }
    let mut meta = HashMap::new();
    meta.insert(STATE_KEY.to_string(), to_json(&state.counters)?);
    meta.insert(CONFIG_KEY.to_string(), to_json(&state.config)?);
    let buf = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| internal(format!("serialize {}: {e}", path.display())))?;
    crate::fsutil::write_atomic(path, &buf)
}

/// Reads a state written by `save`, checking every size.
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
    let mut arrays = Vec::with_capacity(3);
    for name in ["params", "m", "v"] {
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
        let a: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        arrays.push(a);
    }
    let v = arrays.pop().unwrap_or_default();
    let m = arrays.pop().unwrap_or_default();
    let params = arrays.pop().unwrap_or_default();
    Ok(State {
        config,
        counters,
        params,
        m,
        v,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| internal(format!("state JSON: {e}")))
}

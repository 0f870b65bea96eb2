//! The JSON object of `ndt bench` (docs/bench.md): one typed struct, so that each key is
//! written once; a key of another mode is absent.

use super::report::{Body, Head, Report, Timed};
use crate::error::{Result, internal};
use serde::Serialize;
use std::collections::BTreeMap;

/// One row of `profile_kernels`.
#[derive(Serialize)]
pub struct KernelRow {
    file: &'static str,
    kernel: &'static str,
    calls: usize,
    ms_per_step: f64,
}

/// The JSON document: one field per key of docs/bench.md, absent where `None`. Times are
/// milliseconds, memory bytes.
#[derive(Serialize, Default)]
pub struct Json {
    device: String,
    config: String,
    batch_size: usize,
    bins: usize,
    neurons: usize,
    scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evals: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ms_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ms_per_step_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_ms_per_batch: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_ms_per_batch_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_tokens_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_loss: Option<f32>,
    peak_memory_bytes: u64,
    peak_memory_kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_buffers: Option<BTreeMap<&'static str, usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_ms_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_ms_per_step_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_tokens_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_speedup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_speedup_pairs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_core_trainable_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_ms_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_operations: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_products: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_flops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_kernels: Option<Vec<KernelRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_csv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_full_ms_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_full_operations: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_full_products: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_full_flops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_full_csv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_operations_saved: Option<usize>,
}

impl Report {
    /// The JSON document (docs/bench.md).
    pub fn json(&self) -> Json {
        let h = &self.head;
        let mut j = Json {
            device: h.device.clone(),
            config: h.config.clone(),
            batch_size: h.batch_size,
            bins: h.bins,
            neurons: h.neurons,
            scheme: h.scheme.name(),
            ..Json::default()
        };
        let peak = match &self.body {
            Body::MemoryOnly(m) => {
                j.workspace_buffers = Some(m.buffers.iter().copied().collect());
                m.peak
            }
            Body::Timed(t) => {
                timed_json(&mut j, h, t);
                t.peak
            }
        };
        j.peak_memory_bytes = peak.bytes;
        j.peak_memory_kind = peak.kind;
        j.workspace_bytes = peak.workspace;
        j
    }

    /// The JSON document as one line of text.
    pub fn json_text(&self) -> Result<String> {
        serde_json::to_string(&self.json()).map_err(|e| internal(format!("bench JSON: {e}")))
    }
}

fn timed_json(j: &mut Json, h: &Head, t: &Timed) {
    j.mode = Some(t.mode.name());
    j.steps = Some(t.steps);
    j.evals = Some(t.evals);
    j.ms_per_step = Some(t.train.median_ms);
    j.ms_per_step_min = Some(t.train.min_ms);
    j.tokens_per_s = Some(h.tokens_per_s(t.train.median_ms));
    j.eval_ms_per_batch = Some(t.eval.median_ms);
    j.eval_ms_per_batch_min = Some(t.eval.min_ms);
    j.eval_tokens_per_s = Some(h.tokens_per_s(t.eval.median_ms));
    j.last_loss = Some(t.last_loss);
    if let Some(fc) = &t.frozen_core {
        j.frozen_core_ms_per_step = Some(fc.frozen.median_ms);
        j.frozen_core_ms_per_step_min = Some(fc.frozen.min_ms);
        j.frozen_core_tokens_per_s = Some(h.tokens_per_s(fc.frozen.median_ms));
        j.frozen_core_speedup = Some(fc.ratio());
        j.frozen_core_speedup_pairs = Some(fc.pair_ratio);
        j.frozen_core_trainable_share = Some(fc.trainable_share);
    }
    if let Some(p) = &t.profile {
        let c = p.counts();
        j.profile_ms_per_step = Some(p.secs() * 1e3);
        j.profile_operations = Some(c.operations);
        j.profile_products = Some(c.products);
        j.profile_flops = Some(c.flops);
        j.profile_kernels = Some(
            p.totals
                .iter()
                .map(|t| KernelRow {
                    file: t.file,
                    kernel: t.name,
                    calls: t.calls,
                    ms_per_step: t.secs * 1e3,
                })
                .collect(),
        );
        j.profile_csv = Some(p.csv.display().to_string());
        if let Some(full) = &t.full_profile {
            let f = full.counts();
            j.profile_full_ms_per_step = Some(full.secs() * 1e3);
            j.profile_full_operations = Some(f.operations);
            j.profile_full_products = Some(f.products);
            j.profile_full_flops = Some(f.flops);
            j.profile_full_csv = Some(full.csv.display().to_string());
            j.profile_operations_saved = Some(f.operations.saturating_sub(c.operations));
        }
    }
}

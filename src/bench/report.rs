//! The report of `ndt bench`: one JSON object (`Json`, the schema of docs/bench.md) or text
//! lines, both from the same measurements, so that they show the same statistics (medians).

use super::Mode;
use super::memory::{MemoryOnly, Peak, memory_line, memory_only_lines};
use super::profile::{Profiled, saving_line};
use super::timing::{FrozenCore, Timing};
use crate::error::{Result, internal};
use crate::model::ModelConfig;
use crate::scheme::Scheme;
use serde::Serialize;
use std::collections::BTreeMap;

/// What was run: the device, the model and the batch.
pub struct Head {
    /// The device in words (`cpu (2 threads)`, the GPU's name and precision).
    pub device: String,
    /// `--config` as given (a preset or a file).
    pub config: String,
    pub model: ModelConfig,
    pub batch_size: usize,
    pub bins: usize,
    pub neurons: usize,
    pub scheme: Scheme,
}

/// The timed training steps and evaluation passes (default and `--mode frozen-core`).
pub struct Timed {
    pub mode: Mode,
    pub steps: usize,
    pub evals: usize,
    /// The full training step (with `--mode frozen-core`, the full steps that alternated
    /// with the frozen-core ones).
    pub train: Timing,
    pub eval: Timing,
    /// The last full training step's loss.
    pub last_loss: f32,
    pub peak: Peak,
    pub frozen_core: Option<FrozenCore>,
    /// `--profile`: the timed step's profile (with `--mode frozen-core`, the frozen-core
    /// step's).
    pub profile: Option<Profiled>,
    /// `--profile --mode frozen-core`: the full step's profile.
    pub full_profile: Option<Profiled>,
}

pub enum Body {
    MemoryOnly(MemoryOnly),
    Timed(Box<Timed>),
}

pub struct Report {
    pub head: Head,
    pub body: Body,
}

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

impl Head {
    /// Tokens of one batch: trials × bins.
    fn tokens(&self) -> f64 {
        (self.batch_size * self.bins) as f64
    }

    /// Tokens per second at `ms` per batch.
    fn tokens_per_s(&self, ms: f64) -> f64 {
        self.tokens() / (ms / 1e3)
    }

    /// The first two lines of the text report.
    fn lines(&self) -> Vec<String> {
        let c = &self.model;
        vec![
            format!("device: {}", self.device),
            format!(
                "model: {} (D {}, D_tok {}, {} heads, F {}, {} blocks); batch {} trials x {} \
                 bins x {} neurons, {}",
                self.config,
                c.d_model,
                c.d_tok,
                c.n_heads,
                c.d_ff,
                c.n_layers,
                self.batch_size,
                self.bins,
                self.neurons,
                self.scheme
            ),
        ]
    }
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

    /// The text report, line by line.
    pub fn lines(&self) -> Vec<String> {
        let h = &self.head;
        let mut out = h.lines();
        match &self.body {
            Body::MemoryOnly(m) => out.extend(memory_only_lines(m)),
            Body::Timed(t) => out.extend(timed_lines(h, t)),
        }
        out
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

fn timed_lines(h: &Head, t: &Timed) -> Vec<String> {
    let (train, eval) = (t.train, t.eval);
    let mut out = vec![
        format!(
            "train: {:.2} ms/step median (min {:.2}), {:.0} tokens/s over {} steps (loss {:.4})",
            train.median_ms,
            train.min_ms,
            h.tokens_per_s(train.median_ms),
            t.steps,
            t.last_loss
        ),
        format!(
            "eval:  {:.2} ms/batch median (min {:.2}), {:.0} tokens/s over {} passes",
            eval.median_ms,
            eval.min_ms,
            h.tokens_per_s(eval.median_ms),
            t.evals
        ),
    ];
    if let Some(fc) = &t.frozen_core {
        let z = &fc.frozen;
        out.push(format!(
            "frozen-core step: {:.2} ms/step median (min {:.2}), {:.0} tokens/s, beside the \
             full step of the train line; {:.1} % of the parameters train",
            z.median_ms,
            z.min_ms,
            h.tokens_per_s(z.median_ms),
            100.0 * fc.trainable_share
        ));
        out.push(format!(
            "frozen-core speedup: {:.2}x (median full / median frozen-core; median of the \
             pairs' ratios {:.2}x)",
            fc.ratio(),
            fc.pair_ratio
        ));
    }
    out.push(memory_line(&t.peak));
    if let Some(p) = &t.profile {
        let step = t
            .frozen_core
            .as_ref()
            .map_or(train.median_ms, |fc| fc.frozen.median_ms);
        out.extend(p.lines(step));
    }
    if let (Some(full), Some(frozen)) = (&t.full_profile, &t.profile) {
        out.push(saving_line(full, frozen));
    }
    out
}

//! The report of `ndt bench`: what was measured, and its text lines; the JSON object is built
//! from the same report (`super::json`), so that both show the same statistics (medians).

use super::Mode;
use super::memory::{MemoryOnly, Peak, memory_line, memory_only_lines};
use super::profile::{Profiled, saving_line};
use super::timing::{FrozenCore, Timing};
use crate::model::ModelConfig;
use crate::scheme::Scheme;

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

impl Head {
    /// Tokens of one batch: trials × bins.
    fn tokens(&self) -> f64 {
        (self.batch_size * self.bins) as f64
    }

    /// Tokens per second at `ms` per batch.
    pub(super) fn tokens_per_s(&self, ms: f64) -> f64 {
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

//! Bits per spike (paper eq. 1) in the two conventions of SPEC §5, accumulated in f64:
//!
//! - **pooled**, `nlb_tools.evaluation.bits_per_spike`: one value over all evaluated entries,
//!   `(NLL(x; λ̄) − NLL(x; λ̂)) / (Σx · ln 2)`, λ̄ each neuron's mean count over its evaluated
//!   entries, entries whose spike count is NaN left out, zero rates replaced by 1e-9;
//! - **per neuron** (the MtM code's): the same quantity for each neuron alone, averaged over
//!   the neurons that spiked at least once in the evaluated entries;
//! - **pooled over units with spikes** (IBL BrainWideBench's `BPS` metric, `ibl-bwb-eval`
//!   0.1.0): the pooled value with the neurons that have no spikes in the evaluated entries
//!   left out of both sums (`nlb_tools` keeps them: each then costs its predicted rate).
//!
//! The `log x!` terms of the Poisson likelihood cancel between the model and the null model and
//! are left out. The null model's NLL is summed in closed form: with `n` entries and `S` spikes,
//! `Σ (λ̄ − x ln λ̄) = S − S ln(S / n)` (and `n · 1e-9` for a silent neuron, whose λ̄ = 0 becomes
//! 1e-9 as in `nlb_tools`).

/// Rate that `nlb_tools` substitutes for a zero rate.
pub const ZERO_RATE: f64 = 1e-9;

/// Per-neuron sufficient statistics of the evaluated entries of one task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BpsAccum {
    /// Number of evaluated entries per neuron.
    pub count: Vec<u64>,
    /// Sum of spike counts per neuron.
    pub spikes: Vec<f64>,
    /// Σ (λ̂ − x ln λ̂) per neuron (the model's NLL without the `log x!` term).
    pub model_nll: Vec<f64>,
}

/// Both conventions for one task.
#[derive(Clone, Debug, PartialEq)]
pub struct Bps {
    /// `nlb_tools`' pooled bits per spike.
    pub pooled: f64,
    /// Pooled over the neurons with spikes only (BrainWideBench's `BPS`; NaN when none spiked).
    pub pooled_spiking: f64,
    /// Mean of `per_neuron` over the neurons that spiked (NaN when none did).
    pub per_neuron_mean: f64,
    /// Bits per spike of each neuron (NaN for neurons without spikes or entries).
    pub per_neuron: Vec<f64>,
    /// Neurons that entered the mean.
    pub n_neurons_used: usize,
    /// Total spikes over evaluated entries.
    pub n_spikes: f64,
    /// Number of evaluated entries.
    pub n_entries: u64,
}

impl BpsAccum {
    pub fn new(n_neurons: usize) -> BpsAccum {
        BpsAccum {
            count: vec![0; n_neurons],
            spikes: vec![0.0; n_neurons],
            model_nll: vec![0.0; n_neurons],
        }
    }

    pub fn n_neurons(&self) -> usize {
        self.count.len()
    }

    /// Adds one evaluated entry of neuron `j`: predicted rate `rate` (not log-rate), observed
    /// count `x`. A NaN count is skipped (as `nlb_tools` masks NaN spikes).
    #[inline]
    pub fn add(&mut self, j: usize, rate: f64, x: f64) {
        if x.is_nan() {
            return;
        }
        let r = if rate == 0.0 { ZERO_RATE } else { rate };
        self.count[j] += 1;
        self.spikes[j] += x;
        self.model_nll[j] += r - x * r.ln();
    }

    /// Adds one evaluated entry from a log-rate (the model's output), `rate = exp(log_rate)`.
    #[inline]
    pub fn add_log_rate(&mut self, j: usize, log_rate: f32, x: f64) {
        self.add(j, (log_rate as f64).exp(), x);
    }

    /// Merges another accumulator over the same neurons.
    pub fn merge(&mut self, other: &BpsAccum) {
        assert_eq!(
            self.n_neurons(),
            other.n_neurons(),
            "BpsAccum::merge: sizes"
        );
        for j in 0..self.n_neurons() {
            self.count[j] += other.count[j];
            self.spikes[j] += other.spikes[j];
            self.model_nll[j] += other.model_nll[j];
        }
    }

    /// The null model's NLL (without `log x!`) of neuron `j`.
    fn null_nll(&self, j: usize) -> f64 {
        let (n, s) = (self.count[j] as f64, self.spikes[j]);
        if n == 0.0 {
            0.0
        } else if s == 0.0 {
            n * ZERO_RATE
        } else {
            s - s * (s / n).ln()
        }
    }

    /// Both conventions.
    pub fn finish(&self) -> Bps {
        let ln2 = std::f64::consts::LN_2;
        let mut num = 0.0f64;
        let mut total_spikes = 0.0f64;
        let mut per_neuron = vec![f64::NAN; self.n_neurons()];
        let mut sum = 0.0f64;
        let mut used = 0usize;
        let mut num_spiking = 0.0f64;
        for (j, pn) in per_neuron.iter_mut().enumerate() {
            if self.count[j] == 0 {
                continue;
            }
            let d = self.null_nll(j) - self.model_nll[j];
            num += d;
            total_spikes += self.spikes[j];
            if self.spikes[j] > 0.0 {
                let b = d / (self.spikes[j] * ln2);
                *pn = b;
                sum += b;
                used += 1;
                num_spiking += d;
            }
        }
        Bps {
            pooled: num / total_spikes / ln2,
            pooled_spiking: if used > 0 {
                num_spiking / total_spikes / ln2
            } else {
                f64::NAN
            },
            per_neuron_mean: if used > 0 {
                sum / used as f64
            } else {
                f64::NAN
            },
            per_neuron,
            n_neurons_used: used,
            n_spikes: total_spikes,
            n_entries: self.count.iter().sum(),
        }
    }
}

/// Accumulates `rates` and `spikes`, both `[.., n_neurons]` row-major (the last axis is the
/// neuron), NaN spikes left out.
pub fn accumulate(rates: &[f64], spikes: &[f64], n_neurons: usize) -> BpsAccum {
    assert_eq!(
        rates.len(),
        spikes.len(),
        "bps: rates and spikes differ in length"
    );
    assert!(
        n_neurons > 0 && spikes.len().is_multiple_of(n_neurons),
        "bps: ragged last axis"
    );
    let mut acc = BpsAccum::new(n_neurons);
    for (i, (&r, &x)) in rates.iter().zip(spikes).enumerate() {
        acc.add(i % n_neurons, r, x);
    }
    acc
}

/// `nlb_tools.evaluation.bits_per_spike(rates, spikes)` for arrays whose last axis is the neuron.
pub fn bits_per_spike(rates: &[f64], spikes: &[f64], n_neurons: usize) -> f64 {
    accumulate(rates, spikes, n_neurons).finish().pooled
}

/// Per-neuron bits per spike averaged over the neurons with spikes (MtM's convention).
pub fn bits_per_spike_per_neuron(rates: &[f64], spikes: &[f64], n_neurons: usize) -> f64 {
    accumulate(rates, spikes, n_neurons)
        .finish()
        .per_neuron_mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_model_scores_zero() {
        // Predicting each neuron's mean is the null model: 0 bits per spike in both conventions.
        let spikes = [0.0, 1.0, 2.0, 3.0, 1.0, 0.0];
        let m = 4.0 / 3.0;
        let rates = [1.0, m, 1.0, m, 1.0, m];
        let b = accumulate(&rates, &spikes, 2).finish();
        assert!(b.pooled.abs() < 1e-15, "{}", b.pooled);
        assert!(b.per_neuron_mean.abs() < 1e-15);
    }

    #[test]
    fn silent_neurons_are_skipped_per_neuron_but_count_pooled() {
        let spikes = [1.0, 0.0, 0.0, 0.0];
        let rates = [0.5, 0.1, 0.5, 0.1];
        let b = accumulate(&rates, &spikes, 2).finish();
        assert_eq!(b.n_neurons_used, 1);
        assert!(b.per_neuron[1].is_nan());
        // The silent neuron costs its predicted rate (minus the 1e-9 null rate) in the pooled value.
        let n0 = (1.0 - 1.0 * 0.5f64.ln()) - (0.5 - 1.0 * 0.5f64.ln() + 0.5);
        let n1 = 2e-9 - 0.2;
        let want = (n0 + n1) / 1.0 / std::f64::consts::LN_2;
        assert!((b.pooled - want).abs() < 1e-12, "{} vs {want}", b.pooled);
    }
}

//! Spike trains and their binning into trial windows.
//!
//! A spike at time `t` falls in bin `k = floor((t - start) / bin_size)` of the window that begins
//! at `start`, and counts when `0 <= k < n_bins`: bins are half-open `[lo, hi)`, computed in
//! `f64` exactly as written (the tests bin the same spikes with numpy by the same formula).

/// Spike times of the kept units: unit `u` owns `times[ends[u-1]..ends[u]]` (from 0 for the
/// first), sorted. `ends` is non-decreasing and at most `times.len()`; units with no spikes
/// have been left out, so `times` may be the file's whole `spike_times`.
pub struct Trains {
    pub times: Vec<f64>,
    /// Exclusive end offset of each unit's spikes in `times`.
    pub ends: Vec<usize>,
}

impl Trains {
    pub fn n_units(&self) -> usize {
        self.ends.len()
    }

    /// Spike times of unit `u`.
    pub fn unit(&self, u: usize) -> &[f64] {
        let lo = if u == 0 { 0 } else { self.ends[u - 1] };
        &self.times[lo..self.ends[u]]
    }

    /// Earliest and latest spike over all units (None if there are no spikes).
    pub fn span(&self) -> Option<(f64, f64)> {
        let mut span: Option<(f64, f64)> = None;
        for u in 0..self.n_units() {
            let t = self.unit(u);
            if let (Some(&a), Some(&b)) = (t.first(), t.last()) {
                span = Some(match span {
                    None => (a, b),
                    Some((lo, hi)) => (lo.min(a), hi.max(b)),
                });
            }
        }
        span
    }
}

/// Window geometry: `n_bins` bins of `bin_size` seconds.
#[derive(Clone, Copy, Debug)]
pub struct Bins {
    pub bin_size: f64,
    pub n_bins: usize,
}

impl Bins {
    /// Length of a window in seconds.
    pub fn width(&self) -> f64 {
        self.bin_size * self.n_bins as f64
    }

    /// Counts of every unit in the window starting at `start`, row-major `[bin][unit]`, into
    /// `out` (`n_bins * n_units` long, overwritten).
    pub fn count(&self, trains: &Trains, start: f64, out: &mut [u32]) {
        out.fill(0);
        let n = trains.n_units();
        for u in 0..n {
            let t = trains.unit(u);
            let first = t.partition_point(|&x| x < start);
            for &x in &t[first..] {
                let k = ((x - start) / self.bin_size).floor();
                if k >= self.n_bins as f64 {
                    break;
                }
                if k >= 0.0 {
                    out[k as usize * n + u] += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_half_open_and_per_unit() {
        let trains = Trains {
            times: vec![0.0, 0.1, 0.25, 0.35, 1.0, 0.05, 0.2999],
            ends: vec![5, 7],
        };
        let b = Bins {
            bin_size: 0.1,
            n_bins: 3,
        };
        let mut out = vec![0u32; 6];
        b.count(&trains, 0.0, &mut out);
        // Unit 0: 0.0 -> bin 0, 0.1 -> bin 1, 0.25 -> bin 2, 0.35 -> bin 3 (outside), 1.0 outside.
        // Unit 1: 0.05 -> bin 0, 0.2999 -> bin 2.
        assert_eq!(out, vec![1, 1, 1, 0, 1, 1]);
        // A window starting later: spikes before it are not counted.
        b.count(&trains, 0.2, &mut out);
        assert_eq!(out, vec![1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn span_covers_all_units_and_skips_empty_ones() {
        let trains = Trains {
            times: vec![2.0, 3.0, 1.5],
            ends: vec![2, 2, 3],
        };
        assert_eq!(trains.unit(1), &[] as &[f64]);
        assert_eq!(trains.span(), Some((1.5, 3.0)));
        let empty = Trains {
            times: vec![],
            ends: vec![0],
        };
        assert_eq!(empty.span(), None);
    }
}

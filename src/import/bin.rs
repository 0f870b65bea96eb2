//! Spike times to trial-aligned counts: the binning shared by the importers that start from
//! spike times (`ndt import alf`).
//!
//! A trial's window starts at `start` (its alignment time plus the window's offset) and holds
//! `n_bins` bins of `bin_size` seconds. A spike at time `t >= start` falls in bin
//! `k = floor((t - start) / bin_size)` and is counted when `k < n_bins`; so a bin holds its left
//! edge and not its right one, and the arithmetic is the plain f64 arithmetic NumPy does for
//! `np.floor((t - start) / bin_size)`, which makes a NumPy binning of the same spikes agree to
//! the count.

/// Bin size in seconds when none is given (SPEC §1 and the paper: 20 ms bins).
pub const DEFAULT_BIN_SIZE_S: f64 = 0.02;
/// Smallest session an importer accepts by default: one batch of trials.
pub const DEFAULT_MIN_TRIALS: usize = 16;

/// The bins of one trial window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bins {
    /// Bin width in seconds (positive, finite).
    pub bin_size: f64,
    /// Number of bins.
    pub n_bins: usize,
}

impl Bins {
    /// The bin of a spike at `t` in a window starting at `start`, or None outside the window.
    pub fn bin_of(&self, t: f64, start: f64) -> Option<usize> {
        if t.is_nan() || start.is_nan() || t < start {
            return None;
        }
        let k = ((t - start) / self.bin_size).floor();
        (k < self.n_bins as f64).then_some(k as usize)
    }

    /// The window's length in seconds.
    pub fn len_s(&self) -> f64 {
        self.bin_size * self.n_bins as f64
    }
}

/// Adds the spikes of one trial to `out` (`[n_bins][n_columns]`, row-major).
///
/// `times` are spike times sorted ascending (checked by the caller), `units[i]` the unit of
/// spike `i`, and `column[unit]` that unit's column in `out`, or `u32::MAX` for a unit not kept.
/// Spikes of units beyond `column` are skipped too (the caller checks the unit indices).
/// Returns the number of spikes counted.
pub fn add_trial(
    times: &[f64],
    units: &[u32],
    column: &[u32],
    start: f64,
    bins: Bins,
    n_columns: usize,
    out: &mut [u32],
) -> u64 {
    let first = times.partition_point(|&t| t < start);
    let mut counted = 0;
    for (i, &t) in times.iter().enumerate().skip(first) {
        let k = ((t - start) / bins.bin_size).floor();
        if k >= bins.n_bins as f64 {
            break;
        }
        let Some(&col) = units.get(i).and_then(|&u| column.get(u as usize)) else {
            continue;
        };
        if col == u32::MAX || col as usize >= n_columns {
            continue;
        }
        if let Some(c) = out.get_mut(k as usize * n_columns + col as usize) {
            *c += 1;
            counted += 1;
        }
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_left_edges_in_and_right_edges_out() {
        let bins = Bins {
            bin_size: 0.5,
            n_bins: 2,
        };
        // start 1.0: bins [1.0, 1.5) and [1.5, 2.0).
        let times = [0.9, 1.0, 1.2, 1.5, 1.99, 2.0, 2.5];
        let units = [0, 0, 1, 0, 1, 0, 0];
        let mut out = vec![0u32; 4];
        let n = add_trial(&times, &units, &[0, 1], 1.0, bins, 2, &mut out);
        assert_eq!(out, [1, 1, 1, 1]);
        assert_eq!(n, 4);
        assert_eq!(bins.bin_of(2.0, 1.0), None);
        assert_eq!(bins.bin_of(1.0, 1.0), Some(0));
        assert_eq!(bins.bin_of(0.99, 1.0), None);
        assert_eq!(bins.bin_of(f64::NAN, 1.0), None);
    }

    #[test]
    fn skips_units_not_kept() {
        let bins = Bins {
            bin_size: 1.0,
            n_bins: 1,
        };
        let mut out = vec![0u32; 1];
        let n = add_trial(
            &[0.1, 0.2, 0.3],
            &[0, 1, 5],
            &[u32::MAX, 0],
            0.0,
            bins,
            1,
            &mut out,
        );
        assert_eq!(out, [1]);
        assert_eq!(n, 1);
    }
}

//! Masking (SPEC §3): the four training schemes drawn from the counter-based RNG, and the fixed
//! evaluation masks of SPEC §5.
//!
//! Arrays are `[b, t, n]` row-major (trial, then bin, then neuron), as in `Batch`. `mask` is 1
//! where the input is zeroed; `target` is 1 where the entry is in the loss.
//!
//! # Draws (what a GPU kernel must reproduce)
//!
//! Every random choice for batch row `row` is a pure function of the batch key and a counter
//! `counter(row, kind, j) = row << 40 | kind << 32 | j`:
//!
//! | scheme | `DRAW_ELEMENT`, j | `DRAW_FALLBACK`, j = 0 | `DRAW_REGION`, j = 0 |
//! |---|---|---|---|
//! | co-smooth | neuron `j` masked iff `uniform < ratio` | `below(n)`: the neuron forced | — |
//! | forward | bin `j` masked iff `uniform < ratio` | `below(t)`: the bin forced | — |
//! | inter-region | — | — | `below(R)`: the region r |
//! | intra-region | neuron `j` of r masked iff `uniform < ratio` | `below(\|r\|)`: index into r's neurons (ascending) | `below(R)`: the region r |
//!
//! `uniform` and `below` are `crate::rng::uniform(key, counter)` and `crate::rng::below(key,
//! counter, m)`. The fallback draw is used only when no element of the row came up, so every row
//! has at least one target. For intra-region the element counter is the neuron's index in the
//! session (not its rank inside r), so a thread per neuron needs nothing but its own index.

use crate::rng;
use crate::scheme::Scheme;

/// The masking ratio ρ of the paper (Table 2).
pub const DEFAULT_RATIO: f32 = 0.3;

/// Counter kind of the per-element Bernoulli draws (neurons or bins).
pub const DRAW_ELEMENT: u64 = 0;
/// Counter kind of the draw that forces one element when none came up.
pub const DRAW_FALLBACK: u64 = 1;
/// Counter kind of the region choice of the region schemes.
pub const DRAW_REGION: u64 = 2;

/// Counter of draw `j` of `kind` for batch row `row`: `row << 40 | kind << 32 | j`.
/// Needs `row < 2^24`, `kind < 256`, `j < 2^32`.
#[inline]
pub fn counter(row: usize, kind: u64, j: usize) -> u64 {
    debug_assert!(row < 1 << 24 && kind < 256 && (j as u64) < 1 << 32);
    ((row as u64) << 40) | (kind << 32) | j as u64
}

/// Whether a session with `n_regions` distinct regions can use `scheme`: the region schemes
/// need at least two regions (with one, inter-region would zero the whole input and intra-region
/// would be co-smoothing).
pub fn supports(scheme: Scheme, n_regions: usize) -> bool {
    !scheme.needs_regions() || n_regions >= 2
}

/// The schemes of `enabled` that a session with `n_regions` regions supports, in `enabled` order.
pub fn supported(enabled: &[Scheme], n_regions: usize) -> Vec<Scheme> {
    enabled
        .iter()
        .copied()
        .filter(|&s| supports(s, n_regions))
        .collect()
}

/// A session's neurons grouped by region: `of[i]` is neuron i's region index, `members(r)` the
/// neurons of region r in ascending order. Every region in `0..n_regions` has at least one neuron.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions {
    of: Vec<u16>,
    members: Vec<Vec<u32>>,
}

impl Regions {
    /// Groups neurons by `region_of` (one index per neuron, each `< n_regions`).
    /// Panics if an index is out of range or a region has no neuron (`SessionInfo::region_index`
    /// never produces either).
    pub fn new(region_of: &[u16], n_regions: usize) -> Regions {
        let mut members = vec![Vec::new(); n_regions];
        for (i, &r) in region_of.iter().enumerate() {
            assert!(
                (r as usize) < n_regions,
                "neuron {i}: region {r} >= {n_regions}"
            );
            members[r as usize].push(i as u32);
        }
        for (r, m) in members.iter().enumerate() {
            assert!(!m.is_empty(), "region {r} has no neuron");
        }
        Regions {
            of: region_of.to_vec(),
            members,
        }
    }

    /// Every neuron in one region.
    pub fn single(n: usize) -> Regions {
        Regions::new(&vec![0; n], 1)
    }

    pub fn n_neurons(&self) -> usize {
        self.of.len()
    }

    pub fn n_regions(&self) -> usize {
        self.members.len()
    }

    /// Region index of each neuron.
    pub fn of(&self) -> &[u16] {
        &self.of
    }

    /// Neurons of region `r`, ascending.
    pub fn members(&self, r: usize) -> &[u32] {
        &self.members[r]
    }
}

/// Draws the masks of one batch under `scheme` (SPEC §3) into `mask` and `target`, both
/// `[b, t, n]` and fully overwritten. `key` is the batch's RNG key (see the module docs for the
/// counters). `ratio` is ρ in `[0, 1]`. Every row gets at least one target.
///
/// Panics (programmer error) if the lengths disagree, `n != regions.n_neurons()`, or a region
/// scheme is asked of a session that does not `supports` it.
#[allow(clippy::too_many_arguments)]
pub fn make_masks(
    scheme: Scheme,
    b: usize,
    t: usize,
    n: usize,
    regions: &Regions,
    ratio: f32,
    key: u64,
    mask: &mut [u8],
    target: &mut [u8],
) {
    assert_eq!(mask.len(), b * t * n, "mask length");
    assert_eq!(target.len(), b * t * n, "target length");
    assert_eq!(regions.n_neurons(), n, "regions cover {} neurons", n);
    assert!(
        supports(scheme, regions.n_regions()),
        "{scheme} needs two regions, the session has {}",
        regions.n_regions()
    );
    assert!(t > 0 && n > 0, "empty trial");
    let tn = t * n;
    for row in 0..b {
        let m = &mut mask[row * tn..(row + 1) * tn];
        let g = &mut target[row * tn..(row + 1) * tn];
        match scheme {
            Scheme::Forward => forward_row(t, n, ratio, key, row, m, g),
            _ => {
                // Neuron schemes: decide bin 0, then copy it to every bin.
                let (m0, g0) = (&mut m[..n], &mut g[..n]);
                match scheme {
                    Scheme::CoSmooth => cosmooth_row(n, ratio, key, row, m0, g0),
                    Scheme::InterRegion => inter_row(regions, key, row, m0, g0),
                    Scheme::IntraRegion => intra_row(regions, ratio, key, row, m0, g0),
                    Scheme::Forward => unreachable!(),
                }
                broadcast_bin0(t, n, m);
                broadcast_bin0(t, n, g);
            }
        }
    }
}

/// Bernoulli(ratio) draw of element `j` of row `row`.
#[inline]
fn hit(key: u64, row: usize, j: usize, ratio: f32) -> bool {
    rng::uniform(key, counter(row, DRAW_ELEMENT, j)) < ratio
}

/// The element forced when none came up: uniform in `0..m`.
#[inline]
fn fallback(key: u64, row: usize, m: usize) -> usize {
    rng::below(key, counter(row, DRAW_FALLBACK, 0), m as u32) as usize
}

/// The region of a region scheme: uniform in `0..n_regions`.
#[inline]
pub fn region_draw(key: u64, row: usize, n_regions: usize) -> usize {
    rng::below(key, counter(row, DRAW_REGION, 0), n_regions as u32) as usize
}

/// Copies bin 0 (`a[..n]`) to every other bin of a `[t, n]` row.
fn broadcast_bin0(t: usize, n: usize, a: &mut [u8]) {
    let (first, rest) = a.split_at_mut(n);
    for chunk in rest[..(t - 1) * n].chunks_exact_mut(n) {
        chunk.copy_from_slice(first);
    }
}

/// Co-smooth, one row, bin 0 only: neuron j masked w.p. ratio; targets = masked.
fn cosmooth_row(n: usize, ratio: f32, key: u64, row: usize, m: &mut [u8], g: &mut [u8]) {
    let mut any = false;
    for (j, mj) in m.iter_mut().enumerate() {
        let h = hit(key, row, j, ratio);
        any |= h;
        *mj = h as u8;
    }
    if !any {
        m[fallback(key, row, n)] = 1;
    }
    g.copy_from_slice(m);
}

/// Forward, one row `[t, n]`: bin j masked (all neurons) w.p. ratio; targets = masked.
fn forward_row(t: usize, n: usize, ratio: f32, key: u64, row: usize, m: &mut [u8], g: &mut [u8]) {
    // Decide each bin in its first entry, then fill the bin.
    let mut any = false;
    for j in 0..t {
        let h = hit(key, row, j, ratio);
        any |= h;
        m[j * n] = h as u8;
    }
    if !any {
        m[fallback(key, row, t) * n] = 1;
    }
    for j in 0..t {
        let v = m[j * n];
        m[j * n..(j + 1) * n].fill(v);
        g[j * n..(j + 1) * n].fill(v);
    }
}

/// Inter-region, one row, bin 0: every neuron of one region masked; targets = masked.
fn inter_row(regions: &Regions, key: u64, row: usize, m: &mut [u8], g: &mut [u8]) {
    let r = region_draw(key, row, regions.n_regions()) as u16;
    for (j, &rj) in regions.of().iter().enumerate() {
        m[j] = (rj == r) as u8;
    }
    g.copy_from_slice(m);
}

/// Intra-region, one row, bin 0: every neuron outside region r masked, each neuron of r masked
/// w.p. ratio; targets = the masked neurons of r.
fn intra_row(regions: &Regions, ratio: f32, key: u64, row: usize, m: &mut [u8], g: &mut [u8]) {
    let r = region_draw(key, row, regions.n_regions());
    m.fill(1);
    g.fill(0);
    let members = regions.members(r);
    let mut any = false;
    for &j in members {
        let j = j as usize;
        let h = hit(key, row, j, ratio);
        any |= h;
        m[j] = h as u8;
        g[j] = h as u8;
    }
    if !any {
        let j = members[fallback(key, row, members.len())] as usize;
        m[j] = 1;
        g[j] = 1;
    }
}

/// Length of a forward-prediction evaluation window, in bins (200 ms at 20 ms bins).
pub const FORWARD_WINDOW: usize = 10;
/// Number of forward-prediction windows from stimulus onset (110 bins).
pub const FORWARD_WINDOWS: usize = 11;

/// One fixed evaluation task of SPEC §5, the same for every trial of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalMask {
    /// Neuron `neuron` zeroed in all bins and predicted; the others visible.
    CoSmooth { neuron: usize },
    /// Bins `start..` zeroed; bins `start..start + len` predicted (all neurons); causal.
    Forward { start: usize, len: usize },
    /// Every neuron of `region` zeroed and predicted.
    InterRegion { region: usize },
    /// Everything outside `region` and neuron `neuron` (a member of `region`) zeroed; `neuron`
    /// predicted.
    IntraRegion { region: usize, neuron: usize },
}

impl EvalMask {
    /// Scheme whose prompt token (and attention) the task uses.
    pub fn scheme(&self) -> Scheme {
        match self {
            EvalMask::CoSmooth { .. } => Scheme::CoSmooth,
            EvalMask::Forward { .. } => Scheme::Forward,
            EvalMask::InterRegion { .. } => Scheme::InterRegion,
            EvalMask::IntraRegion { .. } => Scheme::IntraRegion,
        }
    }

    /// Writes this task's mask and target for one trial, `[t, n]` each, fully overwritten.
    /// Panics if the task does not fit the shape or the regions.
    pub fn fill(&self, t: usize, n: usize, regions: &Regions, mask: &mut [u8], target: &mut [u8]) {
        assert_eq!(mask.len(), t * n, "mask length");
        assert_eq!(target.len(), t * n, "target length");
        assert_eq!(regions.n_neurons(), n, "regions cover {} neurons", n);
        match *self {
            EvalMask::Forward { start, len } => {
                assert!(
                    len > 0 && start + len <= t,
                    "window {start}+{len} outside {t} bins"
                );
                mask[..start * n].fill(0);
                mask[start * n..].fill(1);
                target.fill(0);
                target[start * n..(start + len) * n].fill(1);
                return;
            }
            EvalMask::CoSmooth { neuron } => {
                assert!(neuron < n, "neuron {neuron} >= {n}");
                mask[..n].fill(0);
                mask[neuron] = 1;
                target[..n].copy_from_slice(&mask[..n]);
            }
            EvalMask::InterRegion { region } => {
                assert!(region < regions.n_regions(), "region {region}");
                for (j, &r) in regions.of().iter().enumerate() {
                    mask[j] = (r as usize == region) as u8;
                }
                target[..n].copy_from_slice(&mask[..n]);
            }
            EvalMask::IntraRegion { region, neuron } => {
                assert!(
                    neuron < n && regions.of()[neuron] as usize == region,
                    "neuron {neuron} is not in region {region}"
                );
                for (j, &r) in regions.of().iter().enumerate() {
                    mask[j] = (r as usize != region || j == neuron) as u8;
                }
                target[..n].fill(0);
                target[neuron] = 1;
            }
        }
        broadcast_bin0(t, n, mask);
        broadcast_bin0(t, n, target);
    }
}

/// The forward-prediction windows of a trial of `t` bins with stimulus onset at bin `onset`:
/// `FORWARD_WINDOWS` non-overlapping windows of `FORWARD_WINDOW` bins from onset, cut at the end
/// of the trial (a window that would start at or past `t` is dropped; the last one may be short).
pub fn forward_windows(t: usize, onset: usize) -> Vec<EvalMask> {
    (0..FORWARD_WINDOWS)
        .map(|w| onset + w * FORWARD_WINDOW)
        .take_while(|&start| start < t)
        .map(|start| EvalMask::Forward {
            start,
            len: FORWARD_WINDOW.min(t - start),
        })
        .collect()
}

/// Every evaluation task of `scheme` for a session (SPEC §5): co-smoothing one per neuron,
/// forward one per window (`forward_windows`), inter-region one per region, intra-region one per
/// (region, neuron of it). Region schemes give no task for a session with one region.
pub fn eval_masks(scheme: Scheme, t: usize, onset: usize, regions: &Regions) -> Vec<EvalMask> {
    if !supports(scheme, regions.n_regions()) {
        return Vec::new();
    }
    match scheme {
        Scheme::CoSmooth => (0..regions.n_neurons())
            .map(|neuron| EvalMask::CoSmooth { neuron })
            .collect(),
        Scheme::Forward => forward_windows(t, onset),
        Scheme::InterRegion => (0..regions.n_regions())
            .map(|region| EvalMask::InterRegion { region })
            .collect(),
        Scheme::IntraRegion => (0..regions.n_regions())
            .flat_map(|region| {
                regions
                    .members(region)
                    .iter()
                    .map(move |&j| EvalMask::IntraRegion {
                        region,
                        neuron: j as usize,
                    })
            })
            .collect(),
    }
}

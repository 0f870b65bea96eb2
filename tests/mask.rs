//! Masking schemes (SPEC §3) and evaluation masks (SPEC §5): which entries are masked and which
//! are targets, the statistics of the draws, the documented RNG counters, determinism.

use ndt::mask::{
    DRAW_ELEMENT, DRAW_FALLBACK, DRAW_REGION, EvalMask, FORWARD_WINDOW, Regions, counter,
    eval_masks, forward_windows, make_masks, supported, supports,
};
use ndt::rng;
use ndt::scheme::Scheme;

/// Five regions of uneven sizes (3, 10, 1, 20, 6 neurons), interleaved.
fn five_regions() -> Regions {
    let sizes = [3usize, 10, 1, 20, 6];
    let mut of = Vec::new();
    let mut left = sizes;
    // Round-robin so that region members are not contiguous.
    while left.iter().any(|&k| k > 0) {
        for (r, k) in left.iter_mut().enumerate() {
            if *k > 0 {
                of.push(r as u16);
                *k -= 1;
            }
        }
    }
    Regions::new(&of, sizes.len())
}

struct Drawn {
    b: usize,
    t: usize,
    n: usize,
    mask: Vec<u8>,
    target: Vec<u8>,
}

impl Drawn {
    fn at(&self, a: &[u8], row: usize, bin: usize, j: usize) -> u8 {
        a[(row * self.t + bin) * self.n + j]
    }
    fn m(&self, row: usize, bin: usize, j: usize) -> u8 {
        self.at(&self.mask, row, bin, j)
    }
    fn g(&self, row: usize, bin: usize, j: usize) -> u8 {
        self.at(&self.target, row, bin, j)
    }
    /// Neurons masked in bin 0 of `row` (neuron schemes are constant across bins).
    fn masked_neurons(&self, row: usize) -> Vec<usize> {
        (0..self.n).filter(|&j| self.m(row, 0, j) == 1).collect()
    }
    fn target_neurons(&self, row: usize) -> Vec<usize> {
        (0..self.n).filter(|&j| self.g(row, 0, j) == 1).collect()
    }
    fn row_targets(&self, row: usize) -> usize {
        let tn = self.t * self.n;
        self.target[row * tn..(row + 1) * tn]
            .iter()
            .map(|&x| x as usize)
            .sum()
    }
}

/// Draws into poisoned buffers, so that an entry left unwritten shows up as 0xAB.
fn draw(scheme: Scheme, b: usize, t: usize, regions: &Regions, ratio: f32, key: u64) -> Drawn {
    let n = regions.n_neurons();
    let mut mask = vec![0xAB; b * t * n];
    let mut target = vec![0xAB; b * t * n];
    make_masks(scheme, b, t, n, regions, ratio, key, &mut mask, &mut target);
    assert!(
        mask.iter().chain(&target).all(|&x| x <= 1),
        "unwritten entry"
    );
    Drawn {
        b,
        t,
        n,
        mask,
        target,
    }
}

/// |observed - expected| within `k` binomial standard deviations.
fn within_sd(observed: usize, trials: usize, p: f64, k: f64) -> bool {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    (observed as f64 - mean).abs() <= k * sd
}

/// Neuron schemes mask whole columns: every bin of a row equals bin 0.
fn assert_constant_over_bins(d: &Drawn) {
    for row in 0..d.b {
        for bin in 1..d.t {
            for j in 0..d.n {
                assert_eq!(d.m(row, bin, j), d.m(row, 0, j));
                assert_eq!(d.g(row, bin, j), d.g(row, 0, j));
            }
        }
    }
}

#[test]
fn cosmooth_masks_whole_neurons_and_targets_them() {
    let regions = Regions::single(40);
    let d = draw(Scheme::CoSmooth, 64, 7, &regions, 0.3, rng::key(1, 0));
    assert_constant_over_bins(&d);
    assert_eq!(d.mask, d.target);
    for row in 0..d.b {
        assert!(d.row_targets(row) > 0);
    }
    // Rows are drawn independently.
    assert_ne!(d.masked_neurons(0), d.masked_neurons(1));
}

#[test]
fn forward_masks_whole_bins_and_targets_them() {
    let regions = five_regions();
    let d = draw(Scheme::Forward, 64, 30, &regions, 0.3, rng::key(2, 0));
    assert_eq!(d.mask, d.target);
    for row in 0..d.b {
        for bin in 0..d.t {
            let v = d.m(row, bin, 0);
            assert!((0..d.n).all(|j| d.m(row, bin, j) == v), "bin {bin} split");
        }
        assert!(d.row_targets(row) > 0);
    }
    assert!(Scheme::Forward.causal());
    for s in [Scheme::CoSmooth, Scheme::InterRegion, Scheme::IntraRegion] {
        assert!(!s.causal(), "{s} must not be causal");
    }
}

#[test]
fn inter_region_masks_exactly_one_region() {
    let regions = five_regions();
    let d = draw(Scheme::InterRegion, 200, 5, &regions, 0.3, rng::key(3, 0));
    assert_constant_over_bins(&d);
    assert_eq!(d.mask, d.target);
    let mut seen = [false; 5];
    for row in 0..d.b {
        let masked = d.masked_neurons(row);
        let r = regions.of()[masked[0]] as usize;
        let want: Vec<usize> = regions.members(r).iter().map(|&j| j as usize).collect();
        assert_eq!(masked, want, "row {row}");
        seen[r] = true;
    }
    assert!(
        seen.iter().all(|&s| s),
        "every region chosen at least once in 200 rows"
    );
}

#[test]
fn intra_region_masks_outside_and_targets_inside() {
    let regions = five_regions();
    let d = draw(Scheme::IntraRegion, 300, 4, &regions, 0.3, rng::key(4, 0));
    assert_constant_over_bins(&d);
    for row in 0..d.b {
        let targets = d.target_neurons(row);
        assert!(!targets.is_empty(), "row {row} has no target");
        let r = regions.of()[targets[0]];
        for j in 0..d.n {
            let inside = regions.of()[j] == r;
            if inside {
                // Inside r: masked exactly when a target.
                assert_eq!(d.m(row, 0, j), d.g(row, 0, j), "row {row} neuron {j}");
            } else {
                assert_eq!(d.m(row, 0, j), 1, "outside r must be masked");
                assert_eq!(d.g(row, 0, j), 0, "outside r is never a target");
            }
        }
    }
}

#[test]
fn element_ratio_matches_rho() {
    // Count masked elements over many rows; the forced fallback adds at most one per row, and
    // only when no element came up, which is rare at these sizes (0.7^50 ~ 2e-8).
    let ratio = 0.3;
    let regions = Regions::single(50);
    let rows = 400;
    let d = draw(Scheme::CoSmooth, rows, 2, &regions, ratio, rng::key(5, 0));
    let masked: usize = (0..rows).map(|r| d.masked_neurons(r).len()).sum();
    assert!(
        within_sd(masked, rows * 50, ratio as f64, 5.0),
        "co-smooth masked {masked} of {}",
        rows * 50
    );

    let d = draw(Scheme::Forward, rows, 50, &regions, ratio, rng::key(5, 1));
    let masked_bins: usize = (0..rows)
        .map(|r| (0..50).filter(|&bin| d.m(r, bin, 0) == 1).count())
        .sum();
    assert!(
        within_sd(masked_bins, rows * 50, ratio as f64, 5.0),
        "forward masked {masked_bins} bins of {}",
        rows * 50
    );

    // Intra-region: among the neurons of the chosen region (only rows whose region has 20
    // neurons, where the fallback is rare: 0.7^20 ~ 8e-4).
    let regions = five_regions();
    let d = draw(
        Scheme::IntraRegion,
        2000,
        1,
        &regions,
        ratio,
        rng::key(5, 2),
    );
    let (mut hits, mut total) = (0, 0);
    for row in 0..d.b {
        let targets = d.target_neurons(row);
        if regions.of()[targets[0]] == 3 {
            hits += targets.len();
            total += 20;
        }
    }
    assert!(total > 0);
    assert!(
        within_sd(hits, total, ratio as f64, 5.0),
        "intra-region targets {hits} of {total}"
    );
}

#[test]
fn region_choice_is_uniform_over_regions() {
    let regions = five_regions();
    let rows = 5000;
    for scheme in [Scheme::InterRegion, Scheme::IntraRegion] {
        let d = draw(scheme, rows, 1, &regions, 0.3, rng::key(6, scheme as u64));
        let mut count = [0usize; 5];
        for row in 0..rows {
            let r = regions.of()[d.target_neurons(row)[0]] as usize;
            count[r] += 1;
        }
        for (r, &c) in count.iter().enumerate() {
            // Uniform over regions, not over neurons: region 2 has 1 neuron, region 3 has 20.
            assert!(
                within_sd(c, rows, 0.2, 5.0),
                "{scheme}: region {r} chosen {c} of {rows}"
            );
        }
    }
}

#[test]
fn every_row_gets_a_target_even_at_tiny_ratio() {
    // With ρ = 1e-4 almost no element comes up by itself: the forced draw supplies the target,
    // exactly one per row, uniform over the candidates.
    let regions = five_regions();
    let rows = 3000;
    for scheme in Scheme::ALL {
        let d = draw(scheme, rows, 12, &regions, 1e-4, rng::key(7, scheme as u64));
        for row in 0..rows {
            assert!(d.row_targets(row) > 0, "{scheme} row {row}");
        }
    }
    let n = regions.n_neurons();
    let d = draw(Scheme::CoSmooth, rows, 1, &regions, 0.0, rng::key(7, 9));
    let mut count = vec![0usize; n];
    for row in 0..rows {
        let t = d.target_neurons(row);
        assert_eq!(t.len(), 1, "ratio 0: exactly the forced neuron");
        count[t[0]] += 1;
    }
    let p = 1.0 / n as f64;
    for (j, &c) in count.iter().enumerate() {
        assert!(within_sd(c, rows, p, 5.0), "forced neuron {j}: {c}");
    }
    let d = draw(Scheme::Forward, rows, 12, &regions, 0.0, rng::key(7, 10));
    for row in 0..rows {
        let bins = (0..12).filter(|&bin| d.m(row, bin, 0) == 1).count();
        assert_eq!(bins, 1);
    }
}

#[test]
fn ratio_one_masks_every_candidate() {
    let regions = five_regions();
    let d = draw(Scheme::CoSmooth, 3, 4, &regions, 1.0, rng::key(8, 0));
    assert!(d.mask.iter().all(|&x| x == 1));
    let d = draw(Scheme::IntraRegion, 50, 2, &regions, 1.0, rng::key(8, 1));
    assert!(d.mask.iter().all(|&x| x == 1));
    for row in 0..d.b {
        let t = d.target_neurons(row);
        let r = regions.of()[t[0]] as usize;
        assert_eq!(t.len(), regions.members(r).len());
    }
}

#[test]
fn draws_follow_the_documented_counters() {
    // Recompute every row from the counter table in the module docs, as a GPU kernel would.
    let regions = five_regions();
    let n = regions.n_neurons();
    let (b, t, ratio, key) = (9, 6, 0.3f32, rng::key(99, 3));
    let hit = |row: usize, j: usize| rng::uniform(key, counter(row, DRAW_ELEMENT, j)) < ratio;
    let forced =
        |row: usize, m: usize| rng::below(key, counter(row, DRAW_FALLBACK, 0), m as u32) as usize;
    let region = |row: usize| {
        rng::below(
            key,
            counter(row, DRAW_REGION, 0),
            regions.n_regions() as u32,
        ) as usize
    };
    assert_eq!(counter(3, DRAW_REGION, 7), (3u64 << 40) | (2u64 << 32) | 7);

    let d = draw(Scheme::CoSmooth, b, t, &regions, ratio, key);
    for row in 0..b {
        let mut want: Vec<usize> = (0..n).filter(|&j| hit(row, j)).collect();
        if want.is_empty() {
            want.push(forced(row, n));
        }
        assert_eq!(d.masked_neurons(row), want, "co-smooth row {row}");
    }
    let d = draw(Scheme::Forward, b, t, &regions, ratio, key);
    for row in 0..b {
        let mut want: Vec<usize> = (0..t).filter(|&bin| hit(row, bin)).collect();
        if want.is_empty() {
            want.push(forced(row, t));
        }
        let got: Vec<usize> = (0..t).filter(|&bin| d.m(row, bin, 0) == 1).collect();
        assert_eq!(got, want, "forward row {row}");
    }
    let d = draw(Scheme::InterRegion, b, t, &regions, ratio, key);
    for row in 0..b {
        let r = region(row) as u16;
        let want: Vec<usize> = (0..n).filter(|&j| regions.of()[j] == r).collect();
        assert_eq!(d.masked_neurons(row), want, "inter-region row {row}");
    }
    let d = draw(Scheme::IntraRegion, b, t, &regions, ratio, key);
    for row in 0..b {
        let r = region(row);
        let members = regions.members(r);
        let mut want: Vec<usize> = members
            .iter()
            .map(|&j| j as usize)
            .filter(|&j| hit(row, j))
            .collect();
        if want.is_empty() {
            want.push(members[forced(row, members.len())] as usize);
        }
        assert_eq!(d.target_neurons(row), want, "intra-region row {row}");
    }
}

#[test]
fn masks_are_deterministic_by_key() {
    let regions = five_regions();
    for scheme in Scheme::ALL {
        let a = draw(scheme, 8, 10, &regions, 0.3, rng::key(11, 5));
        let b = draw(scheme, 8, 10, &regions, 0.3, rng::key(11, 5));
        let c = draw(scheme, 8, 10, &regions, 0.3, rng::key(11, 6));
        assert_eq!(a.mask, b.mask);
        assert_eq!(a.target, b.target);
        assert_ne!(a.mask, c.mask, "{scheme}: another key, other masks");
    }
}

#[test]
fn region_schemes_need_two_regions() {
    assert!(supports(Scheme::CoSmooth, 1));
    assert!(supports(Scheme::Forward, 1));
    assert!(!supports(Scheme::InterRegion, 1));
    assert!(!supports(Scheme::IntraRegion, 1));
    assert!(supports(Scheme::IntraRegion, 2));
    assert_eq!(
        supported(&Scheme::ALL, 1),
        vec![Scheme::CoSmooth, Scheme::Forward]
    );
    assert_eq!(supported(&Scheme::ALL, 3), Scheme::ALL.to_vec());
    assert_eq!(
        supported(&[Scheme::IntraRegion, Scheme::Forward], 2),
        vec![Scheme::IntraRegion, Scheme::Forward]
    );
    assert!(eval_masks(Scheme::InterRegion, 10, 0, &Regions::single(4)).is_empty());
}

#[test]
#[should_panic(expected = "needs two regions")]
fn region_scheme_on_one_region_is_refused() {
    let regions = Regions::single(5);
    let mut m = vec![0; 10];
    let mut g = vec![0; 10];
    make_masks(
        Scheme::InterRegion,
        1,
        2,
        5,
        &regions,
        0.3,
        1,
        &mut m,
        &mut g,
    );
}

/// Fills one eval mask into poisoned `[t, n]` buffers.
fn eval(e: EvalMask, t: usize, regions: &Regions) -> (Vec<u8>, Vec<u8>) {
    let n = regions.n_neurons();
    let mut m = vec![0xCD; t * n];
    let mut g = vec![0xCD; t * n];
    e.fill(t, n, regions, &mut m, &mut g);
    (m, g)
}

#[test]
fn eval_cosmooth_holds_out_one_neuron() {
    let regions = five_regions();
    let n = regions.n_neurons();
    let t = 5;
    let (m, g) = eval(EvalMask::CoSmooth { neuron: 7 }, t, &regions);
    for bin in 0..t {
        for j in 0..n {
            let want = (j == 7) as u8;
            assert_eq!(m[bin * n + j], want);
            assert_eq!(g[bin * n + j], want);
        }
    }
    let all = eval_masks(Scheme::CoSmooth, t, 0, &regions);
    assert_eq!(all.len(), n);
    assert!(all.iter().all(|e| e.scheme() == Scheme::CoSmooth));
}

#[test]
fn eval_forward_windows_from_onset() {
    // The paper's geometry: T = 150, onset 25, 11 windows of 10 bins covering bins 25..135.
    let w = forward_windows(150, 25);
    assert_eq!(w.len(), 11);
    for (i, e) in w.iter().enumerate() {
        assert_eq!(
            *e,
            EvalMask::Forward {
                start: 25 + 10 * i,
                len: FORWARD_WINDOW
            }
        );
        assert_eq!(e.scheme(), Scheme::Forward);
        assert!(e.scheme().causal());
    }
    // A short trial cuts the windows: starts 25, 35, ..., 95; the last holds bins 95..100.
    let w = forward_windows(100, 25);
    assert_eq!(w.len(), 8);
    assert_eq!(w[7], EvalMask::Forward { start: 95, len: 5 });
    assert!(forward_windows(20, 25).is_empty());

    let regions = Regions::single(3);
    let (m, g) = eval(EvalMask::Forward { start: 4, len: 2 }, 9, &regions);
    for bin in 0..9 {
        for j in 0..3 {
            assert_eq!(
                m[bin * 3 + j],
                (bin >= 4) as u8,
                "bin {bin}: later bins zeroed"
            );
            assert_eq!(g[bin * 3 + j], (4..6).contains(&bin) as u8, "bin {bin}");
        }
    }
}

#[test]
fn eval_inter_region_holds_out_a_region() {
    let regions = five_regions();
    let n = regions.n_neurons();
    let (m, g) = eval(EvalMask::InterRegion { region: 1 }, 3, &regions);
    for bin in 0..3 {
        for j in 0..n {
            let want = (regions.of()[j] == 1) as u8;
            assert_eq!(m[bin * n + j], want);
            assert_eq!(g[bin * n + j], want);
        }
    }
    assert_eq!(eval_masks(Scheme::InterRegion, 3, 0, &regions).len(), 5);
}

#[test]
fn eval_intra_region_predicts_one_neuron_from_its_region() {
    let regions = five_regions();
    let n = regions.n_neurons();
    let r = 3;
    let neuron = regions.members(r)[4] as usize;
    let (m, g) = eval(EvalMask::IntraRegion { region: r, neuron }, 2, &regions);
    for bin in 0..2 {
        for j in 0..n {
            let outside = regions.of()[j] as usize != r;
            assert_eq!(m[bin * n + j], (outside || j == neuron) as u8, "neuron {j}");
            assert_eq!(g[bin * n + j], (j == neuron) as u8);
        }
    }
    let all = eval_masks(Scheme::IntraRegion, 2, 0, &regions);
    assert_eq!(all.len(), n, "one task per (region, neuron of it)");
    for e in all {
        let EvalMask::IntraRegion { region, neuron } = e else {
            panic!("{e:?}")
        };
        assert_eq!(regions.of()[neuron] as usize, region);
    }
}

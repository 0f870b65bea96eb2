//! Single-session batches: counts, input mask and target mask, `[B, T, N]` row-major
//! (trial-major, then bin, then neuron), as SPEC §3 defines them.
//!
//! The iterator over a split lives here too (see `BatchIter`).

use crate::error::{Result, input, usage};
use crate::mask::{EvalMask, Regions, make_masks, supported, supports};
use crate::rng;
use crate::scheme::Scheme;
use crate::store::{Dataset, SessionInfo, SplitName};

/// One batch of one session. All three arrays are `[b, t, n]`, row-major.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Index of the session in the dataset manifest.
    pub session: usize,
    /// Session id: selects the stitchers and session token of the model.
    pub session_id: String,
    /// Trial indices (within the session) of the batch rows.
    pub trials: Vec<u32>,
    pub b: usize,
    pub t: usize,
    pub n: usize,
    /// Spike counts as f32 (exact small integers).
    pub counts: Vec<f32>,
    /// 1 where the input is zeroed.
    pub mask: Vec<u8>,
    /// 1 where the entry is in the loss.
    pub target: Vec<u8>,
    /// The scheme that produced mask/target; selects the prompt token and causal attention.
    pub scheme: Scheme,
}

impl Batch {
    pub fn causal(&self) -> bool {
        self.scheme.causal()
    }
}

/// How a `BatchIter` cuts, orders and masks a split.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOpts {
    /// Trials per batch (the last batch of a session may be shorter).
    pub batch_size: usize,
    /// Enabled schemes; each batch uses one, uniform over those its session supports.
    pub schemes: Vec<Scheme>,
    /// Masking ratio ρ, in `(0, 1]`.
    pub ratio: f32,
    pub seed: u64,
    /// Shuffle trials within each session and batches across sessions, anew each epoch.
    /// Without it, batches come session by session in split order.
    pub shuffle: bool,
    /// Fixed draw: every epoch is epoch 0 (same order, schemes and masks each time). This is
    /// the validation masking draw of SPEC §4.
    pub fixed_draw: bool,
}

impl Default for BatchOpts {
    fn default() -> Self {
        BatchOpts {
            batch_size: 16,
            schemes: Scheme::ALL.to_vec(),
            ratio: crate::mask::DEFAULT_RATIO,
            seed: 0,
            shuffle: true,
            fixed_draw: false,
        }
    }
}

impl BatchOpts {
    /// Training: shuffled, new masks each epoch.
    pub fn train(batch_size: usize, schemes: &[Scheme], ratio: f32, seed: u64) -> BatchOpts {
        BatchOpts {
            batch_size,
            schemes: schemes.to_vec(),
            ratio,
            seed,
            shuffle: true,
            fixed_draw: false,
        }
    }

    /// Validation: split order, one fixed masking draw for every epoch.
    pub fn validation(batch_size: usize, schemes: &[Scheme], ratio: f32, seed: u64) -> BatchOpts {
        BatchOpts {
            shuffle: false,
            fixed_draw: true,
            ..BatchOpts::train(batch_size, schemes, ratio, seed)
        }
    }

    fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(usage("batch size must be at least 1"));
        }
        if self.schemes.is_empty() {
            return Err(usage("no masking scheme enabled"));
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(usage(format!(
                "masking ratio {} is outside (0, 1]",
                self.ratio
            )));
        }
        Ok(())
    }
}

/// What batching needs to know of one session of the split.
#[derive(Clone, Debug)]
pub struct SessionSlot {
    /// Index of the session in the dataset manifest.
    pub session: usize,
    pub id: String,
    pub t: usize,
    pub n: usize,
    pub regions: Regions,
    /// Trial indices of the split, in stored order.
    pub trials: Vec<u32>,
    /// Enabled schemes the session supports (never empty).
    pub schemes: Vec<Scheme>,
}

// Stream tags of the epoch key (high byte), OR-ed with an index.
const STREAM_TRIALS: u64 = 1 << 56;
const STREAM_ORDER: u64 = 2 << 56;
const STREAM_MASKS: u64 = 3 << 56;
const STREAM_SCHEME: u64 = 4 << 56;

/// In-place Fisher–Yates shuffle drawn from stream `key`: step i swaps `v[i]` with
/// `v[below(key, i, i + 1)]`, for i from the end down to 1.
pub fn shuffle<T>(v: &mut [T], key: u64) {
    for i in (1..v.len()).rev() {
        let j = rng::below(key, i as u64, i as u32 + 1) as usize;
        v.swap(i, j);
    }
}

/// One batch of an epoch, before its counts are gathered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBatch {
    /// Index into the plan's slots.
    pub slot: usize,
    /// Trials (within the session) of the batch rows.
    pub trials: Vec<u32>,
    pub scheme: Scheme,
    /// RNG key of the batch's masks (`crate::mask::make_masks`).
    pub key: u64,
}

/// The order, trials, schemes and mask keys of every batch of an epoch: a pure function of
/// (slots, options, epoch).
///
/// With epoch key `ek = rng::key(seed, e)` (`e` = 0 under `fixed_draw`, else the epoch):
/// - session `s`'s split trials are shuffled (if `shuffle`) with key `rng::key(ek, 1<<56 | s)`
///   and cut in order into batches of `batch_size`; the last batch keeps the remainder, so a
///   session of `m` trials gives `ceil(m / batch_size)` batches and every trial appears once;
/// - all batches, listed session by session, are shuffled (if `shuffle`) with key
///   `rng::key(ek, 2<<56)`, which interleaves sessions;
/// - the batch at position `p` of the epoch masks with key `rng::key(ek, 3<<56 | p)` and uses
///   scheme `schemes[below(rng::key(ek, 4<<56 | p), 0, schemes.len())]` of its session.
#[derive(Clone, Debug)]
pub struct EpochPlan {
    slots: Vec<SessionSlot>,
    opts: BatchOpts,
    epoch: u64,
    /// Per slot: the split's trials in this epoch's order.
    perms: Vec<Vec<u32>>,
    /// (slot, batch within slot) at each position of the epoch.
    order: Vec<(u32, u32)>,
}

impl EpochPlan {
    /// Plans epoch 0. Fails on bad options or a session that supports no enabled scheme.
    pub fn new(slots: Vec<SessionSlot>, opts: BatchOpts) -> Result<EpochPlan> {
        opts.check()?;
        for s in &slots {
            if s.schemes.is_empty() {
                return Err(usage(format!(
                    "session {} has {} region(s): none of the schemes {} applies to it",
                    s.id,
                    s.regions.n_regions(),
                    scheme_list(&opts.schemes)
                )));
            }
        }
        let mut plan = EpochPlan {
            perms: vec![Vec::new(); slots.len()],
            slots,
            opts,
            epoch: 0,
            order: Vec::new(),
        };
        plan.set_epoch(0);
        Ok(plan)
    }

    /// Replans for epoch `epoch`.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        let ek = self.epoch_key();
        let bs = self.opts.batch_size;
        self.order.clear();
        for (i, (slot, perm)) in self.slots.iter().zip(&mut self.perms).enumerate() {
            perm.clear();
            perm.extend_from_slice(&slot.trials);
            if self.opts.shuffle {
                shuffle(perm, rng::key(ek, STREAM_TRIALS | slot.session as u64));
            }
            let nb = perm.len().div_ceil(bs);
            self.order.extend((0..nb).map(|k| (i as u32, k as u32)));
        }
        if self.opts.shuffle {
            shuffle(&mut self.order, rng::key(ek, STREAM_ORDER));
        }
    }

    fn epoch_key(&self) -> u64 {
        let e = if self.opts.fixed_draw { 0 } else { self.epoch };
        rng::key(self.opts.seed, e)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn opts(&self) -> &BatchOpts {
        &self.opts
    }

    pub fn slots(&self) -> &[SessionSlot] {
        &self.slots
    }

    /// Batches per epoch (the same every epoch).
    pub fn n_batches(&self) -> usize {
        self.order.len()
    }

    /// Slot, trials, scheme and mask key of the batch at position `p` of the epoch.
    fn batch_head(&self, p: usize) -> (usize, &[u32], Scheme, u64) {
        let (i, k) = self.order[p];
        let (i, k) = (i as usize, k as usize);
        let bs = self.opts.batch_size;
        let perm = &self.perms[i];
        let trials = &perm[k * bs..((k + 1) * bs).min(perm.len())];
        let ek = self.epoch_key();
        let schemes = &self.slots[i].schemes;
        let pick = rng::below(
            rng::key(ek, STREAM_SCHEME | p as u64),
            0,
            schemes.len() as u32,
        );
        let key = rng::key(ek, STREAM_MASKS | p as u64);
        (i, trials, schemes[pick as usize], key)
    }

    /// The batch at position `p < n_batches()` of the current epoch.
    pub fn batch(&self, p: usize) -> PlannedBatch {
        let (slot, trials, scheme, key) = self.batch_head(p);
        PlannedBatch {
            slot,
            trials: trials.to_vec(),
            scheme,
            key,
        }
    }
}

fn scheme_list(s: &[Scheme]) -> String {
    s.iter().map(|x| x.name()).collect::<Vec<_>>().join(",")
}

/// The masks of a batch filled by `fill_batch`.
#[derive(Clone, Copy, Debug)]
pub enum Masking {
    /// A random draw of `scheme` (SPEC §3) with ratio ρ and RNG key `key`.
    Draw {
        scheme: Scheme,
        ratio: f32,
        key: u64,
    },
    /// One fixed evaluation task (SPEC §5), the same for every row.
    Eval(EvalMask),
}

/// Fills `out` with trials `trials` of session `session` of `ds`: counts gathered from the
/// mapped trial bytes, masks as `masking` says. `out`'s buffers are reused (resized, not
/// reallocated once large enough). Fails if a trial index is out of range or a region scheme is
/// asked of a session with one region.
pub fn fill_batch(
    ds: &Dataset,
    session: usize,
    trials: &[u32],
    masking: &Masking,
    out: &mut Batch,
) -> Result<()> {
    if session >= ds.n_sessions() {
        return Err(usage(format!(
            "session index {session} out of range: {} has {} sessions",
            ds.dir.display(),
            ds.n_sessions()
        )));
    }
    let info = ds.session(session);
    let regions = session_regions(info);
    if let Some(&bad) = trials.iter().find(|&&t| t as usize >= info.n_trials) {
        return Err(usage(format!(
            "trial {bad} out of range: session {} has {} trials",
            info.id, info.n_trials
        )));
    }
    let scheme = match masking {
        Masking::Draw { scheme, .. } => *scheme,
        Masking::Eval(e) => e.scheme(),
    };
    if !supports(scheme, regions.n_regions()) {
        return Err(usage(format!(
            "session {} has one region: {scheme} does not apply to it",
            info.id
        )));
    }
    fill_with(ds, session, &info.id, &regions, trials, masking, out);
    Ok(())
}

/// `fill_batch` once the arguments are known to be valid.
fn fill_with(
    ds: &Dataset,
    session: usize,
    id: &str,
    regions: &Regions,
    trials: &[u32],
    masking: &Masking,
    out: &mut Batch,
) {
    let info = ds.session(session);
    let (b, t, n) = (trials.len(), info.n_bins, info.n_neurons);
    out.session = session;
    out.session_id.clear();
    out.session_id.push_str(id);
    out.trials.clear();
    out.trials.extend_from_slice(trials);
    (out.b, out.t, out.n) = (b, t, n);
    out.counts.resize(b * t * n, 0.0);
    out.mask.resize(b * t * n, 0);
    out.target.resize(b * t * n, 0);
    ds.gather_f32(session, trials, &mut out.counts);
    match *masking {
        Masking::Draw { scheme, ratio, key } => {
            out.scheme = scheme;
            make_masks(
                scheme,
                b,
                t,
                n,
                regions,
                ratio,
                key,
                &mut out.mask,
                &mut out.target,
            );
        }
        Masking::Eval(e) => {
            out.scheme = e.scheme();
            let tn = t * n;
            if b > 0 {
                e.fill(t, n, regions, &mut out.mask[..tn], &mut out.target[..tn]);
                for row in 1..b {
                    out.mask.copy_within(..tn, row * tn);
                    out.target.copy_within(..tn, row * tn);
                }
            }
        }
    }
}

/// A session's neurons grouped by region, from the manifest's labels.
pub fn session_regions(info: &SessionInfo) -> Regions {
    let (names, of) = info.region_index();
    Regions::new(&of, names.len())
}

impl Batch {
    /// An empty batch whose buffers `BatchIter::next_batch` and `fill_batch` grow and reuse.
    pub fn empty() -> Batch {
        Batch {
            session: 0,
            session_id: String::new(),
            trials: Vec::new(),
            b: 0,
            t: 0,
            n: 0,
            counts: Vec::new(),
            mask: Vec::new(),
            target: Vec::new(),
            scheme: Scheme::CoSmooth,
        }
    }
}

/// The batches of one split of some sessions of a dataset, epoch by epoch: single-session
/// batches with counts gathered from the memory map and masks drawn per batch. Order, trials,
/// schemes and mask keys are those of [`EpochPlan`], so everything is a function of the seed and
/// the epoch.
///
/// ```no_run
/// # use ndt::batch::{Batch, BatchIter, BatchOpts};
/// # use ndt::scheme::Scheme;
/// # use ndt::store::{Dataset, SplitName};
/// # fn f(ds: &Dataset) -> ndt::Result<()> {
/// let mut it = BatchIter::new(ds, &[0, 1], SplitName::Train, BatchOpts::train(16, &Scheme::ALL, 0.3, 42))?;
/// let mut batch = Batch::empty();
/// for epoch in 0..10 {
///     it.start_epoch(epoch);
///     while it.next_batch(&mut batch) {
///         // train on `batch`
///     }
/// }
/// # Ok(()) }
/// ```
pub struct BatchIter<'a> {
    ds: &'a Dataset,
    plan: EpochPlan,
    pos: usize,
}

impl<'a> BatchIter<'a> {
    /// Batches of `split` of dataset sessions `sessions` (indices into the manifest, each at most
    /// once), positioned at the start of epoch 0. Fails on bad options, an unknown or repeated
    /// session, or a session none of the enabled schemes applies to (the region schemes need two
    /// regions).
    pub fn new(
        ds: &'a Dataset,
        sessions: &[usize],
        split: SplitName,
        opts: BatchOpts,
    ) -> Result<BatchIter<'a>> {
        let mut slots = Vec::with_capacity(sessions.len());
        for (k, &s) in sessions.iter().enumerate() {
            if s >= ds.n_sessions() {
                return Err(usage(format!(
                    "session index {s} out of range: {} has {} sessions",
                    ds.dir.display(),
                    ds.n_sessions()
                )));
            }
            if sessions[..k].contains(&s) {
                return Err(usage(format!(
                    "session {} is listed twice",
                    ds.session(s).id
                )));
            }
            let info = ds.session(s);
            let trials = info.split(split).to_vec();
            if let Some(&bad) = trials.iter().find(|&&t| t as usize >= info.n_trials) {
                return Err(input(
                    ds.dir.join("manifest.json"),
                    format!(
                        "session {}: {} trial {bad} out of range ({} trials)",
                        info.id,
                        split.as_str(),
                        info.n_trials
                    ),
                ));
            }
            let regions = session_regions(info);
            slots.push(SessionSlot {
                session: s,
                id: info.id.clone(),
                t: info.n_bins,
                n: info.n_neurons,
                schemes: supported(&opts.schemes, regions.n_regions()),
                regions,
                trials,
            });
        }
        Ok(BatchIter {
            ds,
            plan: EpochPlan::new(slots, opts)?,
            pos: 0,
        })
    }

    /// Plans epoch `epoch` and goes to its first batch.
    pub fn start_epoch(&mut self, epoch: u64) {
        self.plan.set_epoch(epoch);
        self.pos = 0;
    }

    /// Goes to position `pos` of the current epoch (resuming part way through an epoch).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.n_batches());
    }

    /// Position of the next batch within the epoch.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Batches per epoch (the same every epoch).
    pub fn n_batches(&self) -> usize {
        self.plan.n_batches()
    }

    pub fn plan(&self) -> &EpochPlan {
        &self.plan
    }

    /// Fills `out` with the next batch of the epoch and returns true, or returns false at the
    /// end of the epoch (`out` untouched).
    pub fn next_batch(&mut self, out: &mut Batch) -> bool {
        if self.pos >= self.plan.n_batches() {
            return false;
        }
        let (i, trials, scheme, key) = self.plan.batch_head(self.pos);
        let slot = &self.plan.slots[i];
        let masking = Masking::Draw {
            scheme,
            ratio: self.plan.opts.ratio,
            key,
        };
        fill_with(
            self.ds,
            slot.session,
            &slot.id,
            &slot.regions,
            trials,
            &masking,
            out,
        );
        self.pos += 1;
        true
    }

    /// Every batch of epoch `epoch`, each in a fresh `Batch` (simple, but allocates per batch;
    /// the training loop uses `next_batch`).
    pub fn epoch(&mut self, epoch: u64) -> impl Iterator<Item = Batch> + '_ {
        self.start_epoch(epoch);
        std::iter::from_fn(move || {
            let mut b = Batch::empty();
            self.next_batch(&mut b).then_some(b)
        })
    }
}

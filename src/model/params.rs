//! The one parameter layout table: every tensor's SPEC §2 name, its shape (PyTorch `Linear`
//! layout `[out, in]`) and its place in the flat f32 allocation that parameters, gradients and
//! both AdamW moments each use. Everything else (init, checkpoints, both backends, fixtures)
//! finds tensors through this table.
//!
//! Layout order: the sessions in id order (`stitch_in.weight`, `stitch_in.bias`,
//! `stitch_out.weight`, `stitch_out.bias`, `token`), then `embed.fc1.*`, `embed.fc2.*`, `pos`,
//! `mask_tokens`, the blocks in order (`ln1`, `attn.qkv`, `attn.out`, `ln2`, `mlp.fc1`,
//! `mlp.fc2`, weight before bias), and `ln_f`. Each session's tensors are contiguous.

use crate::error::{Result, internal};
use crate::model::ModelConfig;

/// One named tensor of the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// SPEC §2 name, e.g. `blocks.0.attn.qkv.weight`.
    pub name: String,
    /// Shape, PyTorch layout (`[out, in]` for Linear weights).
    pub shape: Vec<usize>,
    /// First element in the flat vector.
    pub offset: usize,
    /// Number of elements (product of `shape`).
    pub len: usize,
    /// `Some(sid)` for the tensors of session `sid` (`sessions.{sid}.*`), `None` for the core.
    pub session: Option<String>,
    /// What the tensor is (set where the table is built; init reads it, never the name).
    pub role: Role,
}

/// The part of the model a tensor plays (SPEC §2); `Ln*` are the blocks' `ln1`/`ln2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    StitchInWeight,
    StitchInBias,
    StitchOutWeight,
    StitchOutBias,
    SessionToken,
    EmbedFc1Weight,
    EmbedFc1Bias,
    EmbedFc2Weight,
    EmbedFc2Bias,
    Pos,
    MaskTokens,
    LnWeight,
    LnBias,
    QkvWeight,
    QkvBias,
    AttnOutWeight,
    AttnOutBias,
    MlpFc1Weight,
    MlpFc1Bias,
    MlpFc2Weight,
    MlpFc2Bias,
    FinalLnWeight,
    FinalLnBias,
}

impl ParamEntry {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// The parameter layout of one `ModelConfig`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTable {
    pub entries: Vec<ParamEntry>,
    /// Total number of f32 elements.
    pub total: usize,
}

impl ParamTable {
    pub fn new(cfg: &ModelConfig) -> ParamTable {
        ParamTable::aligned(cfg, 1)
    }

    /// The same tensors in the same order with every offset rounded up to a multiple of
    /// `align` elements, the gaps belonging to no tensor: the CUDA backend's device layout,
    /// whose vector loads need 16-byte aligned rows whatever a session's neuron count.
    /// `aligned(cfg, 1)` is `new(cfg)`.
    pub fn aligned(cfg: &ModelConfig, align: usize) -> ParamTable {
        use Role::*;
        let (d, dt, dh, f) = (cfg.d_model, cfg.d_tok, cfg.d_embed_hidden, cfg.d_ff);
        let mut t = ParamTable {
            entries: Vec::new(),
            total: 0,
        };
        let align = align.max(1);
        let mut push = |name: String, shape: Vec<usize>, session: Option<&str>, role: Role| {
            t.total = t.total.div_ceil(align) * align;
            t.push(name, shape, session, role);
        };
        for (sid, &n) in &cfg.sessions {
            let s = Some(sid.as_str());
            let p = format!("sessions.{sid}");
            push(
                format!("{p}.stitch_in.weight"),
                vec![dt, n],
                s,
                StitchInWeight,
            );
            push(format!("{p}.stitch_in.bias"), vec![dt], s, StitchInBias);
            push(
                format!("{p}.stitch_out.weight"),
                vec![n, d],
                s,
                StitchOutWeight,
            );
            push(format!("{p}.stitch_out.bias"), vec![n], s, StitchOutBias);
            push(format!("{p}.token"), vec![d], s, SessionToken);
        }
        push(
            "embed.fc1.weight".into(),
            vec![dh, dt],
            None,
            EmbedFc1Weight,
        );
        push("embed.fc1.bias".into(), vec![dh], None, EmbedFc1Bias);
        push("embed.fc2.weight".into(), vec![d, dh], None, EmbedFc2Weight);
        push("embed.fc2.bias".into(), vec![d], None, EmbedFc2Bias);
        push("pos".into(), vec![cfg.n_bins, d], None, Pos);
        push("mask_tokens".into(), vec![4, d], None, MaskTokens);
        for i in 0..cfg.n_layers {
            let p = format!("blocks.{i}");
            push(format!("{p}.ln1.weight"), vec![d], None, LnWeight);
            push(format!("{p}.ln1.bias"), vec![d], None, LnBias);
            push(
                format!("{p}.attn.qkv.weight"),
                vec![3 * d, d],
                None,
                QkvWeight,
            );
            push(format!("{p}.attn.qkv.bias"), vec![3 * d], None, QkvBias);
            push(
                format!("{p}.attn.out.weight"),
                vec![d, d],
                None,
                AttnOutWeight,
            );
            push(format!("{p}.attn.out.bias"), vec![d], None, AttnOutBias);
            push(format!("{p}.ln2.weight"), vec![d], None, LnWeight);
            push(format!("{p}.ln2.bias"), vec![d], None, LnBias);
            push(
                format!("{p}.mlp.fc1.weight"),
                vec![f, d],
                None,
                MlpFc1Weight,
            );
            push(format!("{p}.mlp.fc1.bias"), vec![f], None, MlpFc1Bias);
            push(
                format!("{p}.mlp.fc2.weight"),
                vec![d, f],
                None,
                MlpFc2Weight,
            );
            push(format!("{p}.mlp.fc2.bias"), vec![d], None, MlpFc2Bias);
        }
        push("ln_f.weight".into(), vec![d], None, FinalLnWeight);
        push("ln_f.bias".into(), vec![d], None, FinalLnBias);
        t
    }

    fn push(&mut self, name: String, shape: Vec<usize>, session: Option<&str>, role: Role) {
        let len = shape.iter().product();
        self.entries.push(ParamEntry {
            name,
            shape,
            offset: self.total,
            len,
            session: session.map(str::to_string),
            role,
        });
        self.total += len;
    }

    /// Copies every tensor of `src`, laid out by `from` (a table of the same config), to its
    /// place in `dst`, laid out by `self`; what lies between tensors in `dst` is left as is.
    pub fn scatter<T: Copy>(&self, from: &ParamTable, src: &[T], dst: &mut [T]) {
        for (to, fr) in self.entries.iter().zip(&from.entries) {
            dst[to.range()].copy_from_slice(&src[fr.range()]);
        }
    }

    /// Checks that a flat vector handed to a backend (`what`: parameters, moments, mask) has
    /// `total` elements.
    pub fn check_len(&self, what: &str, got: usize) -> Result<()> {
        if got != self.total {
            return Err(internal(format!(
                "{what}: {got} elements, the parameter table has {}",
                self.total
            )));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry named `name`; panics if there is none (a programmer bug, names are fixed).
    pub fn entry(&self, name: &str) -> &ParamEntry {
        self.get(name)
            .unwrap_or_else(|| panic!("no parameter named '{name}'"))
    }

    /// Offset of the tensor named `name`; panics on an unknown name.
    pub fn offset(&self, name: &str) -> usize {
        self.entry(name).offset
    }

    /// View of the tensor `name` in a flat vector laid out by this table.
    pub fn slice<'a>(&self, data: &'a [f32], name: &str) -> &'a [f32] {
        &data[self.entry(name).range()]
    }

    pub fn slice_mut<'a>(&self, data: &'a mut [f32], name: &str) -> &'a mut [f32] {
        &mut data[self.entry(name).range()]
    }

    /// 1 for the elements of session `sid` (stitch_in, stitch_out, token), 0 elsewhere: the
    /// trainable mask of frozen-core finetuning.
    pub fn session_only_mask(&self, sid: &str) -> Vec<u8> {
        let mut m = vec![0u8; self.total];
        for e in &self.entries {
            if e.session.as_deref() == Some(sid) {
                m[e.range()].fill(1);
            }
        }
        m
    }
}

/// What a per-element trainable mask says of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorTrain {
    /// Every element trains.
    Trainable,
    /// No element trains: the tensor costs no gradient, reduction or optimizer work.
    Frozen,
    /// Some elements train: the tensor's gradient is computed whole and the mask picks the
    /// elements that count in the norm and get an update.
    Mixed,
}

/// A run of consecutive tensors that are not frozen: the optimizer and the gradient norm work
/// over runs only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainRun {
    /// From the first tensor's first element to the last tensor's end (the gaps between the
    /// tensors of an aligned table included).
    pub range: std::ops::Range<usize>,
    /// Every element of `range` trains (no `Mixed` tensor, no gap): the mask need not be read.
    pub whole: bool,
}

/// The trainable set of a backend, derived per tensor from a per-element mask
/// (`Backend::set_trainable`) over one `ParamTable` (the table whose ranges the backend's
/// layers address). A range that is not exactly one tensor of the table reads as `Mixed`
/// (its gradient computed, the mask applied), so an unknown range never loses work.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrainableSet {
    /// (first element, end, state) per tensor of the table, in layout order.
    tensors: Vec<(usize, usize, TensorTrain)>,
}

impl TrainableSet {
    /// Every tensor of `table` trains.
    pub fn all(table: &ParamTable) -> TrainableSet {
        TrainableSet {
            tensors: table
                .entries
                .iter()
                .map(|e| (e.offset, e.offset + e.len, TensorTrain::Trainable))
                .collect(),
        }
    }

    /// Per tensor of `table`: trainable when every element of `mask` (flat, `table`'s layout;
    /// nonzero = trains) over it is nonzero, frozen when none is, mixed otherwise. Elements
    /// `mask` does not cover count as trainable (the caller checks the length).
    pub fn from_mask(table: &ParamTable, mask: &[u8]) -> TrainableSet {
        let tensors = table
            .entries
            .iter()
            .map(|e| {
                let end = e.offset + e.len;
                let state = match mask.get(e.offset..end) {
                    None => TensorTrain::Trainable,
                    Some(m) if m.iter().all(|&t| t != 0) => TensorTrain::Trainable,
                    Some(m) if m.iter().all(|&t| t == 0) => TensorTrain::Frozen,
                    Some(_) => TensorTrain::Mixed,
                };
                (e.offset, end, state)
            })
            .collect();
        TrainableSet { tensors }
    }

    /// The state of the tensor whose range is `r` (`Mixed` for a range that is no tensor's).
    pub fn state(&self, r: &std::ops::Range<usize>) -> TensorTrain {
        match self.tensors.binary_search_by_key(&r.start, |t| t.0) {
            Ok(i) if self.tensors[i].1 == r.end => self.tensors[i].2,
            _ => TensorTrain::Mixed,
        }
    }

    /// Whether the tensor at `r` needs its gradient (it is not frozen).
    pub fn trains(&self, r: &std::ops::Range<usize>) -> bool {
        self.state(r) != TensorTrain::Frozen
    }

    /// Whether some tensor is frozen.
    pub fn has_frozen(&self) -> bool {
        self.tensors.iter().any(|t| t.2 == TensorTrain::Frozen)
    }

    /// Elements of the tensors that are not frozen.
    pub fn trainable_len(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.2 != TensorTrain::Frozen)
            .map(|t| t.1 - t.0)
            .sum()
    }

    /// The maximal runs of consecutive tensors that are not frozen, in layout order.
    pub fn runs(&self) -> Vec<TrainRun> {
        let mut runs: Vec<TrainRun> = Vec::new();
        let mut open = false;
        for &(start, end, state) in &self.tensors {
            if state == TensorTrain::Frozen {
                open = false;
                continue;
            }
            let whole = state == TensorTrain::Trainable;
            match runs.last_mut() {
                Some(run) if open => {
                    run.whole &= whole && run.range.end == start;
                    run.range.end = end;
                }
                _ => runs.push(TrainRun {
                    range: start..end,
                    whole,
                }),
            }
            open = true;
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::collections::BTreeMap;

    #[test]
    fn check_len_takes_the_table_total_only() {
        let cfg = ModelConfig::paper(5, BTreeMap::from([("a".to_string(), 3)]));
        let t = ParamTable::new(&cfg);
        assert!(t.check_len("parameters", t.total).is_ok());
        match t.check_len("first moments", t.total - 1) {
            Err(Error::Internal(m)) => assert_eq!(
                m,
                format!(
                    "first moments: {} elements, the parameter table has {}",
                    t.total - 1,
                    t.total
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_is_contiguous_and_counts_match() {
        let sessions = BTreeMap::from([("a".to_string(), 7), ("b".to_string(), 3)]);
        let cfg = ModelConfig::paper(150, sessions);
        let t = ParamTable::new(&cfg);
        let mut off = 0;
        for e in &t.entries {
            assert_eq!(e.offset, off, "{}", e.name);
            assert_eq!(e.len, e.shape.iter().product::<usize>());
            off += e.len;
        }
        assert_eq!(off, t.total);
        assert_eq!(t.entry("blocks.4.attn.qkv.weight").shape, vec![1536, 512]);
        assert_eq!(t.entry("sessions.b.stitch_in.weight").shape, vec![668, 3]);
        let m = t.session_only_mask("b");
        let want = 668 * 3 + 668 + 3 * 512 + 3 + 512;
        assert_eq!(m.iter().map(|&x| x as usize).sum::<usize>(), want);
        assert_eq!(m[t.offset("sessions.b.token")], 1);
        assert_eq!(m[t.offset("sessions.a.token")], 0);
    }

    #[test]
    fn aligned_table_keeps_the_tensors_and_aligns_their_offsets() {
        let sessions = BTreeMap::from([("a".to_string(), 7), ("b".to_string(), 3)]);
        let cfg = ModelConfig::paper(150, sessions);
        let (t, a) = (ParamTable::new(&cfg), ParamTable::aligned(&cfg, 4));
        assert_eq!(t.entries.len(), a.entries.len());
        let mut end = 0;
        for (e, f) in t.entries.iter().zip(&a.entries) {
            assert_eq!((&e.name, &e.shape, e.len), (&f.name, &f.shape, f.len));
            assert_eq!(f.offset % 4, 0, "{}", f.name);
            assert!(
                f.offset >= end && f.offset < end + 4,
                "{}: gap too wide",
                f.name
            );
            end = f.offset + f.len;
        }
        assert!(a.total >= end && a.total > t.total);
        // There and back: every tensor where it belongs, the gaps untouched.
        let host: Vec<f32> = (0..t.total).map(|i| i as f32).collect();
        let mut dev = vec![-1f32; a.total];
        a.scatter(&t, &host, &mut dev);
        for (e, f) in t.entries.iter().zip(&a.entries) {
            assert_eq!(&dev[f.range()], &host[e.range()], "{}", e.name);
        }
        assert_eq!(
            dev.iter().filter(|&&v| v == -1.0).count(),
            a.total - t.total
        );
        let mut back = vec![0f32; t.total];
        t.scatter(&a, &dev, &mut back);
        assert_eq!(back, host);
    }
}

#[cfg(test)]
mod trainable_tests {
    use super::*;
    use std::collections::BTreeMap;

    fn two_sessions() -> ModelConfig {
        let sessions = BTreeMap::from([("a".to_string(), 7), ("b".to_string(), 3)]);
        ModelConfig::paper(20, sessions)
    }

    #[test]
    fn a_session_only_mask_freezes_every_other_tensor() {
        let cfg = two_sessions();
        let t = ParamTable::new(&cfg);
        let set = TrainableSet::from_mask(&t, &t.session_only_mask("b"));
        for e in &t.entries {
            let want = if e.session.as_deref() == Some("b") {
                TensorTrain::Trainable
            } else {
                TensorTrain::Frozen
            };
            assert_eq!(set.state(&e.range()), want, "{}", e.name);
        }
        assert!(set.has_frozen());
        let b = |n: &str| t.entry(&format!("sessions.b.{n}")).range();
        // Session b's five tensors are one run that needs no mask.
        assert_eq!(
            set.runs(),
            vec![TrainRun {
                range: b("stitch_in.weight").start..b("token").end,
                whole: true
            }]
        );
        assert_eq!(
            set.trainable_len(),
            b("token").end - b("stitch_in.weight").start
        );
    }

    #[test]
    fn all_trainable_is_one_whole_run_and_unknown_ranges_are_mixed() {
        let cfg = two_sessions();
        let t = ParamTable::new(&cfg);
        let set = TrainableSet::all(&t);
        assert_eq!(set, TrainableSet::from_mask(&t, &vec![1; t.total]));
        assert!(!set.has_frozen());
        assert_eq!(
            set.runs(),
            vec![TrainRun {
                range: 0..t.total,
                whole: true
            }]
        );
        let e = t.entry("pos").range();
        assert_eq!(set.state(&(e.start..e.end - 1)), TensorTrain::Mixed);
        assert_eq!(set.state(&(e.start + 1..e.end)), TensorTrain::Mixed);
    }

    #[test]
    fn mixed_tensors_and_gaps_make_runs_that_read_the_mask() {
        let cfg = two_sessions();
        let t = ParamTable::new(&cfg);
        let mut mask = vec![0u8; t.total];
        let pos = t.entry("pos").range();
        mask[pos.start] = 1; // pos: mixed
        mask[t.entry("mask_tokens").range()].fill(1); // next to pos
        mask[t.entry("ln_f.bias").range()].fill(1);
        let set = TrainableSet::from_mask(&t, &mask);
        assert_eq!(set.state(&pos), TensorTrain::Mixed);
        assert_eq!(
            set.state(&t.entry("mask_tokens").range()),
            TensorTrain::Trainable
        );
        assert_eq!(
            set.runs(),
            vec![
                TrainRun {
                    range: pos.start..t.entry("mask_tokens").range().end,
                    whole: false
                },
                TrainRun {
                    range: t.entry("ln_f.bias").range(),
                    whole: true
                },
            ]
        );
        // In an aligned table the gaps between trainable tensors are inside a run, read
        // through the mask (they are 0 there).
        let a = ParamTable::aligned(&cfg, 4);
        let set = TrainableSet::all(&a);
        let runs = set.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].range, 0..a.total);
        assert!(!runs[0].whole, "the aligned table has gaps");
    }
}

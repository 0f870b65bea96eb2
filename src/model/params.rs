//! The one parameter layout table: every tensor's SPEC §2 name, its shape (PyTorch `Linear`
//! layout `[out, in]`) and its place in the flat f32 allocation that parameters, gradients and
//! both AdamW moments each use. Everything else (init, checkpoints, both backends, fixtures)
//! finds tensors through this table.
//!
//! Layout order: the sessions in id order (`stitch_in.weight`, `stitch_in.bias`,
//! `stitch_out.weight`, `stitch_out.bias`, `token`), then `embed.fc1.*`, `embed.fc2.*`, `pos`,
//! `mask_tokens`, the blocks in order (`ln1`, `attn.qkv`, `attn.out`, `ln2`, `mlp.fc1`,
//! `mlp.fc2`, weight before bias), and `ln_f`. Each session's tensors are contiguous.

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
        let (d, dt, dh, f) = (cfg.d_model, cfg.d_tok, cfg.d_embed_hidden, cfg.d_ff);
        let mut t = ParamTable {
            entries: Vec::new(),
            total: 0,
        };
        let align = align.max(1);
        let mut push = |name: String, shape: Vec<usize>, session: Option<&str>| {
            t.total = t.total.div_ceil(align) * align;
            t.push(name, shape, session);
        };
        for (sid, &n) in &cfg.sessions {
            let s = Some(sid.as_str());
            let p = format!("sessions.{sid}");
            push(format!("{p}.stitch_in.weight"), vec![dt, n], s);
            push(format!("{p}.stitch_in.bias"), vec![dt], s);
            push(format!("{p}.stitch_out.weight"), vec![n, d], s);
            push(format!("{p}.stitch_out.bias"), vec![n], s);
            push(format!("{p}.token"), vec![d], s);
        }
        push("embed.fc1.weight".into(), vec![dh, dt], None);
        push("embed.fc1.bias".into(), vec![dh], None);
        push("embed.fc2.weight".into(), vec![d, dh], None);
        push("embed.fc2.bias".into(), vec![d], None);
        push("pos".into(), vec![cfg.n_bins, d], None);
        push("mask_tokens".into(), vec![4, d], None);
        for i in 0..cfg.n_layers {
            let p = format!("blocks.{i}");
            push(format!("{p}.ln1.weight"), vec![d], None);
            push(format!("{p}.ln1.bias"), vec![d], None);
            push(format!("{p}.attn.qkv.weight"), vec![3 * d, d], None);
            push(format!("{p}.attn.qkv.bias"), vec![3 * d], None);
            push(format!("{p}.attn.out.weight"), vec![d, d], None);
            push(format!("{p}.attn.out.bias"), vec![d], None);
            push(format!("{p}.ln2.weight"), vec![d], None);
            push(format!("{p}.ln2.bias"), vec![d], None);
            push(format!("{p}.mlp.fc1.weight"), vec![f, d], None);
            push(format!("{p}.mlp.fc1.bias"), vec![f], None);
            push(format!("{p}.mlp.fc2.weight"), vec![d, f], None);
            push(format!("{p}.mlp.fc2.bias"), vec![d], None);
        }
        push("ln_f.weight".into(), vec![d], None);
        push("ln_f.bias".into(), vec![d], None);
        t
    }

    fn push(&mut self, name: String, shape: Vec<usize>, session: Option<&str>) {
        let len = shape.iter().product();
        self.entries.push(ParamEntry {
            name,
            shape,
            offset: self.total,
            len,
            session: session.map(str::to_string),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

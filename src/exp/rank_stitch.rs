//! The `stitch` ranking's stitchers: a pool session p's single-session model given, without any
//! gradient step, stitchers for a held-out session h built from p's by region correspondence
//! (docs/ranking.md).
//!
//! For h's neuron i of region r, `J(i)` is p's neurons of region r, or all of p's neurons when p
//! records none of r or i has no region label (`""` or `"unknown"`, what the importers write
//! when a file has none). Then
//!
//! ```text
//! stitch_in.weight[:, i]  = mean_{j∈J(i)} W_in[p][:, j]                 [D_tok, N_h]
//! stitch_out.weight[i, :] = mean_{j∈J(i)} W_out[p][j, :]                [N_h, D]
//! stitch_out.bias[i]      = ln m_h[i] − mean_{j∈J(i)} (ln m_p[j] − b_out[p][j])
//! ```
//!
//! with `m[i]` a neuron's mean count per bin on its session's train split, floored at half a
//! spike over that split (`0.5 / (trials × bins)`) so a silent neuron has a finite log-rate. The
//! predicted rate is `exp(y·W_out[i] + b_out[i])` (SPEC §2 step 6, `src/cpu/model.rs`); a trained
//! model's `ln m_p[j] − b_out[p][j]` is its neuron j's typical readout drive `y·W_out[j]` (in
//! log-rate), so the bias above makes h's neuron i predict its own mean count when the core's
//! output drives the averaged row as it drove p's rows. (With p's readout drive zero, as for a
//! readout whose row is zero, the bias is exactly `ln m_h[i]`.)
//!
//! `stitch_in.bias` and `token` (shapes that do not depend on the neuron count) are p's; the core
//! (embedding, positions, mask tokens, blocks, final LayerNorm) is p's, unchanged.

use crate::error::{Result, usage};
use crate::model::ModelConfig;
use crate::model::checkpoint;
use crate::model::params::{ParamTable, Role};
use crate::store::{Dataset, SplitName};
use std::collections::BTreeMap;

/// What the stitcher needs of one session: its id, each neuron's region label and each neuron's
/// floored mean count per bin on the train split.
#[derive(Clone, Debug)]
pub struct Side {
    pub id: String,
    pub regions: Vec<String>,
    pub mean_counts: Vec<f64>,
}

/// Whether a region label says nothing (the importers' default for a file without labels).
fn unlabelled(r: &str) -> bool {
    r.is_empty() || r == "unknown"
}

impl Side {
    /// Session `s` of `ds`: its regions and floored train-split mean counts.
    pub fn of(ds: &Dataset, s: usize) -> Side {
        let info = ds.session(s);
        let (n, bins) = (info.n_neurons, info.n_bins);
        let trials = info.split(SplitName::Train);
        let mut sum = vec![0.0f64; n];
        for &t in trials {
            for row in ds.trial(s, t as usize).chunks_exact(n) {
                for (acc, &x) in sum.iter_mut().zip(row) {
                    *acc += x as f64;
                }
            }
        }
        let cells = (trials.len() * bins).max(1) as f64;
        let floor = 0.5 / cells;
        Side {
            id: info.id.clone(),
            regions: info.regions.clone(),
            mean_counts: sum.iter().map(|s| (s / cells).max(floor)).collect(),
        }
    }
}

/// p's neurons `J(i)` for each of h's neurons (module doc).
fn correspondence(p: &Side, h: &Side) -> Vec<Vec<usize>> {
    let all: Vec<usize> = (0..p.regions.len()).collect();
    h.regions
        .iter()
        .map(|r| {
            if unlabelled(r) {
                return all.clone();
            }
            let j: Vec<usize> = (0..p.regions.len())
                .filter(|&j| &p.regions[j] == r)
                .collect();
            if j.is_empty() { all.clone() } else { j }
        })
        .collect()
}

/// The config and parameters of p's model `(src_cfg, src)` with its session replaced by h's
/// stitchers built from p's (module doc). `src_cfg` must hold session `p.id` with
/// `p.regions.len()` neurons.
pub fn stitch(
    src_cfg: &ModelConfig,
    src: &[f32],
    p: &Side,
    h: &Side,
) -> Result<(ModelConfig, Vec<f32>)> {
    let n_p = p.regions.len();
    if src_cfg.sessions.get(&p.id) != Some(&n_p) || p.mean_counts.len() != n_p {
        return Err(usage(format!(
            "the model of session {} does not hold that session with {n_p} neurons",
            p.id
        )));
    }
    let n_h = h.regions.len();
    if n_h == 0 || h.mean_counts.len() != n_h {
        return Err(usage(format!(
            "session {}: {} region labels, {} mean counts",
            h.id,
            n_h,
            h.mean_counts.len()
        )));
    }
    let cfg = ModelConfig {
        sessions: BTreeMap::from([(h.id.clone(), n_h)]),
        ..src_cfg.clone()
    };
    let st = ParamTable::new(src_cfg);
    let dt = ParamTable::new(&cfg);
    let mut params = vec![0f32; dt.total];
    checkpoint::transfer(src_cfg, src, &cfg, &mut params);
    let src_of = |role: Role| {
        st.entries
            .iter()
            .find(|e| e.session.as_deref() == Some(p.id.as_str()) && e.role == role)
            .map(|e| &src[e.range()])
    };
    let (Some(w_in), Some(b_in), Some(w_out), Some(b_out), Some(token)) = (
        src_of(Role::StitchInWeight),
        src_of(Role::StitchInBias),
        src_of(Role::StitchOutWeight),
        src_of(Role::StitchOutBias),
        src_of(Role::SessionToken),
    ) else {
        return Err(usage(format!(
            "the model of session {} lacks that session's stitchers",
            p.id
        )));
    };
    let (dtok, d) = (cfg.d_tok, cfg.d_model);
    let groups = correspondence(p, h);
    // The readout drive of each of p's neurons, in log-rate (module doc).
    let drive: Vec<f64> = (0..n_p)
        .map(|j| p.mean_counts[j].ln() - b_out[j] as f64)
        .collect();
    for e in dt.entries.iter().filter(|e| e.session.is_some()) {
        let out = &mut params[e.range()];
        match e.role {
            // [D_tok, N] (Linear [out, in]): column i is neuron i's input weights.
            Role::StitchInWeight => {
                for k in 0..dtok {
                    let row = &w_in[k * n_p..(k + 1) * n_p];
                    for (i, g) in groups.iter().enumerate() {
                        let s: f64 = g.iter().map(|&j| row[j] as f64).sum();
                        out[k * n_h + i] = (s / g.len() as f64) as f32;
                    }
                }
            }
            // [N, D]: row i is neuron i's readout.
            Role::StitchOutWeight => {
                for (i, g) in groups.iter().enumerate() {
                    for c in 0..d {
                        let s: f64 = g.iter().map(|&j| w_out[j * d + c] as f64).sum();
                        out[i * d + c] = (s / g.len() as f64) as f32;
                    }
                }
            }
            Role::StitchOutBias => {
                for (i, g) in groups.iter().enumerate() {
                    let mean_drive = g.iter().map(|&j| drive[j]).sum::<f64>() / g.len() as f64;
                    out[i] = (h.mean_counts[i].ln() - mean_drive) as f32;
                }
            }
            Role::StitchInBias => out.copy_from_slice(b_in),
            Role::SessionToken => out.copy_from_slice(token),
            _ => {}
        }
    }
    Ok((cfg, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sid: &str, n: usize) -> ModelConfig {
        ModelConfig {
            d_model: 4,
            d_tok: 2,
            d_embed_hidden: 4,
            n_layers: 1,
            n_heads: 2,
            d_ff: 4,
            n_bins: 3,
            ln_eps: 1e-5,
            sessions: BTreeMap::from([(sid.to_string(), n)]),
        }
    }

    fn side(id: &str, regions: &[&str], means: &[f64]) -> Side {
        Side {
            id: id.into(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            mean_counts: means.to_vec(),
        }
    }

    /// A source model whose every element is distinct (its index / 100).
    fn source(c: &ModelConfig) -> Vec<f32> {
        let t = ParamTable::new(c);
        (0..t.total).map(|k| k as f32 / 100.0).collect()
    }

    #[test]
    fn stitchers_are_region_means_and_the_bias_gives_the_mean_rate() {
        // p: neurons 0, 2 in CA1; 1 in VISp; 3 in LP. h: VISp, CA1, PO (p has no PO), unknown.
        let pc = cfg("p", 4);
        let src = source(&pc);
        let st = ParamTable::new(&pc);
        let p = side("p", &["CA1", "VISp", "CA1", "LP"], &[0.2, 0.4, 0.1, 0.05]);
        let h = side(
            "h",
            &["VISp", "CA1", "PO", "unknown"],
            &[0.3, 0.02, 0.5, 0.1],
        );
        let (hc, out) = stitch(&pc, &src, &p, &h).unwrap();
        assert_eq!(hc.sessions, BTreeMap::from([("h".to_string(), 4)]));
        let dt = ParamTable::new(&hc);
        let get = |t: &ParamTable, v: &[f32], name: &str| t.slice(v, name).to_vec();
        let w_in = get(&st, &src, "sessions.p.stitch_in.weight"); // [2, 4]
        let h_in = get(&dt, &out, "sessions.h.stitch_in.weight"); // [2, 4]
        let groups: [&[usize]; 4] = [&[1], &[0, 2], &[0, 1, 2, 3], &[0, 1, 2, 3]];
        let mean = |f: &dyn Fn(usize) -> f64, g: &[usize]| {
            g.iter().map(|&j| f(j)).sum::<f64>() / g.len() as f64
        };
        for k in 0..2 {
            for (i, g) in groups.iter().enumerate() {
                let want = mean(&|j| w_in[k * 4 + j] as f64, g);
                assert!((h_in[k * 4 + i] as f64 - want).abs() < 1e-6, "in {k} {i}");
            }
        }
        // Hand-computed: h's neuron 1 (CA1) takes the mean of p's neurons 0 and 2.
        assert!((h_in[1] - (w_in[0] + w_in[2]) / 2.0).abs() < 1e-6);
        let w_out = get(&st, &src, "sessions.p.stitch_out.weight"); // [4, 4]
        let h_out = get(&dt, &out, "sessions.h.stitch_out.weight");
        for (i, g) in groups.iter().enumerate() {
            for c in 0..4 {
                let want = mean(&|j| w_out[j * 4 + c] as f64, g);
                assert!((h_out[i * 4 + c] as f64 - want).abs() < 1e-6, "out {i} {c}");
            }
        }
        // The bias: with p's readout drives d_j = ln m_p[j] − b_p[j], h's neuron i predicts
        // exp(mean_J d_j + b_h[i]) = m_h[i] at the region's mean drive.
        let b_p = get(&st, &src, "sessions.p.stitch_out.bias");
        let b_h = get(&dt, &out, "sessions.h.stitch_out.bias");
        for (i, g) in groups.iter().enumerate() {
            let drive = mean(&|j| p.mean_counts[j].ln() - b_p[j] as f64, g);
            let rate = (drive + b_h[i] as f64).exp();
            assert!((rate / h.mean_counts[i] - 1.0).abs() < 1e-5, "{i}: {rate}");
        }
        // A readout with zero drive: the bias is exactly ln of the mean count.
        let mut zero = src.clone();
        for (j, m) in p.mean_counts.iter().enumerate() {
            zero[st.entry("sessions.p.stitch_out.bias").offset + j] = m.ln() as f32;
        }
        let (_, z) = stitch(&pc, &zero, &p, &h).unwrap();
        let b_z = get(&dt, &z, "sessions.h.stitch_out.bias");
        for (b, m) in b_z.iter().zip(&h.mean_counts) {
            assert!((*b as f64 - m.ln()).abs() < 1e-6, "{b} {m}");
        }
        // The rest of the session (shapes without N) and the core are p's.
        for (a, b) in [("stitch_in.bias", "stitch_in.bias"), ("token", "token")] {
            assert_eq!(
                get(&dt, &out, &format!("sessions.h.{a}")),
                get(&st, &src, &format!("sessions.p.{b}"))
            );
        }
        for e in dt.entries.iter().filter(|e| e.session.is_none()) {
            assert_eq!(out[e.range()], src[st.entry(&e.name).range()], "{}", e.name);
        }
    }

    #[test]
    fn a_held_out_session_without_labels_gets_the_all_neuron_means() {
        let pc = cfg("p", 3);
        let src = source(&pc);
        let p = side("p", &["CA1", "VISp", "CA1"], &[0.2, 0.4, 0.1]);
        let h = side("h", &["unknown", "", "unknown"], &[0.3, 0.02, 0.5]);
        let (hc, out) = stitch(&pc, &src, &p, &h).unwrap();
        let st = ParamTable::new(&pc);
        let dt = ParamTable::new(&hc);
        let w_in = st.slice(&src, "sessions.p.stitch_in.weight"); // [2, 3]
        let h_in = dt.slice(&out, "sessions.h.stitch_in.weight"); // [2, 3]
        for k in 0..2 {
            let want = w_in[k * 3..k * 3 + 3].iter().sum::<f32>() / 3.0;
            for i in 0..3 {
                assert!((h_in[k * 3 + i] - want).abs() < 1e-6);
            }
        }
        // A session whose one region p does not record: the same.
        let one = side("h", &["LP", "LP", "LP"], &[0.3, 0.02, 0.5]);
        let (_, o) = stitch(&pc, &src, &p, &one).unwrap();
        assert_eq!(o, out);
        // A source that does not hold p as described is refused, not read out of bounds.
        let wrong = side("p", &["CA1", "VISp"], &[0.2, 0.4]);
        assert!(stitch(&pc, &src, &wrong, &h).is_err());
    }
}

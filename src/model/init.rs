//! Parameter initialisation (SPEC §2): PyTorch defaults with the T-Fixup scaling of the MtM code.
//!
//! - Linear weight and bias: U(−1/√fan_in, +1/√fan_in) (what `nn.Linear.reset_parameters` gives).
//! - `sessions.{sid}.token`, `pos`, `mask_tokens`: N(0, 1).
//! - LayerNorm: weight 1, bias 0.
//! - T-Fixup: `attn.out`, `mlp.fc1`, `mlp.fc2` weights × 0.67·L^(−1/4); the v rows (last D rows)
//!   of `attn.qkv.weight` × 0.67·L^(−1/4)·√2.
//!
//! Which rule a tensor gets comes from its role in the parameter table, never from its name (a
//! session id may hold any text). Every tensor draws from its own ChaCha8 stream keyed by
//! (seed, tensor name), so a tensor's
//! initial value does not depend on which other sessions the config holds: `init_session` on a
//! finetuning config gives the new session exactly what `init_params` would.

use crate::model::ModelConfig;
use crate::model::params::{ParamEntry, ParamTable, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Fresh parameters for `cfg`, laid out by `table`.
pub fn init_params(cfg: &ModelConfig, table: &ParamTable, seed: u64) -> Vec<f32> {
    let mut p = vec![0f32; table.total];
    for e in &table.entries {
        init_entry(cfg, e, &mut p[e.range()], seed);
    }
    p
}

/// Re-initialises only the tensors of session `sid` (stitchers and token), leaving the rest.
pub fn init_session(
    cfg: &ModelConfig,
    table: &ParamTable,
    params: &mut [f32],
    sid: &str,
    seed: u64,
) {
    for e in table
        .entries
        .iter()
        .filter(|e| e.session.as_deref() == Some(sid))
    {
        init_entry(cfg, e, &mut params[e.range()], seed);
    }
}

/// The T-Fixup factor 0.67·L^(−1/4).
pub fn tfixup_scale(n_layers: usize) -> f32 {
    (0.67 * (n_layers.max(1) as f64).powf(-0.25)) as f32
}

/// The random stream number of the tensor `name`: FNV-1a of the name. A seed derivation, not a
/// content hash (those live in `crate::hash`): it fixes every initial weight, so it must stay
/// exactly this function.
fn seed_stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn init_entry(cfg: &ModelConfig, e: &ParamEntry, out: &mut [f32], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(crate::rng::key(seed, seed_stream_of(&e.name)));
    let d = cfg.d_model;
    // A Linear layer's fan_in: the second dimension of its weight, or the owner's for a bias.
    let fan_in = match e.role {
        Role::LnWeight | Role::FinalLnWeight => return out.fill(1.0),
        Role::LnBias | Role::FinalLnBias => return out.fill(0.0),
        Role::SessionToken | Role::Pos | Role::MaskTokens => {
            for x in out.iter_mut() {
                *x = StandardNormal.sample(&mut rng);
            }
            return;
        }
        Role::StitchInWeight
        | Role::StitchOutWeight
        | Role::EmbedFc1Weight
        | Role::EmbedFc2Weight
        | Role::QkvWeight
        | Role::AttnOutWeight
        | Role::MlpFc1Weight
        | Role::MlpFc2Weight => e.shape.get(1).copied().unwrap_or(1),
        Role::StitchInBias => e
            .session
            .as_deref()
            .and_then(|sid| cfg.sessions.get(sid))
            .copied()
            .unwrap_or(1),
        Role::StitchOutBias => d,
        Role::EmbedFc1Bias => cfg.d_tok,
        Role::EmbedFc2Bias => cfg.d_embed_hidden,
        Role::MlpFc2Bias => cfg.d_ff,
        Role::QkvBias | Role::AttnOutBias | Role::MlpFc1Bias => d,
    };
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    for x in out.iter_mut() {
        *x = rng.random_range(-bound..bound);
    }
    let s = tfixup_scale(cfg.n_layers);
    match e.role {
        Role::AttnOutWeight | Role::MlpFc1Weight | Role::MlpFc2Weight => {
            out.iter_mut().for_each(|x| *x *= s);
        }
        Role::QkvWeight => {
            // The v rows: the last D of the 3D rows.
            let v = s * std::f32::consts::SQRT_2;
            let from = (2 * d * d).min(out.len());
            out[from..].iter_mut().for_each(|x| *x *= v);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(sessions: &[(&str, usize)]) -> ModelConfig {
        ModelConfig {
            d_model: 16,
            d_tok: 12,
            d_embed_hidden: 24,
            n_layers: 2,
            n_heads: 2,
            d_ff: 32,
            n_bins: 5,
            ln_eps: 1e-5,
            sessions: sessions
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn bounds_scales_and_session_independence() {
        let c = cfg(&[("a", 9), ("b", 4)]);
        let t = ParamTable::new(&c);
        let p = init_params(&c, &t, 3);
        let b = 1.0 / 9f32.sqrt();
        assert!(
            t.slice(&p, "sessions.a.stitch_in.weight")
                .iter()
                .all(|x| x.abs() <= b)
        );
        assert!(
            t.slice(&p, "sessions.a.stitch_in.bias")
                .iter()
                .all(|x| x.abs() <= b)
        );
        let s = tfixup_scale(2) / 4.0;
        let w = t.slice(&p, "blocks.1.mlp.fc1.weight");
        assert!(w.iter().all(|x| x.abs() <= s));
        assert!(w.iter().any(|x| x.abs() > 0.5 * s));
        let qkv = t.slice(&p, "blocks.0.attn.qkv.weight");
        let vmax = qkv[2 * 256..].iter().fold(0f32, |m, x| m.max(x.abs()));
        let qmax = qkv[..256].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(vmax <= s * std::f32::consts::SQRT_2 && vmax > 0.5 * s);
        assert!(qmax > s * 1.5 && qmax <= 0.25);
        assert!(t.slice(&p, "ln_f.weight").iter().all(|&x| x == 1.0));
        assert!(t.slice(&p, "blocks.0.ln2.bias").iter().all(|&x| x == 0.0));
        // Session b gets the same values in a config without session a.
        let c2 = cfg(&[("b", 4)]);
        let t2 = ParamTable::new(&c2);
        let mut p2 = vec![0f32; t2.total];
        init_session(&c2, &t2, &mut p2, "b", 3);
        assert_eq!(
            t.slice(&p, "sessions.b.stitch_out.weight"),
            t2.slice(&p2, "sessions.b.stitch_out.weight")
        );
        assert!(t2.slice(&p2, "pos").iter().all(|&x| x == 0.0));
    }

    // The rules of the name-matching init this module used before tensors carried roles,
    // kept verbatim as the reference the role-driven init must reproduce bit for bit.
    fn old_name_hash(name: &str) -> u64 {
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn old_init_entry(cfg: &ModelConfig, e: &ParamEntry, out: &mut [f32], seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(crate::rng::key(seed, old_name_hash(&e.name)));
        let name = e.name.as_str();
        let last = name.rsplit('.').next().unwrap_or(name);
        let is_ln = name.starts_with("ln_f.") || name.contains(".ln1.") || name.contains(".ln2.");
        if is_ln {
            out.fill(if last == "weight" { 1.0 } else { 0.0 });
            return;
        }
        if name == "pos" || name == "mask_tokens" || name.ends_with(".token") {
            for x in out.iter_mut() {
                *x = StandardNormal.sample(&mut rng);
            }
            return;
        }
        // A Linear layer: fan_in is the second dimension of its weight.
        let fan_in = if last == "weight" {
            e.shape[1]
        } else {
            old_linear_fan_in(cfg, name)
        };
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        for x in out.iter_mut() {
            *x = rng.random_range(-bound..bound);
        }
        if last == "weight" {
            let s = tfixup_scale(cfg.n_layers);
            if name.ends_with(".attn.out.weight")
                || name.ends_with(".mlp.fc1.weight")
                || name.ends_with(".mlp.fc2.weight")
            {
                out.iter_mut().for_each(|x| *x *= s);
            } else if name.ends_with(".attn.qkv.weight") {
                let d = cfg.d_model;
                let v = s * std::f32::consts::SQRT_2;
                out[2 * d * d..].iter_mut().for_each(|x| *x *= v);
            }
        }
    }

    fn old_linear_fan_in(cfg: &ModelConfig, name: &str) -> usize {
        if name.ends_with(".stitch_in.bias") {
            let sid = name
                .strip_prefix("sessions.")
                .and_then(|s| s.strip_suffix(".stitch_in.bias"))
                .unwrap_or("");
            cfg.sessions.get(sid).copied().unwrap_or(1)
        } else if name.ends_with(".stitch_out.bias") {
            cfg.d_model
        } else if name == "embed.fc1.bias" {
            cfg.d_tok
        } else if name == "embed.fc2.bias" {
            cfg.d_embed_hidden
        } else if name.ends_with(".mlp.fc2.bias") {
            cfg.d_ff
        } else {
            // attn.qkv, attn.out, mlp.fc1: fan_in D.
            cfg.d_model
        }
    }

    #[test]
    fn roles_give_the_same_weights_as_the_old_name_rules() {
        for c in [
            cfg(&[("a", 9), ("b", 4)]),
            cfg(&[("m1_reaching-2019.s03", 7)]),
            ModelConfig {
                n_layers: 3,
                ..cfg(&[("x", 1), ("y_2", 30)])
            },
        ] {
            let t = ParamTable::new(&c);
            for seed in [0, 3, 42] {
                let p = init_params(&c, &t, seed);
                let mut want = vec![0f32; t.total];
                for e in &t.entries {
                    old_init_entry(&c, e, &mut want[e.range()], seed);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&p), bits(&want), "seed {seed}");
            }
        }
    }

    #[test]
    fn a_session_named_like_a_layer_norm_gets_stitcher_init() {
        let c = cfg(&[("x.ln1.y", 9)]);
        let t = ParamTable::new(&c);
        let p = init_params(&c, &t, 3);
        let b = 1.0 / 9f32.sqrt();
        for name in [
            "sessions.x.ln1.y.stitch_in.weight",
            "sessions.x.ln1.y.stitch_in.bias",
        ] {
            let w = t.slice(&p, name);
            assert!(w.iter().all(|x| x.abs() <= b), "{name}");
            assert!(w.iter().any(|x| x.abs() > 0.1 * b), "{name}");
            assert!(w.iter().all(|&x| x != 1.0 && x != 0.0), "{name}");
        }
        let tok = t.slice(&p, "sessions.x.ln1.y.token");
        assert!(tok.iter().any(|x| x.abs() > 1.0), "token is N(0, 1)");
    }
}

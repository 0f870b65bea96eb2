//! LayerNorm, attention and the embedding against their CPU twins (`src/cpu/`, in f64), at
//! sizes below, at and above the tiles and ragged ones; NaN-poisoned outputs with sentinels after
//! them. f32 to 1e-5 normalised error, bf16 to the tolerances written at each check.
//!
//! Without a GPU every test prints "SKIPPED: no CUDA device" and passes (docs/cuda.md).

mod cuda_common;

use cuda_common::*;
use ndt::cpu;
use ndt::cpu::dropout::Dropout;
use ndt::cuda::StepScalars;
use ndt::cuda::device::Tensor;
use ndt::cuda::gemm::{Accum, Precision};
use ndt::cuda::{attention, embed, layernorm, linear};

// ------------------------------------------------------------------------------------ layernorm

#[test]
fn layernorm_matches_the_cpu() {
    let Some(g) = gpu("layernorm_matches_the_cpu") else {
        return;
    };
    let mut r = rng(7);
    for rows in [1, 17, 64, 65, 260] {
        for c in [1, 15, 32, 33, 512, 1000] {
            let inp: Vec<f32> = rand_vec(&mut r, rows * c, 2.0)
                .iter()
                .map(|v| v + 3.0)
                .collect();
            let (w, b) = (rand_vec(&mut r, c, 1.0), rand_vec(&mut r, c, 1.0));
            let (dout, dinp0) = (
                rand_vec(&mut r, rows * c, 1.0),
                rand_vec(&mut r, rows * c, 1.0),
            );
            let (id, wd, bd, dod) = (up(&g, &inp), up(&g, &w), up(&g, &b), up(&g, &dout));
            let (mut out_w, mut mean_w, mut rstd_w) =
                (vec![0f64; rows * c], vec![0f64; rows], vec![0f64; rows]);
            cpu::layernorm::layernorm_forward(
                &mut out_w,
                &mut mean_w,
                &mut rstd_w,
                &to64(&inp),
                &to64(&w),
                &to64(&b),
                rows,
                c,
                1e-5,
            );
            let (out, xhat, rstd) = (
                Out::new(&g, rows * c),
                Out::new(&g, rows * c),
                Out::new(&g, rows),
            );
            layernorm::layernorm_forward(
                &g,
                out.dev(),
                xhat.dev(),
                rstd.dev(),
                id.dev(),
                wd.dev(),
                bd.dev(),
                rows,
                c,
                1e-5,
            )
            .unwrap();
            let what = format!("layernorm {rows}x{c}");
            check(&what, &out.read(&g, "out"), &out_w, 1e-5);
            let xhat_w: Vec<f64> = (0..rows * c)
                .map(|i| (f64::from(inp[i]) - mean_w[i / c]) * rstd_w[i / c])
                .collect();
            check(
                &format!("{what} xhat"),
                &xhat.read(&g, "xhat"),
                &xhat_w,
                1e-5,
            );
            // The output rebuilt from x̂ is the forward's, bit for bit.
            let rebuilt = Out::new(&g, rows * c);
            layernorm::layernorm_affine(&g, rebuilt.dev(), xhat.dev(), wd.dev(), bd.dev(), rows, c)
                .unwrap();
            let (a, f) = (rebuilt.read(&g, "rebuilt"), out.read(&g, "out"));
            assert!(
                a.iter().zip(&f).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{what}: layernorm_affine differs from the forward's output"
            );
            check(
                &format!("{what} rstd"),
                &rstd.read(&g, "rstd"),
                &rstd_w,
                1e-5,
            );

            let (mut dinp_w, mut dw_w, mut db_w) = (to64(&dinp0), vec![0f64; c], vec![0f64; c]);
            cpu::layernorm::layernorm_backward(
                &mut dinp_w,
                &mut dw_w,
                &mut db_w,
                &to64(&dout),
                &to64(&inp),
                &to64(&w),
                &mean_w,
                &rstd_w,
                rows,
                c,
            );
            let scratch = g
                .alloc::<f32>(layernorm::layernorm_scratch(rows, c))
                .unwrap();
            let (dinp, dw, db) = (Out::with(&g, &dinp0), Out::new(&g, c), Out::new(&g, c));
            layernorm::layernorm_backward(
                &g,
                dinp.dev(),
                dw.dev(),
                db.dev(),
                dod.dev(),
                xhat.dev(),
                wd.dev(),
                rstd.dev(),
                scratch.dev(),
                rows,
                c,
                Accum::Set,
            )
            .unwrap();
            check(
                &format!("{what} dinp"),
                &dinp.read(&g, "dinp"),
                &dinp_w,
                1e-5,
            );
            check(&format!("{what} dw"), &dw.read(&g, "dw"), &dw_w, 1e-5);
            check(&format!("{what} db"), &db.read(&g, "db"), &db_w, 1e-5);
        }
    }
}

// ------------------------------------------------------------------------------------ attention

#[test]
fn attention_matches_the_cpu() {
    let Some(g) = gpu("attention_matches_the_cpu") else {
        return;
    };
    let mut r = rng(8);
    for (b, s, d, h) in [
        (1, 1, 64, 2),
        (2, 17, 64, 2),
        (2, 33, 128, 4),
        (1, 152, 512, 8),
    ] {
        for causal in [false, true] {
            for p in [0.0f32, 0.2] {
                let qkv = rand_vec(&mut r, b * s * 3 * d, 1.0);
                let dy = rand_vec(&mut r, b * s * d, 1.0);
                let (qd, dyd) = (up(&g, &qkv), up(&g, &dy));
                let site = if p > 0.0 {
                    Dropout::new(p, 21, 4)
                } else {
                    Dropout::OFF
                };
                let bhss = b * h * s * s;
                let (mut y_w, mut att_w, mut attd_w) =
                    (vec![0f64; b * s * d], vec![0f64; bhss], vec![0f64; bhss]);
                cpu::attention::attention_forward(
                    &mut y_w,
                    &mut att_w,
                    &mut attd_w,
                    &to64(&qkv),
                    b,
                    s,
                    d,
                    h,
                    causal,
                    site,
                );
                let (mut dqkv_w, mut datt_w) = (vec![0f64; b * s * 3 * d], vec![0f64; bhss]);
                cpu::attention::attention_backward(
                    &mut dqkv_w,
                    &mut datt_w,
                    &to64(&dy),
                    &to64(&qkv),
                    &att_w,
                    &attd_w,
                    b,
                    s,
                    d,
                    h,
                    site,
                );
                let sc = scalars(
                    &g,
                    StepScalars {
                        causal: causal as i32,
                        ..drop_scalars(p, 21)
                    },
                );
                let dm = attention::AttnDims {
                    b,
                    s,
                    d,
                    h,
                    fused: true,
                };
                for prec in PRECS {
                    let (y, att) = (Out::new(&g, b * s * d), Out::new(&g, bhss));
                    attention::attention_forward(
                        &g,
                        prec,
                        y.dev(),
                        att.dev(),
                        qd.dev(),
                        dm,
                        sc.dev(),
                        4,
                        p > 0.0,
                        true,
                    )
                    .unwrap();
                    let (dqkv, datt) = (Out::new(&g, b * s * 3 * d), Out::new(&g, bhss));
                    attention::attention_backward(
                        &g,
                        prec,
                        dqkv.dev(),
                        datt.dev(),
                        dyd.dev(),
                        qd.dev(),
                        att.dev(),
                        dm,
                        sc.dev(),
                        4,
                        p > 0.0,
                    )
                    .unwrap();
                    let what =
                        format!("{prec:?} attention b{b} s{s} d{d} h{h} causal={causal} p={p}");
                    // The probabilities after dropout are not stored: y and dqkv (through dv)
                    // show that the products read them through the dropout.
                    // bf16: q, k, v and the probabilities enter the products with 8 bits.
                    let (tf, tb) = if prec == Precision::F32 {
                        (1e-5, 1e-5)
                    } else {
                        (2e-2, 4e-2)
                    };
                    check(&format!("{what} y"), &y.read(&g, "y"), &y_w, tf);
                    check(&format!("{what} att"), &att.read(&g, "att"), &att_w, tf);
                    check(&format!("{what} dqkv"), &dqkv.read(&g, "dqkv"), &dqkv_w, tb);
                    let _ = datt.read(&g, "datt");
                }
            }
        }
    }
}

/// The fused forward (`attention_fused_*`, bf16 precision) gives the bits of the unfused
/// launches (two products and the softmax): y and the kept probabilities, for head widths 8 to
/// 64, S from 1 to the kernel's limit of 160 (past one and two 64-row tiles, ragged ends),
/// causal or not, with and without dropout, qkv and y stored as f32 and as bf16. Likewise the
/// recomputation of the probabilities alone. A forward that does not keep the probabilities
/// leaves their buffer untouched.
#[test]
fn fused_attention_gives_the_bits_of_the_unfused_launches() {
    let Some(g) = gpu("fused_attention_gives_the_bits_of_the_unfused_launches") else {
        return;
    };
    let prec = Precision::Bf16;
    let mut r = rng(11);
    let bits = |v: &[f32]| -> Vec<u16> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect()
    };
    let as_f32 = |v: &[u16]| -> Vec<f32> {
        v.iter()
            .map(|&x| f32::from_bits((x as u32) << 16))
            .collect()
    };
    for (b, s, d, h) in [
        (1, 1, 16, 2),
        (2, 7, 48, 3),
        (2, 17, 64, 4),
        (1, 33, 96, 4),
        (2, 64, 128, 4),
        (1, 65, 80, 2),
        (1, 100, 192, 3),
        (2, 152, 512, 8),
        (1, 160, 128, 2),
    ] {
        let fused = attention::AttnDims {
            b,
            s,
            d,
            h,
            fused: true,
        };
        let unfused = attention::AttnDims {
            fused: false,
            ..fused
        };
        let bhss = b * h * s * s;
        let qkv = rand_vec(&mut r, b * s * 3 * d, 2.0);
        let qd = up(&g, &qkv);
        let qh = g.upload_new(&bits(&qkv)).unwrap();
        for causal in [false, true] {
            for p in [0.0f32, 0.2] {
                let sc = scalars(
                    &g,
                    StepScalars {
                        causal: causal as i32,
                        ..drop_scalars(p, 21)
                    },
                );
                for bf16_store in [false, true] {
                    let what = format!(
                        "b{b} s{s} d{d} h{h} causal={causal} p={p} bf16 storage {bf16_store}"
                    );
                    let qkv: Tensor = if bf16_store {
                        qh.dev().into()
                    } else {
                        qd.dev().into()
                    };
                    // y and att from one forward; y as f32 values either way.
                    let forward = |dm: attention::AttnDims, keep: bool| -> (Vec<f32>, Vec<f32>) {
                        let (att, yf) = (Out::new(&g, bhss), Out::new(&g, b * s * d));
                        let yh = g.upload_new(&vec![0xffffu16; b * s * d]).unwrap();
                        let y: Tensor = if bf16_store {
                            yh.dev().into()
                        } else {
                            yf.dev().into()
                        };
                        assert_eq!(dm.fusable(prec, qkv, Some(y)), dm.fused, "{what}");
                        attention::attention_forward(
                            &g,
                            prec,
                            y,
                            att.dev(),
                            qkv,
                            dm,
                            sc.dev(),
                            4,
                            p > 0.0,
                            keep,
                        )
                        .unwrap();
                        let y = if bf16_store {
                            as_f32(&g.download(yh.dev()).unwrap())
                        } else {
                            yf.read(&g, &what)
                        };
                        (y, att.read(&g, &what))
                    };
                    let (y_want, att_want) = forward(unfused, true);
                    let (y, att) = forward(fused, true);
                    check_bits(&format!("{what} y"), &y, &y_want);
                    check_bits(&format!("{what} att"), &att, &att_want);
                    let (y, att) = forward(fused, false);
                    check_bits(&format!("{what} y, att not kept"), &y, &y_want);
                    assert!(
                        att.iter().all(|v| v.is_nan()),
                        "{what}: att written though not kept"
                    );
                    // the backward's recomputation
                    let att = Out::new(&g, bhss);
                    attention::attention_probs(&g, prec, att.dev(), qkv, fused, sc.dev()).unwrap();
                    check_bits(
                        &format!("{what} att recomputed"),
                        &att.read(&g, &what),
                        &att_want,
                    );
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------------------- embed

#[test]
fn embedding_and_sequence_layout_match_the_cpu() {
    let Some(g) = gpu("embedding_and_sequence_layout_match_the_cpu") else {
        return;
    };
    let mut r = rng(9);
    for n in [1, 33, 1000] {
        let (dsg, a1) = (rand_vec(&mut r, n, 1.0), rand_vec(&mut r, n, 3.0));
        let (dd, ad) = (up(&g, &dsg), up(&g, &a1));
        let out = Out::new(&g, n);
        embed::softsign_backward(&g, out.dev(), dd.dev(), ad.dev(), n).unwrap();
        let mut want = vec![0f64; n];
        cpu::embed::softsign_backward(&mut want, &to64(&dsg), &to64(&a1));
        check("softsign_backward", &out.read(&g, "da1"), &want, 1e-6);
    }
    for (rr, de, gh, d) in [(1, 15, 17, 16), (33, 33, 66, 64), (150, 20, 40, 32)] {
        let (h, w1, b1, w2, b2, dout) = (
            rand_vec(&mut r, rr * de, 1.0),
            rand_vec(&mut r, gh * de, 0.4),
            rand_vec(&mut r, gh, 0.4),
            rand_vec(&mut r, d * gh, 0.4),
            rand_vec(&mut r, d, 0.4),
            rand_vec(&mut r, rr * d, 1.0),
        );
        let ups: Vec<_> = [&h, &w1, &b1, &w2, &b2, &dout]
            .iter()
            .map(|v| up(&g, v))
            .collect();
        let [hd, w1d, b1d, w2d, b2d, dod] = [0, 1, 2, 3, 4, 5].map(|i| ups[i].dev());
        let (mut e_w, mut a1_w, mut sg_w) =
            (vec![0f64; rr * d], vec![0f64; rr * gh], vec![0f64; rr * gh]);
        cpu::embed::embed_forward(
            &mut e_w,
            &mut a1_w,
            &mut sg_w,
            &to64(&h),
            &to64(&w1),
            &to64(&b1),
            &to64(&w2),
            &to64(&b2),
            rr,
            de,
            gh,
            d,
            1,
        );
        let (mut dh_w, mut dsg_w, mut da1_w) = (
            vec![0f64; rr * de],
            vec![0f64; rr * gh],
            vec![0f64; rr * gh],
        );
        let (mut dw1_w, mut db1_w, mut dw2_w, mut db2_w) = (
            vec![0f64; gh * de],
            vec![0f64; gh],
            vec![0f64; d * gh],
            vec![0f64; d],
        );
        cpu::embed::embed_backward(
            &mut dh_w,
            &mut dsg_w,
            &mut da1_w,
            &mut dw1_w,
            &mut db1_w,
            &mut dw2_w,
            &mut db2_w,
            &to64(&dout),
            &to64(&h),
            &a1_w,
            &sg_w,
            &to64(&w1),
            &to64(&w2),
            rr,
            de,
            gh,
            d,
            1,
        );
        let prec = Precision::F32;
        let (e, a1, sg) = (
            Out::new(&g, rr * d),
            Out::new(&g, rr * gh),
            Out::new(&g, rr * gh),
        );
        embed::embed_forward(
            &g,
            prec,
            e.dev(),
            a1.dev(),
            sg.dev(),
            hd,
            w1d,
            b1d,
            w2d,
            b2d,
            rr,
            de,
            gh,
            d,
        )
        .unwrap();
        check("embed e", &e.read(&g, "e"), &e_w, 1e-5);
        check("embed a1", &a1.read(&g, "a1"), &a1_w, 1e-5);
        check("embed sg", &sg.read(&g, "sg"), &sg_w, 1e-5);
        let (dh, dsg, da1) = (
            Out::new(&g, rr * de),
            Out::new(&g, rr * gh),
            Out::new(&g, rr * gh),
        );
        let (dw1, db1, dw2, db2) = (
            Out::new(&g, gh * de),
            Out::new(&g, gh),
            Out::new(&g, d * gh),
            Out::new(&g, d),
        );
        let scratch = g
            .alloc::<f32>(linear::col_sum_scratch(rr, gh.max(d)))
            .unwrap();
        embed::embed_backward(
            &g,
            prec,
            dh.dev(),
            dsg.dev(),
            da1.dev(),
            dw1.dev(),
            db1.dev(),
            dw2.dev(),
            db2.dev(),
            dod,
            hd,
            a1.dev(),
            sg.dev(),
            w1d,
            w2d,
            scratch.dev(),
            rr,
            de,
            gh,
            d,
            Accum::Set,
        )
        .unwrap();
        for (name, o, w) in [
            ("dh", &dh, &dh_w),
            ("dw1", &dw1, &dw1_w),
            ("db1", &db1, &db1_w),
            ("dw2", &dw2, &dw2_w),
            ("db2", &db2, &db2_w),
        ] {
            check(&format!("embed {name}"), &o.read(&g, name), w, 1e-5);
        }
    }
    // [token, prompt, emb + pos] with dropout, and its backward (the CPU's model.rs inline code).
    for (b, t, p_rows, d) in [(1, 1, 1, 16), (3, 17, 20, 33), (2, 150, 150, 64)] {
        for p in [0.0f32, 0.2] {
            let s = t + 2;
            let (emb, token, masks, pos) = (
                rand_vec(&mut r, b * t * d, 1.0),
                rand_vec(&mut r, d, 1.0),
                rand_vec(&mut r, 4 * d, 1.0),
                rand_vec(&mut r, p_rows * d, 1.0),
            );
            let scheme = 2usize;
            let sc = scalars(
                &g,
                StepScalars {
                    scheme: scheme as i32,
                    ..drop_scalars(p, 31)
                },
            );
            let site = if p > 0.0 {
                Dropout::new(p, 31, 0)
            } else {
                Dropout::OFF
            };
            let mut seq = vec![0f32; b * s * d];
            for bi in 0..b {
                for si in 0..s {
                    for j in 0..d {
                        seq[(bi * s + si) * d + j] = match si {
                            0 => token[j],
                            1 => masks[scheme * d + j],
                            _ => emb[(bi * t + si - 2) * d + j] + pos[(si - 2) * d + j],
                        };
                    }
                }
            }
            let mut z_w = vec![0f32; b * s * d];
            cpu::dropout::dropout_forward(&mut z_w, &seq, site, 0);
            let ups: Vec<_> = [&emb, &token, &masks, &pos]
                .iter()
                .map(|v| up(&g, v))
                .collect();
            let z = Out::new(&g, b * s * d);
            embed::assemble_forward(
                &g,
                z.dev(),
                ups[0].dev(),
                ups[1].dev(),
                ups[2].dev(),
                ups[3].dev(),
                b,
                t,
                d,
                sc.dev(),
                0,
            )
            .unwrap();
            check_bits("assemble_forward", &z.read(&g, "z0"), &z_w);

            let dz = rand_vec(&mut r, b * s * d, 1.0);
            let mut dseq = vec![0f32; b * s * d];
            cpu::dropout::dropout_backward(&mut dseq, &dz, site, 0);
            let (mut demb_w, mut dtok_w, mut dmask_w, mut dpos_w) = (
                vec![0f64; b * t * d],
                vec![0f64; d],
                vec![0f64; 4 * d],
                vec![0f64; p_rows * d],
            );
            for bi in 0..b {
                for si in 0..s {
                    for j in 0..d {
                        let v = dseq[(bi * s + si) * d + j] as f64;
                        match si {
                            0 => dtok_w[j] += v,
                            1 => dmask_w[scheme * d + j] += v,
                            _ => {
                                demb_w[(bi * t + si - 2) * d + j] = v;
                                dpos_w[(si - 2) * d + j] += v;
                            }
                        }
                    }
                }
            }
            let dzd = up(&g, &dz);
            let (demb, dtok, dmask, dpos) = (
                Out::new(&g, b * t * d),
                Out::new(&g, d),
                Out::new(&g, 4 * d),
                Out::new(&g, p_rows * d),
            );
            embed::assemble_backward(
                &g,
                demb.dev(),
                dtok.dev(),
                dmask.dev(),
                dpos.dev(),
                dzd.dev(),
                b,
                t,
                p_rows,
                d,
                sc.dev(),
                0,
            )
            .unwrap();
            check("assemble demb", &demb.read(&g, "demb"), &demb_w, 1e-6);
            check("assemble dtoken", &dtok.read(&g, "dtoken"), &dtok_w, 1e-6);
            check(
                "assemble dmask_tokens",
                &dmask.read(&g, "dmask"),
                &dmask_w,
                1e-6,
            );
            check("assemble dpos", &dpos.read(&g, "dpos"), &dpos_w, 1e-6);

            // Prefix drop and pad.
            let zd = up(&g, &z_w);
            let y = Out::new(&g, b * t * d);
            embed::drop_prefix(&g, y.dev(), zd.dev(), b, t, d).unwrap();
            let y_w: Vec<f32> = (0..b * t * d)
                .map(|i| z_w[(i / (t * d)) * s * d + 2 * d + i % (t * d)])
                .collect();
            check_bits("drop_prefix", &y.read(&g, "y"), &y_w);
            let yd = up(&g, &y_w);
            let back = Out::new(&g, b * s * d);
            embed::pad_prefix(&g, back.dev(), yd.dev(), b, t, d).unwrap();
            let back_w: Vec<f32> = (0..b * s * d)
                .map(|i| if (i / d) % s < 2 { 0.0 } else { z_w[i] })
                .collect();
            check_bits("pad_prefix", &back.read(&g, "dseq"), &back_w);
        }
    }
}

//! The RNG, masking and dropout, GEMM (every epilogue and operand layout), Linear and MLP
//! kernels against their CPU twins (`src/cpu/`, run in f64 where it is generic), at sizes below,
//! at and above every tile and at ragged sizes; outputs poisoned with NaN before the launch,
//! sentinels after every output, NaN/Inf checks. f32 paths to 1e-5 normalised error; bf16 paths
//! against the CPU on bf16-rounded operands (1e-5 level) and on the raw operands with the
//! tolerances written at each check. The other families: tests/cuda_layers.rs and
//! tests/cuda_loss_optim.rs; the whole model: tests/cuda_backend.rs.
//!
//! Without a GPU every test prints "SKIPPED: no CUDA device" and passes (docs/cuda.md).

mod cuda_common;

use cuda_common::*;
use ndt::cpu;
use ndt::cpu::dropout::Dropout;
use ndt::cuda::device::{Dev, Tensor};
use ndt::cuda::gemm::{Accum, Act, Gemm, Operand, Precision, gemm};
use ndt::cuda::{linear, mask, mlp};

// ------------------------------------------------------------------------------------ rng, mask

#[test]
fn rng_twin_is_bit_identical() {
    let Some(g) = gpu("rng_twin_is_bit_identical") else {
        return;
    };
    for (seed, stream, c0, n) in [(0, 0, 0, 1), (42, 7, 1 << 40, 4097), (u64::MAX, 3, 5, 1000)] {
        let key = ndt::rng::key(seed, stream);
        let bits = g.alloc::<u64>(n).unwrap();
        mask::rng_bits(&g, bits.dev(), key, c0).unwrap();
        let got = g.download(bits.dev()).unwrap();
        for (i, &b) in got.iter().enumerate() {
            assert_eq!(b, ndt::rng::bits(key, c0 + i as u64), "bits {i}");
        }
        let u = Out::new(&g, n);
        mask::rng_uniform(&g, u.dev(), key, c0).unwrap();
        let want: Vec<f32> = (0..n)
            .map(|i| ndt::rng::uniform(key, c0 + i as u64))
            .collect();
        check_bits("uniform", &u.read(&g, "uniform"), &want);
    }
}

#[test]
fn masking_and_dropout_match_the_cpu_bit_for_bit() {
    let Some(g) = gpu("masking_and_dropout_match_the_cpu_bit_for_bit") else {
        return;
    };
    let mut r = rng(1);
    for n in [1, 33, 4097, 100_000] {
        let x = rand_vec(&mut r, n, 3.0);
        let m = rand_mask(&mut r, n, 0.3);
        let (xd, md) = (up(&g, &x), up_u8(&g, &m));
        let out = Out::new(&g, n);
        mask::mask_input(&g, out.dev(), xd.dev(), md.dev(), n).unwrap();
        let want: Vec<f32> = x
            .iter()
            .zip(&m)
            .map(|(&x, &m)| if m != 0 { 0.0 } else { x })
            .collect();
        check_bits("mask_input", &out.read(&g, "mask_input"), &want);
        for p in [0.0f32, 0.2, 0.5] {
            let sc = scalars(&g, drop_scalars(p, 99));
            let out = Out::new(&g, n);
            mask::dropout_forward(&g, out.dev(), xd.dev(), n, sc.dev(), 5).unwrap();
            let mut want = vec![0f32; n];
            let site = if p > 0.0 {
                Dropout::new(p, 99, 5)
            } else {
                Dropout::OFF
            };
            cpu::dropout::dropout_forward(&mut want, &x, site, 0);
            check_bits("dropout_forward", &out.read(&g, "dropout_forward"), &want);
            let dx = Out::new(&g, n);
            mask::dropout_backward(&g, dx.dev(), xd.dev(), n, sc.dev(), 5).unwrap();
            cpu::dropout::dropout_backward(&mut want, &x, site, 0);
            check_bits("dropout_backward", &dx.read(&g, "dropout_backward"), &want);
        }
    }
}

// ----------------------------------------------------------------------------------------- gemm

/// C(z, m, n) = alpha Σ_k A(z, m, k) B(z, n, k) in f64 from the operands' strides.
#[allow(clippy::too_many_arguments)]
fn gemm_ref(gm: &Gemm, a: &[f32], b: &[f32], round: bool) -> Vec<f64> {
    let v = |x: f32| if round { bf16(x) as f64 } else { x as f64 };
    let off = |o: &Operand, z: usize| {
        ((z / gm.zdiv) as i64 * o.z1 + (z % gm.zdiv) as i64 * o.z2) as usize
    };
    let mut c = vec![0f64; gm.z * gm.m * gm.n];
    for z in 0..gm.z {
        for i in 0..gm.m {
            for j in 0..gm.n {
                let mut s = 0f64;
                for k in 0..gm.k {
                    let ai = off(&gm.a, z) + (i as i64 * gm.a.rs + k as i64 * gm.a.cs) as usize;
                    let bi = off(&gm.b, z) + (j as i64 * gm.b.rs + k as i64 * gm.b.cs) as usize;
                    s += v(a[ai]) * v(b[bi]);
                }
                c[(z * gm.m + i) * gm.n + j] = gm.alpha as f64 * s;
            }
        }
    }
    c
}

#[test]
fn gemm_matches_the_reference_across_tile_edges() {
    let Some(g) = gpu("gemm_matches_the_reference_across_tile_edges") else {
        return;
    };
    let mut r = rng(2);
    for prec in PRECS {
        for m in [1, 17, 64, 65, 260] {
            for n in [1, 16, 33, 132] {
                for k in [1, 15, 32, 33, 260] {
                    let (a, b, bias) = (
                        rand_vec(&mut r, m * k, 1.0),
                        rand_vec(&mut r, n * k, 1.0),
                        rand_vec(&mut r, n, 1.0),
                    );
                    let (ad, bd, biasd) = (up(&g, &a), up(&g, &b), up(&g, &bias));
                    let out = Out::new(&g, m * n);
                    let gm =
                        Gemm::linear(out.dev(), ad.dev(), bd.dev(), Some(biasd.dev()), m, n, k);
                    gemm(&g, prec, &gm).unwrap();
                    let got = out.read(&g, "gemm");
                    let what = format!("{prec:?} gemm {m}x{n}x{k}");
                    let with_bias = |c: Vec<f64>| -> Vec<f64> {
                        c.iter()
                            .enumerate()
                            .map(|(i, &v)| v + bias[i % n] as f64)
                            .collect()
                    };
                    let exact = with_bias(gemm_ref(&gm, &a, &b, false));
                    match prec {
                        Precision::F32 => check(&what, &got, &exact, 1e-5),
                        Precision::Bf16 => {
                            let rounded = with_bias(gemm_ref(&gm, &a, &b, true));
                            check(&format!("{what} vs bf16 operands"), &got, &rounded, 2e-5);
                            // bf16 keeps 8 bits: each product is off by up to ~2^-8 of its
                            // size, so the error is bounded by |A|·|B|ᵀ, not by the (possibly
                            // cancelling) result.
                            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                            let mag: Vec<f64> = gemm_ref(&gm, &abs(&a), &abs(&b), false)
                                .iter()
                                .enumerate()
                                .map(|(i, &v)| v + bias[i % n].abs() as f64)
                                .collect();
                            let what = format!("{what} vs f32 operands");
                            check_scaled(&what, &got, &exact, &mag, 1.5e-2);
                        }
                    }
                }
            }
        }
    }
}

/// The leading dimension and element count of an operand of `rows × k` padded for quad reads:
/// k-major X(i, k) = x[i·ld + k], or row-major X(i, k) = x[k·ld + i], with ld the contiguous
/// size rounded up to a multiple of 4, plus 4.
fn padded(k_major: bool, rows: usize, k: usize) -> (usize, usize) {
    let pad4 = |v: usize| v.div_ceil(4) * 4 + 4;
    if k_major {
        (pad4(k), rows * pad4(k))
    } else {
        (pad4(rows), k * pad4(rows))
    }
}

/// The operand view of `padded`.
fn padded_view(k_major: bool, t: impl Into<Tensor>, ld: usize) -> Operand {
    if k_major {
        Operand::rows(t, ld)
    } else {
        Operand::cols(t, ld)
    }
}

/// Operands whose strides allow float4 reads (rows of k, or columns of rows, in steps of a
/// multiple of 4), in all four pairings (the kernels gemm_bf16_kk/_kr/_rk/_rr), with sizes that
/// are not multiples of 4 so that quads straddle the operand's edge; and the same operands one
/// float past a 16-byte boundary (the scalar kernel).
#[test]
fn gemm_vector_loads_at_padded_strides_and_edges() {
    let Some(g) = gpu("gemm_vector_loads_at_padded_strides_and_edges") else {
        return;
    };
    let mut r = rng(4);
    for prec in PRECS {
        let tol = if prec == Precision::F32 { 1e-5 } else { 2e-5 };
        let round = prec == Precision::Bf16;
        for (m, n, k) in [(33, 35, 33), (7, 66, 13), (70, 5, 31), (65, 67, 66)] {
            for (a_k, b_k) in [(true, true), (true, false), (false, true), (false, false)] {
                for shift in [0usize, 1] {
                    let ((lda, na), (ldb, nb)) = (padded(a_k, m, k), padded(b_k, n, k));
                    let a = rand_vec(&mut r, na + shift, 1.0);
                    let b = rand_vec(&mut r, nb + shift, 1.0);
                    let (ad, bd) = (up(&g, &a), up(&g, &b));
                    let (av, bv) = (ad.dev().slice(shift, na), bd.dev().slice(shift, nb));
                    let out = Out::new(&g, m * n);
                    let gm = Gemm {
                        a: padded_view(a_k, av, lda),
                        b: padded_view(b_k, bv, ldb),
                        ..Gemm::linear(out.dev(), av, bv, None, m, n, k)
                    };
                    gemm(&g, prec, &gm).unwrap();
                    let what =
                        format!("{prec:?} {m}x{n}x{k} k-major A {a_k} B {b_k} shift {shift}");
                    let want = gemm_ref(&gm, &a[shift..], &b[shift..], round);
                    check(&what, &out.read(&g, &what), &want, tol);
                }
            }
        }
    }
}

#[test]
fn gemm_transposed_and_batched_operands() {
    let Some(g) = gpu("gemm_transposed_and_batched_operands") else {
        return;
    };
    let mut r = rng(3);
    for prec in PRECS {
        let tol = if prec == Precision::F32 { 1e-5 } else { 2e-5 };
        let round = prec == Precision::Bf16;
        for (m, n, k) in [(1, 1, 1), (17, 33, 65), (260, 132, 33), (64, 64, 64)] {
            // dX = dY · W and dW = dYᵀ · X: operands walked along rows, not k.
            let (dy, w, x) = (
                rand_vec(&mut r, m * n, 1.0),
                rand_vec(&mut r, n * k, 1.0),
                rand_vec(&mut r, m * k, 1.0),
            );
            let (dyd, wd, xd) = (up(&g, &dy), up(&g, &w), up(&g, &x));
            let dx = Out::new(&g, m * k);
            let gm = Gemm::linear_dx(dx.dev(), dyd.dev(), wd.dev(), m, n, k);
            gemm(&g, prec, &gm).unwrap();
            check(
                &format!("{prec:?} dx {m}x{n}x{k}"),
                &dx.read(&g, "dx"),
                &gemm_ref(&gm, &dy, &w, round),
                tol,
            );
            let dw = Out::new(&g, n * k);
            let gm = Gemm::linear_dw(dw.dev(), dyd.dev(), xd.dev(), m, n, k);
            gemm(&g, prec, &gm).unwrap();
            check(
                &format!("{prec:?} dw {m}x{n}x{k}"),
                &dw.read(&g, "dw"),
                &gemm_ref(&gm, &dy, &x, round),
                tol,
            );
        }
        // Batched as attention: z = 2 batches x 3 heads over a [B, S, 3·hd·H]-like buffer.
        let (b, h, s, hd) = (2, 3, 33, 17);
        let ld = 3 * h * hd;
        let qkv = rand_vec(&mut r, b * s * ld, 1.0);
        let qd = up(&g, &qkv);
        let scores = Out::new(&g, b * h * s * s);
        let gm = Gemm {
            m: s,
            n: s,
            k: hd,
            z: b * h,
            zdiv: h,
            alpha: 0.25,
            a: Operand::rows(qd.dev(), ld).batched(s * ld, hd),
            b: Operand::rows(qd.dev().slice(h * hd, qkv.len() - h * hd), ld).batched(s * ld, hd),
            c: Operand::rows(scores.dev(), s).batched(h * s * s, s * s),
            ..Gemm::linear(scores.dev(), qd.dev(), qd.dev(), None, s, s, hd)
        };
        gemm(&g, prec, &gm).unwrap();
        let mut bq = qkv.clone();
        bq.drain(..h * hd);
        let got = scores.read(&g, "batched scores");
        // Each operand is addressed from its own start, as on the device.
        let want = gemm_ref(&gm, &qkv, &bq, round);
        check(&format!("{prec:?} batched"), &got, &want, tol);
    }
}

/// `Gemm::drop_a`: the product reads A through the dropout, element A(z, m, k) with the counter
/// of its offset from A's base, as the attention products read the probabilities. Checked
/// against dropping the whole buffer first (the CPU's `dropout_forward`) and multiplying:
/// k-major and row-major A with padded strides (the float4 `_da` kernels, with quads that
/// straddle the edge), a stride that allows no float4 (the scalar one), batched as the
/// attention products are, tile edges, and p = 0.
#[test]
fn gemm_dropout_of_operand_a_matches_dropping_a_first() {
    let Some(g) = gpu("gemm_dropout_of_operand_a_matches_dropping_a_first") else {
        return;
    };
    let mut r = rng(6);
    let (zb, zh) = (2, 3);
    for prec in PRECS {
        let tol = if prec == Precision::F32 { 1e-5 } else { 2e-5 };
        let round = prec == Precision::Bf16;
        for (m, n, k) in [(33, 17, 33), (65, 64, 70), (152, 64, 152)] {
            for (k_major, pad) in [(true, 0usize), (false, 0), (true, 1)] {
                for p in [0.0f32, 0.3] {
                    // A of batch z: an [m, k] (or [k, m]) matrix with leading dimension ld.
                    // A multiple of 4 (float4 reads, quads straddling the edge at 33 and
                    // 65) or one more (scalar reads).
                    let dim: usize = if k_major { k } else { m };
                    let ld = dim.div_ceil(4) * 4 + pad;
                    let per = if k_major { m * ld } else { k * ld };
                    let a = rand_vec(&mut r, zb * zh * per, 1.0);
                    // B k-major, padded the same way (float4 kernels need both operands).
                    let ldb = k.div_ceil(4) * 4 + pad;
                    let b = rand_vec(&mut r, zb * zh * n * ldb, 1.0);
                    let (ad, bd) = (up(&g, &a), up(&g, &b));
                    let view = if k_major {
                        Operand::rows(ad.dev(), ld)
                    } else {
                        Operand::cols(ad.dev(), ld)
                    };
                    let out = Out::new(&g, zb * zh * m * n);
                    let sc = scalars(&g, drop_scalars(p, 17));
                    let gm = Gemm {
                        z: zb * zh,
                        zdiv: zh,
                        a: view.batched(zh * per, per),
                        b: Operand::rows(bd.dev(), ldb).batched(zh * n * ldb, n * ldb),
                        c: Operand::rows(out.dev(), n).batched(zh * m * n, m * n),
                        dropout: Some((sc.dev(), 9)),
                        drop_a: true,
                        ..Gemm::linear(out.dev(), ad.dev(), bd.dev(), None, m, n, k)
                    };
                    gemm(&g, prec, &gm).unwrap();
                    let site = if p > 0.0 {
                        Dropout::new(p, 17, 9)
                    } else {
                        Dropout::OFF
                    };
                    let mut dropped = vec![0f32; a.len()];
                    cpu::dropout::dropout_forward(&mut dropped, &a, site, 0);
                    let what =
                        format!("{prec:?} drop_a {m}x{n}x{k} k-major {k_major} pad {pad} p {p}");
                    let want = gemm_ref(&gm, &dropped, &b, round);
                    check(&what, &out.read(&g, &what), &want, tol);
                }
            }
        }
    }
}

/// In bf16 precision an operand or C may be stored as bf16 (`Tensor::Bf16`): a product that
/// reads bf16 copies of its operands gives the bits of the one that reads them as f32, and a
/// bf16 C holds those bits rounded to nearest even. Every storage pairing (the `_hf`, `_fh`,
/// `_fh_da` and `_hh` kernels), every fetch pairing (k-major or row-major, strides padded to
/// multiples of 4 with sizes that are not, so that quads straddle the edges; one element past
/// an 8-byte boundary: the scalar kernels), the bias, GELU and pre-activation epilogue, and the
/// dropout of A. Then the misuses the launcher refuses.
#[test]
fn gemm_bf16_storage_gives_the_bits_of_f32_storage() {
    let Some(g) = gpu("gemm_bf16_storage_gives_the_bits_of_f32_storage") else {
        return;
    };
    let prec = Precision::Bf16;
    let mut r = rng(8);
    let bits = |v: &[f32]| -> Vec<u16> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect()
    };
    // A bf16 C poisoned with NaN, then sentinels.
    let poisoned = |n: usize| g.upload_new(&vec![0xffffu16; n + 4]).unwrap();
    let sc = scalars(&g, drop_scalars(0.3, 5));
    for (m, n, k) in [(33, 35, 33), (70, 5, 31), (65, 67, 66)] {
        for (a_k, b_k) in [(true, true), (true, false), (false, true), (false, false)] {
            for shift in [0usize, 1] {
                for drop_a in [false, true] {
                    let ((lda, na), (ldb, nb)) = (padded(a_k, m, k), padded(b_k, n, k));
                    let a = rand_vec(&mut r, na + shift, 1.0);
                    let b = rand_vec(&mut r, nb + shift, 1.0);
                    let bias = rand_vec(&mut r, n, 1.0);
                    let (ad, bd, biasd) = (up(&g, &a), up(&g, &b), up(&g, &bias));
                    let ah = g.upload_new(&bits(&a)).unwrap();
                    let bh = g.upload_new(&bits(&b)).unwrap();
                    let product = |at: Tensor, bt: Tensor, c: Tensor, pre: Dev<f32>| {
                        let gm = Gemm {
                            a: padded_view(a_k, at, lda),
                            b: padded_view(b_k, bt, ldb),
                            c_pre: Some(pre),
                            act: Act::Gelu,
                            ..Gemm::linear(c, at, bd.dev(), Some(biasd.dev()), m, n, k)
                        };
                        gm.drop_a_if(drop_a, sc.dev(), 3)
                    };
                    let (af, bf) = (ad.dev().slice(shift, na), bd.dev().slice(shift, nb));
                    let (c_ref, pre_ref) = (Out::new(&g, m * n), Out::new(&g, m * n));
                    let gm = product(af.into(), bf.into(), c_ref.dev().into(), pre_ref.dev());
                    gemm(&g, prec, &gm).unwrap();
                    let c_ref = c_ref.read(&g, "f32 storage");
                    let pre_ref = pre_ref.read(&g, "f32 storage");
                    let c_ref_h: Vec<f32> = c_ref.iter().map(|&v| bf16(v)).collect();
                    for (a_h, b_h) in [(true, false), (false, true), (true, true)] {
                        if drop_a && a_h {
                            continue; // no kernel: refused below
                        }
                        let what = format!(
                            "{m}x{n}x{k} k-major A {a_k} B {b_k} shift {shift} drop_a \
                             {drop_a} bf16 A {a_h} B {b_h}"
                        );
                        let at: Tensor = if a_h {
                            ah.dev().slice(shift, na).into()
                        } else {
                            af.into()
                        };
                        let bt: Tensor = if b_h {
                            bh.dev().slice(shift, nb).into()
                        } else {
                            bf.into()
                        };
                        // C stored as f32: the same bits.
                        let (c, pre) = (Out::new(&g, m * n), Out::new(&g, m * n));
                        gemm(&g, prec, &product(at, bt, c.dev().into(), pre.dev())).unwrap();
                        check_bits(&what, &c.read(&g, &what), &c_ref);
                        check_bits(&what, &pre.read(&g, &what), &pre_ref);
                        // C stored as bf16: those bits rounded; the pre-activation stays f32.
                        let (ch, pre) = (poisoned(m * n), Out::new(&g, m * n));
                        let ct = Tensor::Bf16(ch.dev().slice(0, m * n));
                        gemm(&g, prec, &product(at, bt, ct, pre.dev())).unwrap();
                        let got = g.download_tensor(Tensor::Bf16(ch.dev())).unwrap();
                        let what = format!("{what}, bf16 C");
                        check_bits(&what, &got[..m * n], &c_ref_h);
                        assert!(
                            got[m * n..].iter().all(|v| v.to_bits() == 0xffff_0000),
                            "{what}: written past its end"
                        );
                        check_bits(&what, &pre.read(&g, &what), &pre_ref);
                    }
                }
            }
        }
    }

    // Misuses are errors, not wrong results: bf16 storage in f32 precision, C += into bf16,
    // the dropout of a bf16 A.
    let (m, n, k) = (8, 8, 8);
    let (xf, xh) = (up(&g, &[0.5; 64]), g.upload_new(&[0u16; 64]).unwrap());
    let f32_c = Gemm::linear(xf.dev(), xh.dev(), xf.dev(), None, m, n, k);
    assert!(gemm(&g, Precision::F32, &f32_c).is_err());
    let add_h = Gemm::linear(xh.dev(), xf.dev(), xf.dev(), None, m, n, k).accum(Accum::Add);
    assert!(gemm(&g, prec, &add_h).is_err());
    let drop_h =
        Gemm::linear(xf.dev(), xh.dev(), xf.dev(), None, m, n, k).drop_a_if(true, sc.dev(), 3);
    assert!(gemm(&g, prec, &drop_h).is_err());
}

#[test]
fn gemm_epilogues_match_their_cpu_twins() {
    let Some(g) = gpu("gemm_epilogues_match_their_cpu_twins") else {
        return;
    };
    let mut r = rng(4);
    for prec in PRECS {
        let tol = if prec == Precision::F32 { 1e-5 } else { 2e-5 };
        let round = prec == Precision::Bf16;
        for (m, n, k) in [(65, 33, 132), (260, 132, 33), (1, 1, 17)] {
            let (a, b, bias) = (
                rand_vec(&mut r, m * k, 1.0),
                rand_vec(&mut r, n * k, 1.0),
                rand_vec(&mut r, n, 1.0),
            );
            let (ad, bd, biasd) = (up(&g, &a), up(&g, &b), up(&g, &bias));
            let base = Gemm::linear(
                Dev::<f32>::null(),
                ad.dev(),
                bd.dev(),
                Some(biasd.dev()),
                m,
                n,
                k,
            );
            let pre_ref: Vec<f64> = gemm_ref(&base, &a, &b, round)
                .iter()
                .enumerate()
                .map(|(i, &v)| v + bias[i % n] as f64)
                .collect();
            for act in [Act::Gelu, Act::Softsign] {
                let (out, pre) = (Out::new(&g, m * n), Out::new(&g, m * n));
                let gm = Gemm {
                    c: Operand::rows(out.dev(), n),
                    c_pre: Some(pre.dev()),
                    act,
                    ..base
                };
                gemm(&g, prec, &gm).unwrap();
                let mut want = vec![0f64; m * n];
                match act {
                    Act::Gelu => cpu::mlp::gelu_forward(&mut want, &pre_ref),
                    _ => cpu::embed::softsign_forward(&mut want, &pre_ref),
                }
                let what = format!("{prec:?} {act:?} {m}x{n}x{k}");
                check(&format!("{what} pre"), &pre.read(&g, "pre"), &pre_ref, tol);
                check(&what, &out.read(&g, "act"), &want, tol);
            }
            // z += drop(A·Bᵀ + bias), and z' = z + drop(A·Bᵀ + bias) into another buffer and
            // in place (a residual source): the residual update of the blocks.
            let z0 = rand_vec(&mut r, m * n, 1.0);
            for p in [0.0f32, 0.2] {
                let sc = scalars(&g, drop_scalars(p, 11));
                let z = Out::with(&g, &z0);
                let gm = Gemm {
                    c: Operand::rows(z.dev(), n),
                    accumulate: true,
                    dropout: Some((sc.dev(), 8)),
                    ..base
                };
                gemm(&g, prec, &gm).unwrap();
                let mut want = to64(&z0);
                let site = if p > 0.0 {
                    Dropout::new(p, 11, 8)
                } else {
                    Dropout::OFF
                };
                cpu::dropout::dropout_add_forward(&mut want, &pre_ref, site);
                let what = format!("{prec:?} residual p={p} {m}x{n}x{k}");
                let added = z.read(&g, "z");
                check(&what, &added, &want, tol);
                let (src, out) = (up(&g, &z0), Out::new(&g, m * n));
                let gm = Gemm {
                    c: Operand::rows(out.dev(), n),
                    resid: Some(src.dev()),
                    dropout: Some((sc.dev(), 8)),
                    ..base
                };
                gemm(&g, prec, &gm).unwrap();
                check_bits(&format!("{what}, source"), &out.read(&g, "z'"), &added);
                let z = Out::with(&g, &z0);
                let gm = Gemm {
                    c: Operand::rows(z.dev(), n),
                    resid: Some(z.dev()),
                    ..gm
                };
                gemm(&g, prec, &gm).unwrap();
                check_bits(&format!("{what}, in place"), &z.read(&g, "z"), &added);
                assert!(
                    gemm(
                        &g,
                        prec,
                        &Gemm {
                            accumulate: true,
                            ..gm
                        }
                    )
                    .is_err(),
                    "a residual source with C += is refused"
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------- linear, mlp

#[test]
fn column_sums_and_linear_layers_match_the_cpu() {
    let Some(g) = gpu("column_sums_and_linear_layers_match_the_cpu") else {
        return;
    };
    let mut r = rng(5);
    for rows in [1, 63, 64, 65, 260, 20_000] {
        for cols in [1, 33, 700] {
            let x = rand_vec(&mut r, rows * cols, 1.0);
            let init = rand_vec(&mut r, cols, 1.0);
            let xd = up(&g, &x);
            let scratch = g.alloc::<f32>(linear::col_sum_scratch(rows, cols)).unwrap();
            for accum in [Accum::Set, Accum::Add] {
                let out = if accum == Accum::Set {
                    Out::new(&g, cols)
                } else {
                    Out::with(&g, &init)
                };
                linear::col_sum(
                    &g,
                    out.dev(),
                    xd.dev(),
                    scratch.dev(),
                    rows,
                    cols,
                    cols,
                    accum,
                )
                .unwrap();
                let mut want = if accum == Accum::Set {
                    vec![0f64; cols]
                } else {
                    to64(&init)
                };
                cpu::linear::col_sum_add(&mut want, &to64(&x), rows, cols);
                check(
                    &format!("col_sum {rows}x{cols} {accum:?}"),
                    &out.read(&g, "col_sum"),
                    &want,
                    1e-6,
                );
            }
        }
    }
    for (rr, i, o) in [(1, 1, 1), (33, 17, 65), (150, 132, 33)] {
        let (x, w, b, dout) = (
            rand_vec(&mut r, rr * i, 1.0),
            rand_vec(&mut r, o * i, 1.0),
            rand_vec(&mut r, o, 1.0),
            rand_vec(&mut r, rr * o, 1.0),
        );
        let (xd, wd, bd, dod) = (up(&g, &x), up(&g, &w), up(&g, &b), up(&g, &dout));
        let scratch = g.alloc::<f32>(linear::col_sum_scratch(rr, o)).unwrap();
        let mut want = vec![0f64; rr * o];
        cpu::linear::linear_forward(&mut want, &to64(&x), &to64(&w), &to64(&b), rr, i, o, 1);
        let (mut dx_w, mut dw_w, mut db_w) = (vec![0f64; rr * i], vec![0f64; o * i], vec![0f64; o]);
        cpu::linear::linear_backward(
            Some(&mut dx_w),
            &mut dw_w,
            &mut db_w,
            &to64(&dout),
            &to64(&x),
            &to64(&w),
            rr,
            i,
            o,
            1,
        );
        let prec = Precision::F32;
        let out = Out::new(&g, rr * o);
        linear::linear_forward(&g, prec, out.dev(), xd.dev(), wd.dev(), bd.dev(), rr, i, o)
            .unwrap();
        check("linear_forward", &out.read(&g, "out"), &want, 1e-5);
        let (dx, dw, db) = (Out::new(&g, rr * i), Out::new(&g, o * i), Out::new(&g, o));
        linear::linear_backward(
            &g,
            prec,
            Some(dx.dev()),
            dw.dev(),
            db.dev(),
            dod.dev(),
            xd.dev(),
            wd.dev(),
            scratch.dev(),
            rr,
            i,
            o,
            Accum::Set,
        )
        .unwrap();
        check("linear dx", &dx.read(&g, "dx"), &dx_w, 1e-5);
        check("linear dw", &dw.read(&g, "dw"), &dw_w, 1e-5);
        check("linear db", &db.read(&g, "db"), &db_w, 1e-5);
    }
}

#[test]
fn mlp_matches_the_cpu() {
    let Some(g) = gpu("mlp_matches_the_cpu") else {
        return;
    };
    let mut r = rng(6);
    for n in [1, 33, 1000] {
        let (dact, pre) = (rand_vec(&mut r, n, 1.0), rand_vec(&mut r, n, 4.0));
        let (dd, pd) = (up(&g, &dact), up(&g, &pre));
        let out = Out::new(&g, n);
        mlp::gelu_backward(&g, out.dev(), dd.dev(), pd.dev(), n).unwrap();
        let mut want = vec![0f64; n];
        cpu::mlp::gelu_backward(&mut want, &to64(&dact), &to64(&pre));
        check("gelu_backward", &out.read(&g, "dpre"), &want, 1e-6);
    }
    let (rr, d, f) = (37, 32, 65);
    let (x, w1, b1, w2, b2, dout) = (
        rand_vec(&mut r, rr * d, 1.0),
        rand_vec(&mut r, f * d, 0.3),
        rand_vec(&mut r, f, 0.3),
        rand_vec(&mut r, d * f, 0.3),
        rand_vec(&mut r, d, 0.3),
        rand_vec(&mut r, rr * d, 1.0),
    );
    let ups: Vec<_> = [&x, &w1, &b1, &w2, &b2, &dout]
        .iter()
        .map(|v| up(&g, v))
        .collect();
    let [xd, w1d, b1d, w2d, b2d, dod] = [0, 1, 2, 3, 4, 5].map(|i| ups[i].dev());
    let (mut out_w, mut pre_w, mut act_w) =
        (vec![0f64; rr * d], vec![0f64; rr * f], vec![0f64; rr * f]);
    cpu::mlp::mlp_forward(
        &mut out_w,
        &mut pre_w,
        &mut act_w,
        &to64(&x),
        &to64(&w1),
        &to64(&b1),
        &to64(&w2),
        &to64(&b2),
        rr,
        d,
        f,
        1,
    );
    let (mut dx_w, mut dact_w, mut dpre_w) =
        (vec![0f64; rr * d], vec![0f64; rr * f], vec![0f64; rr * f]);
    let (mut dw1_w, mut db1_w, mut dw2_w, mut db2_w) = (
        vec![0f64; f * d],
        vec![0f64; f],
        vec![0f64; d * f],
        vec![0f64; d],
    );
    cpu::mlp::mlp_backward(
        &mut dx_w,
        &mut dact_w,
        &mut dpre_w,
        &mut dw1_w,
        &mut db1_w,
        &mut dw2_w,
        &mut db2_w,
        &to64(&dout),
        &to64(&x),
        &pre_w,
        &act_w,
        &to64(&w1),
        &to64(&w2),
        rr,
        d,
        f,
        1,
    );
    let prec = Precision::F32;
    let (out, pre, act) = (
        Out::new(&g, rr * d),
        Out::new(&g, rr * f),
        Out::new(&g, rr * f),
    );
    mlp::mlp_forward(
        &g,
        prec,
        out.dev(),
        pre.dev(),
        act.dev(),
        xd,
        w1d,
        b1d,
        w2d,
        b2d,
        rr,
        d,
        f,
        mlp::Residual::None,
    )
    .unwrap();
    check("mlp out", &out.read(&g, "out"), &out_w, 1e-5);
    check("mlp pre", &pre.read(&g, "pre"), &pre_w, 1e-5);
    check("mlp act", &act.read(&g, "act"), &act_w, 1e-5);
    // The model passes one buffer as x and dx (x is read before dx is written): both ways.
    for alias in [false, true] {
        let (dx, ff) = (Out::new(&g, rr * d), Out::new(&g, rr * f));
        let (dw1, db1, dw2, db2) = (
            Out::new(&g, f * d),
            Out::new(&g, f),
            Out::new(&g, d * f),
            Out::new(&g, d),
        );
        let xin = if alias {
            g.copy(dx.dev(), xd, rr * d).unwrap();
            dx.dev()
        } else {
            xd
        };
        let scratch = g.alloc::<f32>(linear::col_sum_scratch(rr, f)).unwrap();
        mlp::mlp_backward(
            &g,
            prec,
            dx.dev(),
            ff.dev(),
            dw1.dev(),
            db1.dev(),
            dw2.dev(),
            db2.dev(),
            dod,
            xin,
            pre.dev(),
            w1d,
            w2d,
            scratch.dev(),
            rr,
            d,
            f,
            Accum::Set,
        )
        .unwrap();
        for (name, o, w) in [
            ("dx", &dx, &dx_w),
            ("dw1", &dw1, &dw1_w),
            ("db1", &db1, &db1_w),
            ("dw2", &dw2, &dw2_w),
            ("db2", &db2, &db2_w),
        ] {
            check(
                &format!("mlp {name} (alias {alias})"),
                &o.read(&g, name),
                w,
                1e-5,
            );
        }
    }
}

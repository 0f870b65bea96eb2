//! defines: matmul — the one wrapper around the `gemm` crate.
//!
//! Matrices are strided views: element (i, j) of a view lives at `data[i * rs + j * cs]`, so a
//! transpose is a view with its strides swapped (`Mat::t`) and one head of a `[rows, 3D]` qkv
//! buffer is a view with row stride 3D. `matmul` computes `dst (= | +=) scale · lhs · rhs`.

use crate::cpu::float::Float;

/// Whether a kernel overwrites its output or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    Set,
    Add,
}

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, F> {
    pub data: &'a [F],
    pub rows: usize,
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a, F> Mat<'a, F> {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [F], rows: usize, cols: usize) -> Self {
        Mat::strided(data, rows, cols, cols)
    }

    /// A row-major `[rows, cols]` matrix whose rows are `ld` elements apart.
    pub fn strided(data: &'a [F], rows: usize, cols: usize, ld: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// A writable row-major strided matrix view (rows `ld` elements apart, columns contiguous).
#[derive(Debug)]
pub struct MatMut<'a, F> {
    pub data: &'a mut [F],
    pub rows: usize,
    pub cols: usize,
    pub ld: usize,
}

impl<'a, F> MatMut<'a, F> {
    pub fn new(data: &'a mut [F], rows: usize, cols: usize) -> Self {
        MatMut::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [F], rows: usize, cols: usize, ld: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            ld,
        }
    }
}

/// Largest index a view touches plus one (0 for an empty view).
fn span(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst[m, n] (= | +=) lhs[m, k] · rhs[k, n]` on `threads` threads.
pub fn matmul<F: Float>(dst: MatMut<F>, lhs: Mat<F>, rhs: Mat<F>, accum: Accum, threads: usize) {
    matmul_scaled(dst, lhs, rhs, F::ONE, accum, threads)
}

/// `dst[m, n] (= | +=) scale · lhs[m, k] · rhs[k, n]` on `threads` threads.
pub fn matmul_scaled<F: Float>(
    dst: MatMut<F>,
    lhs: Mat<F>,
    rhs: Mat<F>,
    scale: F,
    accum: Accum,
    threads: usize,
) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "matmul shapes: dst [{m}, {n}], lhs [{}, {}], rhs [{}, {}]",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    assert!(
        dst.ld >= n,
        "matmul: dst rows overlap (ld {} < {n})",
        dst.ld
    );
    assert!(
        span(m, n, dst.ld, 1) <= dst.data.len(),
        "matmul: dst out of bounds"
    );
    assert!(
        span(m, k, lhs.rs, lhs.cs) <= lhs.data.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        span(k, n, rhs.rs, rhs.cs) <= rhs.data.len(),
        "matmul: rhs out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if accum == Accum::Set {
            for i in 0..m {
                dst.data[i * dst.ld..i * dst.ld + n].fill(F::ZERO);
            }
        }
        return;
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index the three views can touch inside their
    // slices; `dst` is borrowed mutably and its rows do not overlap (ld >= n), and it cannot
    // alias `lhs`/`rhs`, which are shared borrows. `F` is f32 or f64, both supported by `gemm`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.ld as isize,
            accum == Accum::Add,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            F::ONE,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn strided_transposed_and_accumulating() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        // b stored transposed [n, k]
        let mut bt = vec![0.0; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c = vec![1.0; m * (n + 2)];
        matmul(
            MatMut::strided(&mut c, m, n, n + 2),
            Mat::new(&a, m, k),
            Mat::new(&bt, n, k).t(),
            Accum::Add,
            2,
        );
        for i in 0..m {
            for j in 0..n {
                assert!((c[i * (n + 2) + j] - 1.0 - want[i * n + j]).abs() < 1e-12);
            }
            assert_eq!(c[i * (n + 2) + n], 1.0);
        }
    }
}

//! Ground-truth session similarity of a synthetic dataset (definition in docs/synth.md).
//!
//! For a session `i` and a region `r` it records, `X_ir` is the noise-free latent trajectory of the
//! session's effective dynamics under four canonical conditions (stimulus left/right x contrast
//! 1 / 0.25, a decision matching the stimulus, movement 10 bins after onset), stacked into a
//! `[4 * bins, d]` matrix with centred columns. Models with session-specific linear read-in and
//! read-out layers can absorb any invertible linear map of the latents, so what two sessions
//! share in a region is the column space of their trajectories:
//!
//! ```text
//! rho_ij(r) = ||Q_ir^T Q_jr||_F^2 / max(rank_ir, rank_jr)      (Q: orthonormal basis of X's columns)
//! S_ij      = sum_{r in R_i & R_j} rho_ij(r) / |R_i | R_j|       S_ii = 1
//! ```
//!
//! `rho` is the mean squared canonical correlation between the two trajectory subspaces, in
//! [0, 1]; regions recorded by only one of the two sessions count as zero, so `S` falls with both
//! region mismatch (explicit heterogeneity) and differences in dynamics (implicit heterogeneity).

use super::model::{Dynamics, Timing, canonical_trajectory};

/// Orthonormal basis (columns, each of length `rows`) of the column space of a trajectory.
pub struct Subspace {
    cols: Vec<Vec<f64>>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Subspace {
    /// The trajectory subspace of one region's effective dynamics.
    pub fn of(dy: &Dynamics, timing: Timing) -> Subspace {
        Subspace::from_columns(canonical_trajectory(dy, timing))
    }

    /// Orthonormalises `cols` (modified Gram-Schmidt, twice), dropping columns that are
    /// numerically dependent on the earlier ones.
    pub fn from_columns(cols: Vec<Vec<f64>>) -> Subspace {
        let scale = cols.iter().map(|c| dot(c, c).sqrt()).fold(0.0f64, f64::max);
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for mut c in cols {
            for _ in 0..2 {
                for q in &basis {
                    let p = dot(&c, q);
                    for (ci, qi) in c.iter_mut().zip(q) {
                        *ci -= p * qi;
                    }
                }
            }
            let norm = dot(&c, &c).sqrt();
            if scale > 0.0 && norm > 1e-9 * scale {
                for ci in c.iter_mut() {
                    *ci /= norm;
                }
                basis.push(c);
            }
        }
        Subspace { cols: basis }
    }

    pub fn rank(&self) -> usize {
        self.cols.len()
    }

    /// Mean squared canonical correlation with `other`, in [0, 1].
    pub fn overlap(&self, other: &Subspace) -> f64 {
        let k = self.rank().max(other.rank());
        if k == 0 {
            return 0.0;
        }
        let mut s = 0.0;
        for a in &self.cols {
            for b in &other.cols {
                s += dot(a, b).powi(2);
            }
        }
        (s / k as f64).clamp(0.0, 1.0)
    }
}

/// One session as the similarity sees it: its regions (pool indices) and their subspaces.
pub struct SessionSubspaces {
    pub regions: Vec<usize>,
    pub subspaces: Vec<Subspace>,
}

/// The session-similarity matrix `S` (row-major, symmetric, unit diagonal).
pub fn similarity_matrix(sessions: &[SessionSubspaces]) -> Vec<Vec<f64>> {
    let k = sessions.len();
    let mut s = vec![vec![0.0; k]; k];
    for i in 0..k {
        s[i][i] = 1.0;
        for j in 0..i {
            let (a, b) = (&sessions[i], &sessions[j]);
            let mut shared = 0.0;
            let mut union = b.regions.len();
            for (ra, sa) in a.regions.iter().zip(&a.subspaces) {
                match b.regions.iter().position(|rb| rb == ra) {
                    Some(pos) => shared += sa.overlap(&b.subspaces[pos]),
                    None => union += 1,
                }
            }
            let v = if union == 0 {
                0.0
            } else {
                shared / union as f64
            };
            s[i][j] = v;
            s[j][i] = v;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(v: &[f64]) -> Vec<f64> {
        v.to_vec()
    }

    #[test]
    fn overlap_is_invariant_to_a_linear_map_of_the_columns() {
        let a =
            Subspace::from_columns(vec![col(&[1.0, 0.0, 0.0, 1.0]), col(&[0.0, 1.0, 1.0, 0.0])]);
        // Columns mixed by an invertible 2x2 map span the same plane.
        let b = Subspace::from_columns(vec![
            col(&[2.0, 1.0, 1.0, 2.0]),
            col(&[1.0, -3.0, -3.0, 1.0]),
        ]);
        assert!((a.overlap(&b) - 1.0).abs() < 1e-12);
        // An orthogonal plane shares nothing.
        let c = Subspace::from_columns(vec![
            col(&[1.0, 0.0, 0.0, -1.0]),
            col(&[0.0, 1.0, -1.0, 0.0]),
        ]);
        assert!(a.overlap(&c).abs() < 1e-12);
        // A plane sharing one direction: overlap 1/2.
        let e = Subspace::from_columns(vec![
            col(&[1.0, 0.0, 0.0, 1.0]),
            col(&[1.0, 0.0, 0.0, -1.0]),
        ]);
        assert!((a.overlap(&e) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn dependent_columns_are_dropped() {
        let a = Subspace::from_columns(vec![col(&[1.0, 2.0, 3.0]), col(&[2.0, 4.0, 6.0])]);
        assert_eq!(a.rank(), 1);
    }

    #[test]
    fn matrix_weights_by_region_union() {
        let x = || Subspace::from_columns(vec![col(&[1.0, 0.0])]);
        let sessions = vec![
            SessionSubspaces {
                regions: vec![0, 1],
                subspaces: vec![x(), x()],
            },
            SessionSubspaces {
                regions: vec![1, 2],
                subspaces: vec![x(), x()],
            },
            SessionSubspaces {
                regions: vec![3],
                subspaces: vec![x()],
            },
        ];
        let s = similarity_matrix(&sessions);
        // One shared region with overlap 1 out of a union of three.
        assert!((s[0][1] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s[0][1], s[1][0]);
        assert_eq!(s[0][2], 0.0);
        assert_eq!(s[2][2], 1.0);
    }
}

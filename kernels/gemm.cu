// defines: gemm_bf16 (and its vector-load variants gemm_bf16_kk/_kr/_rk/_rr), the same five with
// dropout of operand A (gemm_bf16_da, gemm_bf16_kk_da/_kr_da/_rk_da/_rr_da), the same kernels
// for operands stored as bf16 (suffix _hf: A bf16; _fh: B bf16, with the _da variants; _hh:
// both), gemm_f32
//
// C = epilogue(alpha * A · Bᵀ), batched, with general strides so that one kernel serves every
// product of the model: Linear layers (A = x [M,K], B = W [N,K] in PyTorch layout), their
// backward (dX = dY · W, dW = dYᵀ · X) and the per-head attention products.
//
// Legend: M rows of C, N columns of C, K the summed dimension, Z the batch.
//   A(z, m, k) = a[off_a(z) + m * a_rs + k * a_cs]
//   B(z, n, k) = b[off_b(z) + n * b_rs + k * b_cs]
//   C(z, m, n) = c[off_c(z) + m * c_rs + n * c_cs]
//   off_x(z)   = (z / zdiv) * x_z1 + (z % zdiv) * x_z2   (e.g. z = batch * heads + head)
// Epilogue, per element: v = alpha * acc + bias[n]; c_pre = v; v = act(v);
//   v = dropout(v) (stream drop_stream of sc->seed, counter (z * M + m) * N + n);
//   C = v, or C = R + v with a residual source R (same strides as C: the residual update
//   z' = z + drop(branch) written to another buffer), or C += v when `accumulate` (gradient
//   accumulation).
// With GEMM_DROP_A the dropout applies to A's elements as they are read instead (below).
//
// gemm_bf16: operands rounded to bf16 while staged in shared memory, products on tensor cores
// with `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` (sm_80+), f32 accumulation.
// An operand may be stored as bf16 (the _hf/_fh/_hh kernels) and C may be stored as bf16
// (GEMM_C_BF16, rounded to nearest even): since the operands are rounded to bf16 anyway, a
// product that reads a bf16 copy of an f32 tensor gives the bits of one that reads the tensor.
// gemm_f32: the same contract in plain f32 FMA (the exact mode checked against the CPU); f32
// storage only. Both handle any M, N, K: tile edges load zeros and store nothing.
#include "common.cuh"

// Twin of `GemmParams` in src/cuda/gemm.rs (#[repr(C)]).
struct GemmParams {
    const void* a;       // float, or bf16_t in the _hf/_hh kernels
    const void* b;       // float, or bf16_t in the _fh/_hh kernels
    void* c;             // float, or bf16_t with GEMM_C_BF16
    float* c_pre;        // pre-activation output (null: not stored)
    const float* bias;   // [N] (null: none)
    const StepScalars* sc;  // dropout probability and seed (null: no dropout)
    const float* resid;  // R of C = R + v, with C's strides (null: none)
    long long a_rs, a_cs, b_rs, b_cs, c_rs, c_cs;
    long long a_z1, a_z2, b_z1, b_z2, c_z1, c_z2;
    unsigned long long drop_stream;
    int m, n, k, zdiv;
    float alpha;
    int accumulate;  // 0: C = v; 1: C += v
    int act;         // 0: none; 1: GELU (erf); 2: softsign
    int flags;       // GEMM_NO_LDMATRIX (gemm_bf16 kernels), GEMM_DROP_A (gemm_f32; the
                     // gemm_bf16 kernels take it as their `_da` variants), GEMM_C_BF16
};

// The size is pinned on both sides (src/cuda/gemm.rs asserts it, with the field offsets).
static_assert(sizeof(GemmParams) == 192, "GemmParams layout");

#define ACT_NONE 0
#define ACT_GELU 1
#define ACT_SOFTSIGN 2
#define GEMM_NO_LDMATRIX 2  // load mma fragments with 32-bit shared loads, not ldmatrix
// The dropout of `sc` applies to the elements of A as they are read, not to the result: element
// A(z, row, k) is multiplied by the factor of counter off(z) + row·rs + k·cs, its offset from
// A's base. The attention products read the probabilities this way, so the probabilities after
// dropout are never stored. The gemm_bf16 kernels take it as the `_da` variants.
#define GEMM_DROP_A 4
// C is stored as bf16 (gemm_bf16 kernels, never with `accumulate`); c_pre stays f32.
#define GEMM_C_BF16 8

__device__ __forceinline__ long long gemm_off(int z, int zdiv, long long z1, long long z2) {
    return (long long)(z / zdiv) * z1 + (long long)(z % zdiv) * z2;
}

// Applies the epilogue to one accumulated value and stores it; `c` is C's batch `z` (float, or
// bf16_t with GEMM_C_BF16).
__device__ __forceinline__ void gemm_store(const GemmParams& p, void* c, int z, int m, int n,
                                           float acc, unsigned long long key, float keep_scale,
                                           float drop_p) {
    if (m >= p.m || n >= p.n) return;
    float v = p.alpha * acc;
    if (p.bias) v += p.bias[n];
    long long ci = (long long)m * p.c_rs + (long long)n * p.c_cs;
    long long c_zoff = gemm_off(z, p.zdiv, p.c_z1, p.c_z2);
    if (p.c_pre) p.c_pre[c_zoff + ci] = v;
    if (p.act == ACT_GELU) v = ndt_gelu(v);
    else if (p.act == ACT_SOFTSIGN) v = ndt_softsign(v);
    if (drop_p > 0.0f) {
        unsigned long long idx = ((unsigned long long)z * p.m + m) * p.n + n;
        v *= ndt_drop_factor(key, idx, drop_p, keep_scale);
    }
    if (p.resid) v = p.resid[c_zoff + ci] + v;
    if (p.flags & GEMM_C_BF16) ((bf16_t*)c)[ci] = (bf16_t)ndt_f32_to_bf16(v);
    else if (p.accumulate) ((float*)c)[ci] += v;
    else ((float*)c)[ci] = v;
}

// Four consecutive elements: a 16-byte load of f32 (`p` 16-byte aligned) or an 8-byte load of
// bf16 (`p` 8-byte aligned).
__device__ __forceinline__ void ld_quad(float* r, const float* p) {
    float4 v = ndt_ld_f4(p);
    r[0] = v.x;
    r[1] = v.y;
    r[2] = v.z;
    r[3] = v.w;
}
__device__ __forceinline__ void ld_quad(float* r, const bf16_t* p) {
    uint2 v = ndt_ld_u2(p);
    r[0] = ndt_bf16_to_f32(v.x);
    r[1] = ndt_bf16_to_f32(v.x >> 16);
    r[2] = ndt_bf16_to_f32(v.y);
    r[3] = ndt_bf16_to_f32(v.y >> 16);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel. Block tile 64 x 64 x 32, 4 warps as 2 x 2, each warp 32 x 32 made of
// 2 x 4 mma tiles of 16 x 8. Shared tiles hold bf16 with k contiguous; rows padded by 8 halves
// so that the fragment loads (8 rows x 4 words per warp) hit 32 distinct banks. The next tile
// is fetched into registers while the current one is multiplied.

#define TB_M 64
#define TB_N 64
#define TB_K 32
#define TB_PAD 8
#define TB_THREADS 128
#define TB_LOADS (TB_M * TB_K / TB_THREADS)  // elements of A (and of B) per thread per tile
// Blocks per SM the kernels are built for: three of 128 threads within 64 K registers (at most
// 168 registers a thread; the compile test checks it and that nothing spills).
#define TB_MIN_BLOCKS 3

// Element (row, k) of load `i` of this thread in a tile read one float at a time: with k
// contiguous (k_fast), consecutive threads walk k; otherwise they walk rows, so that global
// reads stay coalesced either way.
__device__ __forceinline__ void scalar_origin(bool k_fast, int i, int& rr, int& kk) {
    int idx = threadIdx.x + i * TB_THREADS;
    rr = k_fast ? idx / TB_K : idx % TB_M;
    kk = k_fast ? idx % TB_K : idx / TB_M;
}

// Fetches the (row0, k0) tile of an operand X(row, k) = x[row * rs + k * cs] (T: float or
// bf16_t) into registers as f32, zero outside rows < rows, k < kdim (element placement:
// scalar_origin).
template <typename T>
__device__ __forceinline__ void tile_fetch(float* r, const T* x, long long rs, long long cs,
                                           int row0, int rows, int k0, int kdim) {
    bool k_fast = (cs == 1);
#pragma unroll
    for (int i = 0; i < TB_LOADS; i++) {
        int rr, kk;
        scalar_origin(k_fast, i, rr, kk);
        int gr = row0 + rr, gk = k0 + kk;
        r[i] = (gr < rows && gk < kdim) ? ld_elem(x + (long long)gr * rs + (long long)gk * cs)
                                        : 0.0f;
    }
}

__device__ __forceinline__ void tile_stash(bf16_t (*s)[TB_K + TB_PAD], const float* r, bool k_fast) {
#pragma unroll
    for (int i = 0; i < TB_LOADS; i++) {
        int rr, kk;
        scalar_origin(k_fast, i, rr, kk);
        s[rr][kk] = (bf16_t)ndt_f32_to_bf16(r[i]);
    }
}

// Vector loads: an operand tile is read four elements at a time (a float4, or four bf16 in 8
// bytes) when four consecutive elements of a row (k contiguous: VEC_K) or of a column (rows
// contiguous: VEC_ROWS) are contiguous and every such quad is aligned to its size for every
// row and batch; otherwise one element at a time (SCALAR). The launcher checks those
// conditions and picks the kernel.
#define FETCH_SCALAR 0
#define FETCH_VEC_K 1
#define FETCH_VEC_ROWS 2
#define TB_VECS (TB_LOADS / 4)  // quads per thread per tile


// Element (row, k) of quad `i` of this thread, and which of the quad's axes varies.
//   VEC_K:    quads are 4 consecutive k of one row; 8 quads per row of 32 k.
//   VEC_ROWS: quads are 4 consecutive rows at one k; 16 quads per k of 64 rows.
__device__ __forceinline__ void quad_origin(int mode, int i, int& rr, int& kk) {
    int q = threadIdx.x + i * TB_THREADS;
    if (mode == FETCH_VEC_K) {
        rr = q / (TB_K / 4);
        kk = (q % (TB_K / 4)) * 4;
    } else {
        rr = (q % (TB_M / 4)) * 4;
        kk = q / (TB_M / 4);
    }
}

// Like tile_fetch, with quad reads (mode VEC_K or VEC_ROWS); a quad that straddles the edge of
// the operand is read one element at a time, zero outside.
template <typename T>
__device__ __forceinline__ void tile_fetch_vec(float* r, const T* x, long long rs,
                                               long long cs, int row0, int rows, int k0,
                                               int kdim, int mode) {
#pragma unroll
    for (int i = 0; i < TB_VECS; i++) {
        int rr, kk;
        quad_origin(mode, i, rr, kk);
        int gr = row0 + rr, gk = k0 + kk;
        const T* src = x + (long long)gr * rs + (long long)gk * cs;
        bool whole = mode == FETCH_VEC_K ? (gr < rows && gk + 3 < kdim)
                                         : (gr + 3 < rows && gk < kdim);
        if (whole) {
            ld_quad(&r[4 * i], src);
        } else {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int er = mode == FETCH_VEC_K ? gr : gr + e;
                int ek = mode == FETCH_VEC_K ? gk + e : gk;
                r[4 * i + e] = (er < rows && ek < kdim)
                                   ? ld_elem(x + (long long)er * rs + (long long)ek * cs)
                                   : 0.0f;
            }
        }
    }
}

__device__ __forceinline__ void tile_stash_vec(bf16_t (*s)[TB_K + TB_PAD], const float* r,
                                               int mode) {
#pragma unroll
    for (int i = 0; i < TB_VECS; i++) {
        int rr, kk;
        quad_origin(mode, i, rr, kk);
        if (mode == FETCH_VEC_K) {
            // Four bf16 of one row: one 8-byte store (row pitch 80 bytes, kk a multiple of 4).
            ndt_st_u2(&s[rr][kk], ndt_pack_bf16x2(r[4 * i], r[4 * i + 1]),
                      ndt_pack_bf16x2(r[4 * i + 2], r[4 * i + 3]));
        } else {
#pragma unroll
            for (int e = 0; e < 4; e++) s[rr + e][kk] = (bf16_t)ndt_f32_to_bf16(r[4 * i + e]);
        }
    }
}

template <typename T>
__device__ __forceinline__ void tile_fetch_any(float* r, const T* x, long long rs,
                                               long long cs, int row0, int rows, int k0,
                                               int kdim, int mode) {
    if (mode == FETCH_SCALAR) tile_fetch(r, x, rs, cs, row0, rows, k0, kdim);
    else tile_fetch_vec(r, x, rs, cs, row0, rows, k0, kdim, mode);
}

__device__ __forceinline__ void tile_stash_any(bf16_t (*s)[TB_K + TB_PAD], const float* r,
                                               int mode, bool k_fast) {
    if (mode == FETCH_SCALAR) tile_stash(s, r, k_fast);
    else tile_stash_vec(s, r, mode);
}

// One factor at a time: inlined, sixteen interleaved hashes would need more registers than
// the kernel has to spare.
__device__ __noinline__ float gemm_drop_factor(unsigned long long key, unsigned long long i,
                                               float p, float keep_scale) {
    return ndt_drop_factor(key, i, p, keep_scale);
}

// Dropout of a fetched tile of A (GEMM_DROP_A): element e of `r` is at (row0 + rr, k0 + kk) with
// (rr, kk) as the fetch of `mode` placed it; `zoff` is the batch's offset from A's base.
__device__ __forceinline__ void tile_drop(float* r, int mode, bool k_fast, int row0, int k0,
                                          long long zoff, long long rs, long long cs,
                                          unsigned long long key, float drop_p, float keep) {
#pragma unroll
    for (int e = 0; e < TB_LOADS; e++) {
        int rr, kk;
        if (mode == FETCH_SCALAR) {
            scalar_origin(k_fast, e, rr, kk);
        } else {
            quad_origin(mode, e / 4, rr, kk);
            if (mode == FETCH_VEC_K) kk += e % 4;
            else rr += e % 4;
        }
        long long at = zoff + (long long)(row0 + rr) * rs + (long long)(k0 + kk) * cs;
        r[e] *= gemm_drop_factor(key, (unsigned long long)at, drop_p, keep);
    }
}

// The block's work for fetch modes AM (operand A) and BM (operand B) and element types TA and
// TB (float or bf16_t), fixed at compile time so that each variant keeps only its own address
// arithmetic live; DA: GEMM_DROP_A.
template <int AM, int BM, bool DA, typename TA, typename TB>
__device__ __forceinline__ void gemm_bf16_tiles(const GemmParams& p, bf16_t (*As)[TB_K + TB_PAD],
                                                bf16_t (*Bs)[TB_K + TB_PAD]) {
    int z = blockIdx.z;
    long long a_zoff = gemm_off(z, p.zdiv, p.a_z1, p.a_z2);
    const TA* a = (const TA*)p.a + a_zoff;
    const TB* b = (const TB*)p.b + gemm_off(z, p.zdiv, p.b_z1, p.b_z2);
    long long c_zoff = gemm_off(z, p.zdiv, p.c_z1, p.c_z2);
    void* c = (p.flags & GEMM_C_BF16) ? (void*)((bf16_t*)p.c + c_zoff)
                                      : (void*)((float*)p.c + c_zoff);
    int m0 = blockIdx.y * TB_M, n0 = blockIdx.x * TB_N;
    // DA: the dropout belongs to A (read before the loop); otherwise to the result (after it).
    float a_drop = DA && p.sc ? p.sc->dropout : 0.0f;
    unsigned long long a_key = a_drop > 0.0f ? ndt_key(p.sc->seed, p.drop_stream) : 0ULL;
    float a_keep = a_drop > 0.0f ? ndt_keep_scale(a_drop) : 1.0f;
    bool drop_a = a_drop > 0.0f;

    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    int g = lane >> 2, t = lane & 3;  // mma group id and thread-in-group

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;

    float ra[TB_LOADS], rb[TB_LOADS];
    bool a_kf = (p.a_cs == 1), b_kf = (p.b_cs == 1);
    const int a_mode = AM, b_mode = BM;
    bool ldsm = !(p.flags & GEMM_NO_LDMATRIX);
    tile_fetch_any(ra, a, p.a_rs, p.a_cs, m0, p.m, 0, p.k, a_mode);
    tile_fetch_any(rb, b, p.b_rs, p.b_cs, n0, p.n, 0, p.k, b_mode);
    if (drop_a) tile_drop(ra, a_mode, a_kf, m0, 0, a_zoff, p.a_rs, p.a_cs, a_key, a_drop, a_keep);
    tile_stash_any(As, ra, a_mode, a_kf);
    tile_stash_any(Bs, rb, b_mode, b_kf);
    __syncthreads();

    for (int k0 = 0; k0 < p.k; k0 += TB_K) {
        bool more = k0 + TB_K < p.k;
        if (more) {
            tile_fetch_any(ra, a, p.a_rs, p.a_cs, m0, p.m, k0 + TB_K, p.k, a_mode);
            tile_fetch_any(rb, b, p.b_rs, p.b_cs, n0, p.n, k0 + TB_K, p.k, b_mode);
        }
#pragma unroll
        for (int kk = 0; kk < TB_K; kk += 16) {
            unsigned int af[2][4], bfr[4][2];
            if (ldsm) {
                // A: the 8x8 blocks (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15)
                // of each 16x16 fragment; B: (n-tile j, k 0-7), (j, 8-15), (j+1, 0-7),
                // (j+1, 8-15) for each pair of n-tiles.
                int lr = lane & 7, lj = lane >> 3;
#pragma unroll
                for (int i = 0; i < 2; i++)
                    ldmatrix_x4(af[i], &As[wm + i * 16 + (lj & 1) * 8 + lr][kk + (lj >> 1) * 8]);
#pragma unroll
                for (int jj = 0; jj < 2; jj++) {
                    unsigned int r4[4];
                    ldmatrix_x4(r4, &Bs[wn + (2 * jj + (lj >> 1)) * 8 + lr][kk + (lj & 1) * 8]);
                    bfr[2 * jj][0] = r4[0];
                    bfr[2 * jj][1] = r4[1];
                    bfr[2 * jj + 1][0] = r4[2];
                    bfr[2 * jj + 1][1] = r4[3];
                }
            } else {
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    int r = wm + i * 16 + g;
                    af[i][0] = ld_pair(&As[r][kk + 2 * t]);
                    af[i][1] = ld_pair(&As[r + 8][kk + 2 * t]);
                    af[i][2] = ld_pair(&As[r][kk + 8 + 2 * t]);
                    af[i][3] = ld_pair(&As[r + 8][kk + 8 + 2 * t]);
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    int nn = wn + j * 8 + g;
                    bfr[j][0] = ld_pair(&Bs[nn][kk + 2 * t]);
                    bfr[j][1] = ld_pair(&Bs[nn][kk + 8 + 2 * t]);
                }
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_bf16_16x8x16(acc[i][j], af[i], bfr[j]);
        }
        __syncthreads();
        if (more) {
            // The dropout of A goes here rather than after the fetch: the fragments are dead
            // by now, which leaves the registers its hashes need.
            if (drop_a)
                tile_drop(ra, a_mode, a_kf, m0, k0 + TB_K, a_zoff, p.a_rs, p.a_cs, a_key, a_drop,
                          a_keep);
            tile_stash_any(As, ra, a_mode, a_kf);
            tile_stash_any(Bs, rb, b_mode, b_kf);
            __syncthreads();
        }
    }

    float drop_p = !DA && p.sc ? p.sc->dropout : 0.0f;
    unsigned long long key = drop_p > 0.0f ? ndt_key(p.sc->seed, p.drop_stream) : 0ULL;
    float keep_scale = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int r = m0 + wm + i * 16 + g;
            int cc = n0 + wn + j * 8 + 2 * t;
            gemm_store(p, c, z, r, cc, acc[i][j][0], key, keep_scale, drop_p);
            gemm_store(p, c, z, r, cc + 1, acc[i][j][1], key, keep_scale, drop_p);
            gemm_store(p, c, z, r + 8, cc, acc[i][j][2], key, keep_scale, drop_p);
            gemm_store(p, c, z, r + 8, cc + 1, acc[i][j][3], key, keep_scale, drop_p);
        }
}

// One kernel per pair of fetch modes (A, B) and element types, chosen by the launcher from the
// operands' strides, alignment and storage (src/cuda/gemm.rs): compiled separately, each keeps
// only its own address arithmetic live (one kernel holding every mode needed 215 registers).
// gemm_bf16 reads both operands one element at a time and takes every layout.
// The `_da` variants apply GEMM_DROP_A (the attention products, whose A is f32).
#define GEMM_BF16_KERNEL(name, AM, BM, DA, TA, TB)                                           \
    extern "C" __global__ void __launch_bounds__(TB_THREADS, TB_MIN_BLOCKS) name(GemmParams p) { \
        __shared__ __align__(16) bf16_t As[TB_M][TB_K + TB_PAD];                            \
        __shared__ __align__(16) bf16_t Bs[TB_N][TB_K + TB_PAD];                            \
        gemm_bf16_tiles<AM, BM, DA, TA, TB>(p, As, Bs);                                     \
    }

// The five fetch-mode pairs of one element-type pair: scalar, kk, kr, rk, rr.
#define GEMM_BF16_MODES(prefix, suffix, DA, TA, TB)                                          \
    GEMM_BF16_KERNEL(prefix##suffix, FETCH_SCALAR, FETCH_SCALAR, DA, TA, TB)                \
    GEMM_BF16_KERNEL(prefix##_kk##suffix, FETCH_VEC_K, FETCH_VEC_K, DA, TA, TB)             \
    GEMM_BF16_KERNEL(prefix##_kr##suffix, FETCH_VEC_K, FETCH_VEC_ROWS, DA, TA, TB)          \
    GEMM_BF16_KERNEL(prefix##_rk##suffix, FETCH_VEC_ROWS, FETCH_VEC_K, DA, TA, TB)          \
    GEMM_BF16_KERNEL(prefix##_rr##suffix, FETCH_VEC_ROWS, FETCH_VEC_ROWS, DA, TA, TB)

GEMM_BF16_MODES(gemm_bf16, , false, float, float)
GEMM_BF16_MODES(gemm_bf16, _da, true, float, float)
GEMM_BF16_MODES(gemm_bf16, _hf, false, bf16_t, float)
GEMM_BF16_MODES(gemm_bf16, _fh, false, float, bf16_t)
GEMM_BF16_MODES(gemm_bf16, _fh_da, true, float, bf16_t)
GEMM_BF16_MODES(gemm_bf16, _hh, false, bf16_t, bf16_t)

// ---------------------------------------------------------------------------------------------
// f32 SIMT kernel. Block tile 64 x 64 x 16, 256 threads as 16 x 16, each thread 4 x 4 outputs
// at rows ty + 16 i and columns tx + 16 j (consecutive lanes read consecutive shared words).
// Shared tiles are stored k-major so that the inner product reads rows of them.

#define TF_M 64
#define TF_N 64
#define TF_K 16
#define TF_THREADS 256
#define TF_LOADS (TF_M * TF_K / TF_THREADS)

// `drop_p` > 0: each element is multiplied by its dropout factor (GEMM_DROP_A), the counter
// being its offset `zoff + row·rs + k·cs` from the operand's base.
__device__ __forceinline__ void tile_load_f32(float (*s)[TF_M + 4], const float* x, long long rs,
                                              long long cs, int row0, int rows, int k0, int kdim,
                                              long long zoff, unsigned long long key,
                                              float drop_p, float keep) {
    bool k_fast = (cs == 1);
#pragma unroll
    for (int i = 0; i < TF_LOADS; i++) {
        int idx = threadIdx.x + i * TF_THREADS;
        int rr = k_fast ? idx / TF_K : idx % TF_M;
        int kk = k_fast ? idx % TF_K : idx / TF_M;
        int gr = row0 + rr, gk = k0 + kk;
        long long at = (long long)gr * rs + (long long)gk * cs;
        float v = (gr < rows && gk < kdim) ? x[at] : 0.0f;
        if (drop_p > 0.0f) v *= ndt_drop_factor(key, (unsigned long long)(zoff + at), drop_p, keep);
        s[kk][rr] = v;
    }
}

extern "C" __global__ void __launch_bounds__(TF_THREADS) gemm_f32(GemmParams p) {
    __shared__ float As[TF_K][TF_M + 4];
    __shared__ float Bs[TF_K][TF_N + 4];

    int z = blockIdx.z;
    long long a_zoff = gemm_off(z, p.zdiv, p.a_z1, p.a_z2);
    const float* a = (const float*)p.a + a_zoff;
    const float* b = (const float*)p.b + gemm_off(z, p.zdiv, p.b_z1, p.b_z2);
    float* c = (float*)p.c + gemm_off(z, p.zdiv, p.c_z1, p.c_z2);
    int m0 = blockIdx.y * TF_M, n0 = blockIdx.x * TF_N;
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    float drop_p = p.sc ? p.sc->dropout : 0.0f;
    unsigned long long key = drop_p > 0.0f ? ndt_key(p.sc->seed, p.drop_stream) : 0ULL;
    float keep_scale = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
    // With GEMM_DROP_A the dropout belongs to A; the result gets none.
    float drop_a = (p.flags & GEMM_DROP_A) ? drop_p : 0.0f;
    if (p.flags & GEMM_DROP_A) drop_p = 0.0f;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < p.k; k0 += TF_K) {
        tile_load_f32(As, a, p.a_rs, p.a_cs, m0, p.m, k0, p.k, a_zoff, key, drop_a, keep_scale);
        tile_load_f32(Bs, b, p.b_rs, p.b_cs, n0, p.n, k0, p.k, 0, 0ULL, 0.0f, 1.0f);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TF_K; kk++) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            gemm_store(p, c, z, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j], key, keep_scale,
                       drop_p);
}

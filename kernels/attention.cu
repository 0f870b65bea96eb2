// defines: attention_softmax_forward, attention_softmax_backward, attention_fused_f,
//          attention_fused_h
//
// Multi-head self-attention around the GEMMs of gemm.cu (launch order in src/cuda/attention.rs):
//   scores = q·kᵀ / √hd          (batched GEMM over B·H, alpha = 1/√hd)
//   att    = softmax(scores)      (this file; causal: only j <= i, the rest 0)
//   y_h    = dropout(att) · v_h   (batched GEMM; the dropout, stream 1 + 3l, counter = flat
//                                  index in [B,H,S,S], is applied as the GEMM reads att, so
//                                  the probabilities after dropout are never stored)
// and the backward in reverse. In bf16 precision the three forward steps are one kernel,
// attention_fused_* (below), which keeps the scores in registers and gives the same bits.
// Legend: B batch, H heads, S sequence (T + 2), hd = D / H, rows = B·H·S.
#include "common.cuh"

#define SM_WARPS 8

// att: [rows, S] scores in, probabilities out; causal per `sc`. Four lanes per row (8 rows per
// warp): lane t of a row takes the column pairs 8n + 2t, 8n + 2t + 1, n ascending, and the four
// partial sums add as (s0 + s1) + (s2 + s3). That is the order in which attention_fused_* holds
// a row in its mma accumulators, so both give the same bits. grid ceil(rows / 64), block 256.
extern "C" __global__ void attention_softmax_forward(float* att, int rows, int s,
                                                     const StepScalars* sc) {
    int lane = threadIdx.x & 31, t = lane & 3;
    int row = (blockIdx.x * SM_WARPS + (threadIdx.x >> 5)) * 8 + (lane >> 2);
    bool live = row < rows;  // a lane past the end still takes part in the shuffles
    int i = row % s;
    int len = !live ? 0 : sc->causal ? i + 1 : s;
    float* p = att + (long long)(live ? row : 0) * s;
    float mx = -ndt_inf();
    for (int j0 = 2 * t; j0 < len; j0 += 8) {
        mx = fmaxf(mx, p[j0]);
        if (j0 + 1 < len) mx = fmaxf(mx, p[j0 + 1]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    float sum = 0.0f;
    for (int j0 = 2 * t; j0 < len; j0 += 8) {
        for (int j = j0; j < j0 + 2 && j < len; j++) {
            float e = expf(p[j] - mx);
            p[j] = e;
            sum += e;
        }
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    float inv = 1.0f / sum;
    if (!live) return;
    for (int j0 = 2 * t; j0 < s; j0 += 8) {
        for (int j = j0; j < j0 + 2 && j < s; j++) p[j] = j < len ? p[j] * inv : 0.0f;
    }
}

// backward of att = softmax(scores · scale) and attd = dropout(att), in place on datt:
// in: datt = d attd; out: datt = d scores (scale folded in):
//   g_j = datt_j * factor_j;  ds_j = att_j * (g_j - Σ_k att_k g_k) * scale.
// datt, att: [rows, S]. grid ceil(rows / 8), block 256.
extern "C" __global__ void attention_softmax_backward(float* datt, const float* att, int rows,
                                                      int s, float scale, const StepScalars* sc,
                                                      unsigned long long stream) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * SM_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    float* g = datt + (long long)row * s;
    const float* p = att + (long long)row * s;
    float drop_p = sc->dropout;
    unsigned long long key = drop_p > 0.0f ? ndt_key(sc->seed, stream) : 0ULL;
    float keep = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
    unsigned long long base = (unsigned long long)row * s;
    float dot = 0.0f;
    for (int j = lane; j < s; j += 32) {
        float gj = g[j] * ndt_drop_factor(key, base + j, drop_p, keep);
        g[j] = gj;
        dot += gj * p[j];
    }
    dot = ndt_warp_sum(dot);
    for (int j = lane; j < s; j += 32) g[j] = p[j] * (g[j] - dot) * scale;
}

// ---------------------------------------------------------------------------------------------
// Fused forward, bf16 precision: scores, softmax and y = drop(att)·v in one kernel. One block of
// 4 warps per (64 query rows, head z); each warp owns 16 rows. K (as [j][dim]) and V (as
// [dim][j]) of the head are staged once in shared memory as bf16; a warp's scores stay in its
// mma accumulators, the softmax runs on them there, and they become the A fragments of the
// product with V (an accumulator tile of m16n8 is laid out as half an A fragment of m16n8k16).
// `att` (may be null) receives the probabilities before dropout; `y` (may be null: only att
// is wanted) the output. The arithmetic is the unfused path's, in its order, so the bits are
// the same:
//   - scores: hd summed in chunks of 16, ascending, zero-padded to a multiple of 32 (the GEMM's
//     k tile), then scale · acc rounded (__fmul_rn) as gemm_store's alpha · acc is;
//   - softmax: attention_softmax_forward's order (above);
//   - y: j summed in chunks of 16, ascending, up to S rounded up to 32; each probability times
//     its dropout factor (counter z·S·S + i·S + j, the flat index GEMM_DROP_A uses for att)
//     and rounded to bf16, as the GEMM stages it.
// Limits (the launcher falls back to the unfused path outside them): S <= ATT_MAX_S,
// hd <= ATT_MAX_HD, hd % 8 == 0. grid (ceil(S / 64), B·H), block 128.
#define ATT_MAX_S 160
#define ATT_MAX_HD 64
#define ATT_ROWS 64
#define ATT_PAD 8  // halves per shared row: fragment loads of 8 rows x 4 words hit 32 banks

// The bf16 pair (row i, columns c, c + 1) of an [S, hd] head with row stride rs; 0 outside.
template <typename T>
__device__ __forceinline__ unsigned int att_pair(const T* x, long long rs, int i, int c, int s,
                                                 int hd) {
    if (i >= s || c >= hd) return 0u;
    const T* e = x + (long long)i * rs + c;
    return ndt_pack_bf16x2(ld_elem(e), ld_elem(e + 1));
}

__device__ __forceinline__ void att_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void att_store(bf16_t* p, float v) {
    *p = (bf16_t)ndt_f32_to_bf16(v);
}

template <typename T>
__device__ __forceinline__ void attention_fused(const T* qkv, T* y, float* att, int s, int d,
                                                int nh, float scale, const StepScalars* sc,
                                                unsigned long long stream, int dropout) {
    __shared__ bf16_t ks[ATT_MAX_S][ATT_MAX_HD + ATT_PAD];  // K: [j][dim]
    __shared__ bf16_t vt[ATT_MAX_HD][ATT_MAX_S + ATT_PAD];  // V transposed: [dim][j]
    int z = blockIdx.y, hd = d / nh;
    int hdp = (hd + 31) & ~31, sp = (s + 31) & ~31;
    long long rs = 3LL * d;
    const T* q = qkv + (long long)(z / nh) * s * rs + (long long)(z % nh) * hd;
    const T* k = q + d;
    const T* v = q + 2 * d;
    for (int e = threadIdx.x; e < sp * hdp; e += blockDim.x) {
        int j = e / hdp, c = e % hdp;
        bool in = j < s && c < hd;
        ks[j][c] = in ? (bf16_t)ndt_f32_to_bf16(ld_elem(k + j * rs + c)) : (bf16_t)0;
        if (y && c < hd) vt[c][j] = in ? (bf16_t)ndt_f32_to_bf16(ld_elem(v + j * rs + c)) : (bf16_t)0;
    }
    __syncthreads();
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int row0 = blockIdx.x * ATT_ROWS + (threadIdx.x >> 5) * 16;
    if (row0 >= s) return;  // no barrier follows
    int i0 = row0 + g, i1 = i0 + 8;

    // scores of rows i0 (acc[n][0..1]) and i1 (acc[n][2..3]), columns 8n + 2t, 8n + 2t + 1
    unsigned int qa[ATT_MAX_HD / 16][4];
#pragma unroll
    for (int kc = 0; kc < ATT_MAX_HD / 16; kc++) {
        int c = 16 * kc + 2 * t;
        qa[kc][0] = att_pair(q, rs, i0, c, s, hd);
        qa[kc][1] = att_pair(q, rs, i1, c, s, hd);
        qa[kc][2] = att_pair(q, rs, i0, c + 8, s, hd);
        qa[kc][3] = att_pair(q, rs, i1, c + 8, s, hd);
    }
    float acc[ATT_MAX_S / 8][4];
#pragma unroll
    for (int n = 0; n < ATT_MAX_S / 8; n++) {
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
        if (8 * n >= s) continue;
#pragma unroll
        for (int kc = 0; kc < ATT_MAX_HD / 16; kc++) {
            if (16 * kc >= hdp) continue;
            unsigned int b[2] = {ld_pair(&ks[8 * n + g][16 * kc + 2 * t]),
                                 ld_pair(&ks[8 * n + g][16 * kc + 2 * t + 8])};
            mma_bf16_16x8x16(acc[n], qa[kc], b);
        }
    }

    // softmax of both rows; a row past S has len 0 and comes out all zero
    int len0 = i0 >= s ? 0 : sc->causal ? i0 + 1 : s;
    int len1 = i1 >= s ? 0 : sc->causal ? i1 + 1 : s;
    float mx0 = -ndt_inf(), mx1 = -ndt_inf();
#pragma unroll
    for (int n = 0; n < ATT_MAX_S / 8; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int j = 8 * n + 2 * t + e;
            // rounded here as the GEMM's epilogue rounds alpha · acc before storing it: never
            // contracted with the subtraction of the max below
            acc[n][e] = __fmul_rn(scale, acc[n][e]);
            acc[n][2 + e] = __fmul_rn(scale, acc[n][2 + e]);
            if (j < len0) mx0 = fmaxf(mx0, acc[n][e]);
            if (j < len1) mx1 = fmaxf(mx1, acc[n][2 + e]);
        }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int n = 0; n < ATT_MAX_S / 8; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int j = 8 * n + 2 * t + e;
            if (j < len0) {
                acc[n][e] = expf(acc[n][e] - mx0);
                sum0 += acc[n][e];
            }
            if (j < len1) {
                acc[n][2 + e] = expf(acc[n][2 + e] - mx1);
                sum1 += acc[n][2 + e];
            }
        }
    }
    sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);
    sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);
    sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);
    sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);
    float inv0 = 1.0f / sum0, inv1 = 1.0f / sum1;
    float* att0 = att + ((long long)z * s + i0) * s;
    float* att1 = att + ((long long)z * s + i1) * s;
#pragma unroll
    for (int n = 0; n < ATT_MAX_S / 8; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int j = 8 * n + 2 * t + e;
            acc[n][e] = j < len0 ? acc[n][e] * inv0 : 0.0f;
            acc[n][2 + e] = j < len1 ? acc[n][2 + e] * inv1 : 0.0f;
            if (att && j < s) {
                if (i0 < s) att0[j] = acc[n][e];
                if (i1 < s) att1[j] = acc[n][2 + e];
            }
        }
    }
    if (!y) return;

    // y = drop(att) · v: the accumulators of columns 16c .. 16c + 15 are the A fragment of
    // chunk c (rows i0, i1; columns 2t, 2t + 1 of each half)
    float drop_p = dropout ? sc->dropout : 0.0f;
    unsigned long long key = drop_p > 0.0f ? ndt_key(sc->seed, stream) : 0ULL;
    float keep = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
    unsigned long long base0 = ((unsigned long long)z * s + i0) * s;
    unsigned long long base1 = ((unsigned long long)z * s + i1) * s;
    float ya[ATT_MAX_HD / 8][4];
#pragma unroll
    for (int n = 0; n < ATT_MAX_HD / 8; n++) ya[n][0] = ya[n][1] = ya[n][2] = ya[n][3] = 0.0f;
#pragma unroll
    for (int c = 0; c < ATT_MAX_S / 16; c++) {
        if (16 * c >= sp) continue;
        float* lo = acc[2 * c];
        float* hi = acc[2 * c + 1];
        if (drop_p > 0.0f) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int j = 16 * c + 2 * t + e;
                if (i0 < s && j < s) lo[e] *= ndt_drop_factor(key, base0 + j, drop_p, keep);
                if (i1 < s && j < s) lo[2 + e] *= ndt_drop_factor(key, base1 + j, drop_p, keep);
                if (i0 < s && j + 8 < s)
                    hi[e] *= ndt_drop_factor(key, base0 + j + 8, drop_p, keep);
                if (i1 < s && j + 8 < s)
                    hi[2 + e] *= ndt_drop_factor(key, base1 + j + 8, drop_p, keep);
            }
        }
        unsigned int a[4] = {ndt_pack_bf16x2(lo[0], lo[1]), ndt_pack_bf16x2(lo[2], lo[3]),
                             ndt_pack_bf16x2(hi[0], hi[1]), ndt_pack_bf16x2(hi[2], hi[3])};
#pragma unroll
        for (int n = 0; n < ATT_MAX_HD / 8; n++) {
            if (8 * n >= hd) continue;
            unsigned int b[2] = {ld_pair(&vt[8 * n + g][16 * c + 2 * t]),
                                 ld_pair(&vt[8 * n + g][16 * c + 2 * t + 8])};
            mma_bf16_16x8x16(ya[n], a, b);
        }
    }
    T* y0 = y + ((long long)(z / nh) * s + i0) * d + (long long)(z % nh) * hd;
    T* y1 = y0 + 8LL * d;
#pragma unroll
    for (int n = 0; n < ATT_MAX_HD / 8; n++) {
        if (8 * n >= hd) continue;
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int c = 8 * n + 2 * t + e;
            if (i0 < s) att_store(y0 + c, ya[n][e]);
            if (i1 < s) att_store(y1 + c, ya[n][2 + e]);
        }
    }
}

// qkv: [B, S, 3D] as f32 (_f) or bf16 (_h); y: [B, S, D] of the same type (or null); att:
// [B, H, S, S] f32 (or null).
extern "C" __global__ void __launch_bounds__(128) attention_fused_f(
    const float* qkv, float* y, float* att, int s, int d, int nh, float scale,
    const StepScalars* sc, unsigned long long stream, int dropout) {
    attention_fused(qkv, y, att, s, d, nh, scale, sc, stream, dropout);
}
extern "C" __global__ void __launch_bounds__(128) attention_fused_h(
    const bf16_t* qkv, bf16_t* y, float* att, int s, int d, int nh, float scale,
    const StepScalars* sc, unsigned long long stream, int dropout) {
    attention_fused(qkv, y, att, s, d, nh, scale, sc, stream, dropout);
}

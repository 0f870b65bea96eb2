// defines: attention_softmax_forward, attention_softmax_backward
//
// Multi-head self-attention around the GEMMs of gemm.cu (launch order in src/cuda/attention.rs):
//   scores = q·kᵀ / √hd          (batched GEMM over B·H, alpha = 1/√hd)
//   att    = softmax(scores)      (this file; causal: only j <= i, the rest 0)
//   y_h    = dropout(att) · v_h   (batched GEMM; the dropout, stream 1 + 3l, counter = flat
//                                  index in [B,H,S,S], is applied as the GEMM reads att, so
//                                  the probabilities after dropout are never stored)
// and the backward in reverse. Legend: B batch, H heads, S sequence (T + 2), rows = B·H·S.
// One warp per row of S scores; the row is swept from global memory (S is about 150).
#include "common.cuh"

#define SM_WARPS 8

// att: [rows, S] scores in, probabilities out; causal per `sc`. grid ceil(rows / 8), block 256.
extern "C" __global__ void attention_softmax_forward(float* att, int rows, int s,
                                                     const StepScalars* sc) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * SM_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    int i = row % s;
    int len = sc->causal ? i + 1 : s;
    float* p = att + (long long)row * s;
    float mx = -ndt_inf();
    for (int j = lane; j < len; j += 32) mx = fmaxf(mx, p[j]);
    mx = ndt_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < len; j += 32) {
        float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / ndt_warp_sum(sum);
    for (int j = lane; j < s; j += 32) p[j] = j < len ? p[j] * inv : 0.0f;
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

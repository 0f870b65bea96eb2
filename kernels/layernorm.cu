// defines: layernorm_forward_f32, layernorm_affine_f32, layernorm_backward_f32,
//          layernorm_param_partial, layernorm_param_final
//
// LayerNorm over the last axis. Legend: R rows (tokens), C channels. One warp per row; the
// statistics are two-pass (mean, then the centred variance). The forward saves the normalised
// input x̂ and rstd, which is all the backward reads: the input itself need not be kept, and
// the output x̂ * w + b can be rebuilt bit for bit from x̂ (layernorm_affine_f32) where a later
// product needs it again. The residual gradient is fused: the backward adds into dinp, which
// is the gradient of the residual stream.
// Parameter gradients are deterministic column sums in two passes (partial rows per chunk of
// rows, then one thread per column adding the chunks in order).
#include "common.cuh"

#define LN_WARPS 8

// out[r, :] = x̂[r, :] * w + b, x̂ = (inp[r, :] - mean) * rstd, rstd = 1 / sqrt(var + eps),
// biased var. out, inp, xhat: [R, C]; rstd: [R]; xhat and rstd are saved for the backward
// (either may be null); w, b: [C]. grid ceil(R / 8), block 256.
extern "C" __global__ void layernorm_forward_f32(float* out, float* xhat, float* rstd,
                                                 const float* inp, const float* w,
                                                 const float* b, int rows, int c, float eps) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* x = inp + (long long)row * c;
    float* o = out + (long long)row * c;
    float s = 0.0f;
    for (int j = lane; j < c; j += 32) s += x[j];
    float m = ndt_warp_sum(s) / (float)c;
    float v = 0.0f;
    for (int j = lane; j < c; j += 32) {
        float d = x[j] - m;
        v += d * d;
    }
    v = ndt_warp_sum(v) / (float)c;
    float rs = 1.0f / sqrtf(v + eps);
    float* xh = xhat ? xhat + (long long)row * c : nullptr;
    for (int j = lane; j < c; j += 32) {
        float n = (x[j] - m) * rs;
        if (xh) xh[j] = n;
        o[j] = fmaf(n, w[j], b[j]);
    }
    if (lane == 0 && rstd) rstd[row] = rs;
}

// out[r, c] = x̂[r, c] * w[c] + b[c], the forward's output rebuilt from its saved x̂ (the same
// fmaf, so the same bits). out, xhat: [R, C]. grid-stride over R * C.
extern "C" __global__ void layernorm_affine_f32(float* out, const float* xhat, const float* w,
                                                const float* b, long long n, int c) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        int j = (int)(i % c);
        out[i] = fmaf(xhat[i], w[j], b[j]);
    }
}

// backward of out = x̂ * w + b, x̂ = (inp - mean) * rstd, for the input:
// dinp += rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂ * x̂)), dx̂ = dout * w.
// dinp, dout, xhat: [R, C]; w: [C]; rstd: [R]. grid ceil(R / 8), block 256.
extern "C" __global__ void layernorm_backward_f32(float* dinp, const float* dout,
                                                  const float* xhat, const float* w,
                                                  const float* rstd, int rows, int c) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* g = dout + (long long)row * c;
    const float* xh = xhat + (long long)row * c;
    float* dx = dinp + (long long)row * c;
    float rs = rstd[row];
    float sum_d = 0.0f, sum_dx = 0.0f;
    for (int j = lane; j < c; j += 32) {
        float dxh = g[j] * w[j];
        sum_d += dxh;
        sum_dx += dxh * xh[j];
    }
    float mean_d = ndt_warp_sum(sum_d) / (float)c;
    float mean_dx = ndt_warp_sum(sum_dx) / (float)c;
    for (int j = lane; j < c; j += 32) dx[j] += rs * (g[j] * w[j] - mean_d - xh[j] * mean_dx);
}

// Partial parameter gradients of one chunk of rows:
// pw[chunk, c] = Σ_r dout[r, c] * x̂[r, c], pb[chunk, c] = Σ_r dout[r, c].
// grid (ceil(C / 32), chunks), block (32, 8).
extern "C" __global__ void layernorm_param_partial(float* pw, float* pb, const float* dout,
                                                   const float* xhat, int rows, int c,
                                                   int rows_per_chunk) {
    __shared__ float aw[8][33];
    __shared__ float ab[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(rows, r0 + rows_per_chunk);
    float sw = 0.0f, sb = 0.0f;
    if (col < c)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            long long i = (long long)r * c + col;
            float g = dout[i];
            sw += g * xhat[i];
            sb += g;
        }
    aw[threadIdx.y][threadIdx.x] = sw;
    ab[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && col < c) {
        float tw = 0.0f, tb = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            tw += aw[i][threadIdx.x];
            tb += ab[i][threadIdx.x];
        }
        pw[(long long)blockIdx.y * c + col] = tw;
        pb[(long long)blockIdx.y * c + col] = tb;
    }
}

// dw[c] (+)= Σ_chunk pw[chunk, c]; db[c] (+)= Σ_chunk pb[chunk, c].
extern "C" __global__ void layernorm_param_final(float* dw, float* db, const float* pw,
                                                 const float* pb, int chunks, int c,
                                                 int accumulate) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    float tw = 0.0f, tb = 0.0f;
    for (int i = 0; i < chunks; i++) {
        tw += pw[(long long)i * c + col];
        tb += pb[(long long)i * c + col];
    }
    // A null dw or db (a frozen tensor's) is not written.
    if (dw) dw[col] = accumulate ? dw[col] + tw : tw;
    if (db) db[col] = accumulate ? db[col] + tb : tb;
}

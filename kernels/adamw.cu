// defines: grad_sumsq_partial, grad_norm_final, adamw_update
//
// Global grad-norm clipping as torch.nn.utils.clip_grad_norm_ and one AdamW step as
// torch.optim.AdamW (single-tensor path), over the flat parameter vector, frozen elements
// (trainable = 0) neither counted nor touched. The update is written with explicitly rounded
// operations (no fused multiply-add) in the order of the CPU reference (src/cpu/adamw.rs), so
// both compute the same bits from the same inputs:
//   g = g * coef;  p = p * decay;  m = lerp(m, g, 1 - β1);  v = v * β2 + (1 - β2) * g * g;
//   p = p + step_size * m / (sqrt(v) / bc2_sqrt + eps)
#include "common.cuh"

// partial[block] = Σ g² over trainable elements of this block's grid-stride share, in f64.
// g, trainable: [n]. grid fixed by the launcher, block 256.
extern "C" __global__ void grad_sumsq_partial(double* partial, const float* g,
                                              const unsigned char* trainable, long long n) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        if (trainable[i]) {
            double v = (double)g[i];
            acc += v * v;
        }
    acc = ndt_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// res->grad_sumsq, grad_norm, clip_coef = min(1, clip / (norm + 1e-6)) (1 when clip <= 0),
// update = loss and norm finite. One block of 256 threads.
extern "C" __global__ void grad_norm_final(StepResult* res, const double* partial, int nparts,
                                           const StepScalars* sc) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += partial[i];
    acc = ndt_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) {
        float norm = (float)sqrt(acc);
        float coef = 1.0f;
        if (sc->clip > 0.0f) coef = fminf((float)((double)sc->clip / ((double)norm + 1e-6)), 1.0f);
        res->grad_sumsq = acc;
        res->grad_norm = norm;
        res->clip_coef = coef;
        double loss = res->loss;
        bool finite = (loss == loss) && fabs(loss) < 1e308 && (norm == norm) && norm < ndt_inf();
        res->update = finite ? 1 : 0;
    }
}

// torch.lerp(a, b, w) in f32, the two-sided form exact at w = 0 and w = 1.
__device__ __forceinline__ float adamw_lerp(float a, float b, float w) {
    if (fabsf(w) < 0.5f) return __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)));
    return __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), __fsub_rn(1.0f, w)));
}

// One AdamW step on the trainable elements, skipped entirely when res->update == 0.
// params, m, v, g, trainable: [n].
extern "C" __global__ void adamw_update(float* params, float* m, float* v, const float* g,
                                        const unsigned char* trainable, long long n,
                                        const StepScalars* sc, const StepResult* res) {
    if (!res->update) return;
    float coef = res->clip_coef;
    float decay = sc->decay, w = sc->one_m_beta1, b2 = sc->beta2, omb2 = sc->one_m_beta2;
    float step = sc->step_size, bc2 = sc->bc2_sqrt, eps = sc->eps;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        if (!trainable[i]) continue;
        float gi = __fmul_rn(g[i], coef);
        float p = __fmul_rn(params[i], decay);
        float mi = adamw_lerp(m[i], gi, w);
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(omb2, gi), gi));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2), eps);
        p = __fadd_rn(p, __fdiv_rn(__fmul_rn(step, mi), denom));
        params[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

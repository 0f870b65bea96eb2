// defines: poisson_forward_partial, poisson_forward_final, poisson_backward_f32
//
// Poisson NLL on the target entries (SPEC §2 step 7), without the log-factorial term:
//   loss = Σ_target (exp(r) - x * r) / |target|.
// The sum is deterministic: f64 per block over a fixed grid, then one block adds the blocks
// in order. |target| is known on the host: sc->inv_targets = 1 / |target|.
#include "common.cuh"

#define PN_THREADS 256

// partial[block] = Σ over this block's grid-stride share of target * (exp(r) - x * r), in f64.
// r, x, target: [n]. grid fixed by the launcher (the partial count), block 256.
extern "C" __global__ void poisson_forward_partial(double* partial, const float* r,
                                                   const float* x, const unsigned char* target,
                                                   int n) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        if (target[i]) {
            // exp in f32 where it cannot overflow, in f64 beyond (as the CPU's f64 sum).
            float ri = r[i];
            double e = ri < 80.0f ? (double)expf(ri) : exp((double)ri);
            acc += e - (double)x[i] * (double)ri;
        }
    acc = ndt_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// res->loss = Σ partial * inv_targets (NaN when there is no target: inv_targets == 0).
// One block of 256 threads.
extern "C" __global__ void poisson_forward_final(StepResult* res, const double* partial,
                                                 int nparts, const StepScalars* sc) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += partial[i];
    acc = ndt_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0)
        res->loss = sc->inv_targets > 0.0f ? acc * (double)sc->inv_targets
                                            : __longlong_as_double(0x7ff8000000000000LL);
}

// backward: dr = target ? (exp(r) - x) * inv_targets : 0. dr, r, x, target: [n].
extern "C" __global__ void poisson_backward_f32(float* dr, const float* r, const float* x,
                                                const unsigned char* target, int n,
                                                const StepScalars* sc) {
    float inv = sc->inv_targets;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        dr[i] = target[i] ? (expf(r[i]) - x[i]) * inv : 0.0f;
}

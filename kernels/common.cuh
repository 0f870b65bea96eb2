// defines: StepScalars, bf16 conversions and operand loads, the mma.sync and ldmatrix wrappers,
//          warp/block reductions, GELU, softsign, dropout keep
//
// Shared by every kernel file. No CUDA or C++ standard header is used: NVRTC provides the
// device intrinsics (__shfl_xor_sync, erff, expf, …) itself, and bf16 values are raw 16-bit
// patterns converted with bit operations (round to nearest even, as the CPU twin does).
#pragma once
#include "rng.cuh"

// Per-step values read by the kernels of a captured training step (a CUDA graph replays fixed
// launch arguments, so whatever changes from step to step lives here, in device memory).
// Twin of `StepScalars` in src/cuda/mod.rs (#[repr(C)]).
struct StepScalars {
    unsigned long long seed;  // dropout RNG seed of this step
    float dropout;            // dropout probability (0 = off)
    float clip;               // global grad-norm clip (<= 0: off)
    float inv_targets;        // 1 / |target| (0 when there is no target)
    // AdamW, computed on the host in f64 and rounded to f32 as the CPU reference does:
    float decay;              // 1 - lr * weight_decay
    float one_m_beta1;        // lerp weight of the first moment, 1 - beta1
    float beta2;
    float one_m_beta2;        // 1 - beta2
    float step_size;          // -lr / (1 - beta1^t)
    float bc2_sqrt;           // sqrt(1 - beta2^t)
    float eps;
    int scheme;               // masking scheme: row of mask_tokens
    int causal;               // 1: causal attention
};

static_assert(sizeof(StepScalars) == 56, "StepScalars layout");

// What a training step reports back (read by the host after the step).
// Twin of `StepResult` in src/cuda/mod.rs (#[repr(C)]).
struct StepResult {
    double loss;        // Poisson NLL, mean over the targets
    double grad_sumsq;  // sum of squared gradients over the trainable elements
    float grad_norm;    // its square root
    float clip_coef;    // factor applied to the gradients before AdamW
    int update;         // 1 when loss and norm are finite and AdamW ran
    int pad_;
};

static_assert(sizeof(StepResult) == 32, "StepResult layout");

// A 16-byte load of four floats (`p` 16-byte aligned), an 8-byte load and an 8-byte store of
// two words (`p` 8-byte aligned). Helpers rather than casts at the call sites so that the
// kernel emulator can check the alignment the GPU requires.
#ifndef NDT_EMU
__device__ __forceinline__ float4 ndt_ld_f4(const float* p) {
    return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ uint2 ndt_ld_u2(const void* p) {
    return *reinterpret_cast<const uint2*>(p);
}
__device__ __forceinline__ void ndt_st_u2(void* p, unsigned int lo, unsigned int hi) {
    *reinterpret_cast<uint2*>(p) = make_uint2(lo, hi);
}
#endif

// +infinity without a header.
__device__ __forceinline__ float ndt_inf() { return __int_as_float(0x7f800000); }

typedef unsigned short bf16_t;

// f32 -> bf16 bits, round to nearest even; NaN stays NaN.
__device__ __forceinline__ unsigned int ndt_f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

// Two floats as a packed pair of bf16: `lo` in the low half (the lower index), `hi` above.
__device__ __forceinline__ unsigned int ndt_pack_bf16x2(float lo, float hi) {
    return ndt_f32_to_bf16(lo) | (ndt_f32_to_bf16(hi) << 16);
}

__device__ __forceinline__ float ndt_bf16_to_f32(unsigned int h) {
    return __uint_as_float((h & 0xffffu) << 16);
}

// An operand element as f32: an f32 one as it is, a bf16 one widened (exactly).
__device__ __forceinline__ float ld_elem(const float* p) { return *p; }
__device__ __forceinline__ float ld_elem(const bf16_t* p) { return ndt_bf16_to_f32(*p); }

__device__ __forceinline__ void mma_bf16_16x8x16(float* d, const unsigned int* a,
                                                 const unsigned int* b) {
#ifdef NDT_EMU
    NDT_EMU_MMA_M16N8K16(d, a, b);  // the CPU kernel emulator (kernels/emu.h)
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Four 8x8 bf16 matrices from shared memory, one 32-bit register of each per lane: lane 8j + i
// gives the address of row i of matrix j (16 bytes, 16-byte aligned), and lane l receives the
// word (row l / 4, word l % 4) of matrix j in r[j] -- the mma.sync fragment of that 8x8 block.
__device__ __forceinline__ void ldmatrix_x4(unsigned int* r, const bf16_t* row) {
#ifdef NDT_EMU
    NDT_EMU_LDMATRIX_X4(r, row);  // the CPU kernel emulator (kernels/emu.h)
#else
    unsigned int addr = (unsigned int)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
#endif
}

// Two consecutive bf16 of a shared row as one 32-bit register (lower index in the low half).
__device__ __forceinline__ unsigned int ld_pair(const bf16_t* p) {
    return *(const unsigned int*)p;
}

__device__ __forceinline__ float ndt_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double ndt_warp_sum_f64(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float ndt_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `scratch` holds 32 doubles of shared memory. Fixed order: the result is deterministic.
__device__ __forceinline__ double ndt_block_sum_f64(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = ndt_warp_sum_f64(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0;
    return ndt_warp_sum_f64(v);
}

// Exact GELU: x * Phi(x), Phi the standard normal CDF.
__device__ __forceinline__ float ndt_gelu(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

// d gelu(x) / dx = Phi(x) + x * phi(x).
__device__ __forceinline__ float ndt_gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// softsign(z) = z / (1 + |z|); its derivative is 1 / (1 + |z|)^2.
__device__ __forceinline__ float ndt_softsign(float z) { return z / (1.0f + fabsf(z)); }

__device__ __forceinline__ float ndt_softsign_grad(float z) {
    float d = 1.0f + fabsf(z);
    return 1.0f / (d * d);
}

// Dropout: element `i` of the stream `key` is kept iff its uniform draw is >= p.
__device__ __forceinline__ bool ndt_keep(unsigned long long key, unsigned long long i, float p) {
    return p <= 0.0f || ndt_uniform(key, i) >= p;
}

// Dropout factor of element `i`: `keep_scale` when kept, 0 when dropped. Multiplied into the
// value (never a select of 0), so a dropped element keeps the sign of zero and a NaN or Inf
// still poisons it, as in the CPU reference and PyTorch (x * mask * scale).
__device__ __forceinline__ float ndt_drop_factor(unsigned long long key, unsigned long long i,
                                                 float p, float keep_scale) {
    return ndt_keep(key, i, p) ? keep_scale : 0.0f;
}

// Factor of a kept element, 1 / (1 - p), rounded from double as the CPU reference does.
__device__ __forceinline__ float ndt_keep_scale(float p) {
    return (float)(1.0 / (1.0 - (double)p));
}

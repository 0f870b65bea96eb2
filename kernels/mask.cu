// defines: mask_input_f32, dropout_forward_f32, dropout_backward_f32, rng_bits_u64,
//          rng_uniform_f32
//
// Input masking (x~ = x * (1 - M)) and dropout from the counter-based RNG. The dropout draw
// of element i of a tensor is ndt_uniform(ndt_key(seed, stream), i): the same draw the CPU
// reference makes, so both paths drop the same elements.
#include "common.cuh"

// out[i] = mask[i] ? 0 : counts[i]
// out, counts: [n]; mask: [n] (1 = zeroed)
extern "C" __global__ void mask_input_f32(float* out, const float* counts,
                                          const unsigned char* mask, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        out[i] = mask[i] ? 0.0f : counts[i];
    }
}

// out[i] = keep(i) ? in[i] / (1 - p) : 0, p = sc->dropout, keep from stream `stream` of sc->seed.
// In place is allowed (out == in). out, in: [n]
extern "C" __global__ void dropout_forward_f32(float* out, const float* in, int n,
                                               const StepScalars* sc, unsigned long long stream) {
    float p = sc->dropout;
    if (p <= 0.0f) {
        if (out != in)
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
                out[i] = in[i];
        return;
    }
    unsigned long long key = ndt_key(sc->seed, stream);
    float scale = ndt_keep_scale(p);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        out[i] = in[i] * ndt_drop_factor(key, (unsigned long long)i, p, scale);
    }
}

// Backward of dropout_forward_f32 (same draws): dx[i] = keep(i) ? dy[i] / (1 - p) : 0.
// In place is allowed (dx == dy). dx, dy: [n]
extern "C" __global__ void dropout_backward_f32(float* dx, const float* dy, int n,
                                                const StepScalars* sc, unsigned long long stream) {
    float p = sc->dropout;
    if (p <= 0.0f) {
        if (dx != dy)
            for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
                dx[i] = dy[i];
        return;
    }
    unsigned long long key = ndt_key(sc->seed, stream);
    float scale = ndt_keep_scale(p);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dx[i] = dy[i] * ndt_drop_factor(key, (unsigned long long)i, p, scale);
    }
}

// out[i] = ndt_bits(key, counter0 + i): checks the twin of src/rng.rs bit for bit.
extern "C" __global__ void rng_bits_u64(unsigned long long* out, int n, unsigned long long key,
                                        unsigned long long counter0) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        out[i] = ndt_bits(key, counter0 + (unsigned long long)i);
    }
}

// out[i] = ndt_uniform(key, counter0 + i)
extern "C" __global__ void rng_uniform_f32(float* out, int n, unsigned long long key,
                                           unsigned long long counter0) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        out[i] = ndt_uniform(key, counter0 + (unsigned long long)i);
    }
}

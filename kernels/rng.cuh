// defines: ndt_mix64, ndt_key, ndt_bits, ndt_uniform, ndt_below
//
// Counter-based random numbers, the twin of src/rng.rs: a draw is a pure function of
// (key, counter), so every thread makes the draw of its own element without state.
// The mixer is splitmix64's finalizer, applied twice. Keep bit-identical with src/rng.rs.
#pragma once

// splitmix64 finalizer: a bijective 64-bit mixer.
__device__ __forceinline__ unsigned long long ndt_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Key of the independent stream `stream` of `seed`.
__device__ __forceinline__ unsigned long long ndt_key(unsigned long long seed,
                                                      unsigned long long stream) {
    return ndt_mix64(seed ^ ndt_mix64(stream + 0x9e3779b97f4a7c15ULL));
}

// 64 random bits for element `counter` of stream `key`.
__device__ __forceinline__ unsigned long long ndt_bits(unsigned long long key,
                                                       unsigned long long counter) {
    return ndt_mix64(key ^ ndt_mix64(counter + 0x6a09e667f3bcc909ULL));
}

// Uniform float in [0, 1) with 24 bits of resolution (exact: both factors are exact floats).
__device__ __forceinline__ float ndt_uniform(unsigned long long key, unsigned long long counter) {
    return (float)(ndt_bits(key, counter) >> 40) * (1.0f / 16777216.0f);
}

// Uniform integer in [0, n), n > 0, by multiply-shift on 32 bits.
__device__ __forceinline__ unsigned int ndt_below(unsigned long long key,
                                                  unsigned long long counter, unsigned int n) {
    return (unsigned int)(((ndt_bits(key, counter) >> 32) * (unsigned long long)n) >> 32);
}

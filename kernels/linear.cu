// defines: col_sum_partial, col_sum_final
//
// Column sums of a row-major [R, C] matrix (the bias gradient of a Linear layer,
// db[c] = Σ_r dout[r, c]), deterministic in two passes: each block sums a fixed chunk of rows
// into a partial row, then one thread per column adds the partial rows in order.
// The products of a Linear layer are in gemm.cu.
#include "common.cuh"

#define CS_COLS 32
#define CS_ROWS 8

// partial[chunk, c] = Σ_{r in chunk} x[r * ld + c]; chunk = blockIdx.y covers rows_per_chunk rows.
// grid (ceil(C / 32), chunks), block (32, 8).
extern "C" __global__ void col_sum_partial(float* partial, const float* x, int rows, int cols,
                                           long long ld, int rows_per_chunk) {
    __shared__ float acc[CS_ROWS][CS_COLS + 1];
    int c = blockIdx.x * CS_COLS + threadIdx.x;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(rows, r0 + rows_per_chunk);
    float s = 0.0f;
    if (c < cols)
        for (int r = r0 + threadIdx.y; r < r1; r += CS_ROWS) s += x[(long long)r * ld + c];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float t = 0.0f;
#pragma unroll
        for (int i = 0; i < CS_ROWS; i++) t += acc[i][threadIdx.x];
        partial[(long long)blockIdx.y * cols + c] = t;
    }
}

// out[c] = Σ_chunk partial[chunk, c] (accumulate: out[c] += …).
extern "C" __global__ void col_sum_final(float* out, const float* partial, int chunks, int cols,
                                         int accumulate) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float t = 0.0f;
    for (int i = 0; i < chunks; i++) t += partial[(long long)i * cols + c];
    out[c] = accumulate ? out[c] + t : t;
}

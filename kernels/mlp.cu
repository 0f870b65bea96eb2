// defines: gelu_forward_f32, gelu_backward_f32
//
// The block MLP fc2(gelu(fc1(x))): both products and the forward GELU are fused GEMMs
// (gemm.cu, epilogue ACT_GELU, which also stores the pre-activation). This file holds the
// activation rebuilt from the pre-activation for the backward (the same ndt_gelu as the
// epilogue, so the same bits) and the backward of the activation.
#include "common.cuh"

// act = gelu(pre). act, pre: [n]
extern "C" __global__ void gelu_forward_f32(float* act, const float* pre, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        act[i] = ndt_gelu(pre[i]);
}

// backward of act = gelu(pre): dpre = dact * (Phi(pre) + pre * phi(pre)). In place allowed.
// dpre, dact, pre: [n]
extern "C" __global__ void gelu_backward_f32(float* dpre, const float* dact, const float* pre,
                                             int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        dpre[i] = dact[i] * ndt_gelu_grad(pre[i]);
}

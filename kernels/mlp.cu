// defines: gelu_backward_f32
//
// The block MLP fc2(gelu(fc1(x))): both products and the forward GELU are fused GEMMs
// (gemm.cu, epilogue ACT_GELU, which also stores the pre-activation). This file holds the
// backward of the activation.
#include "common.cuh"

// backward of act = gelu(pre): dpre = dact * (Phi(pre) + pre * phi(pre)). In place allowed.
// dpre, dact, pre: [n]
extern "C" __global__ void gelu_backward_f32(float* dpre, const float* dact, const float* pre,
                                             int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        dpre[i] = dact[i] * ndt_gelu_grad(pre[i]);
}

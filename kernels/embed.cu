// defines: softsign_backward_f32, embed_assemble_forward, embed_assemble_backward,
//          drop_prefix_f32, pad_prefix_f32
//
// The embedding of SPEC §2 steps 3–4 around the fused GEMMs (fc1 with the softsign epilogue,
// fc2), and the layout of the sequence: [token[s], mask_tokens[scheme], emb_t + pos_t].
// Legend: B batch, T bins of the batch, S = T + 2, D d_model, P n_bins (rows of pos).
#include "common.cuh"

// backward of sg = softsign(a1): da1 = dsg / (1 + |a1|)^2. In place allowed. [n]
extern "C" __global__ void softsign_backward_f32(float* da1, const float* dsg, const float* a1,
                                                 int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        da1[i] = dsg[i] * ndt_softsign_grad(a1[i]);
}

// z0 = dropout(seq), seq[b, 0] = token, seq[b, 1] = mask_tokens[sc->scheme],
// seq[b, 2 + t] = emb[b, t] + pos[t]; dropout counter = flat index in [B, S, D].
// z0: [B, S, D]; emb: [B, T, D]; token: [D]; mask_tokens: [4, D]; pos: [P >= T, D].
extern "C" __global__ void embed_assemble_forward(float* z0, const float* emb, const float* token,
                                                  const float* mask_tokens, const float* pos,
                                                  int b, int t, int d, const StepScalars* sc,
                                                  unsigned long long stream) {
    int s = t + 2;
    long long total = (long long)b * s * d;
    float drop_p = sc->dropout;
    unsigned long long key = drop_p > 0.0f ? ndt_key(sc->seed, stream) : 0ULL;
    float keep = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
    const float* prompt = mask_tokens + (long long)sc->scheme * d;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        int j = (int)(idx % d);
        long long row = idx / d;
        int si = (int)(row % s);
        long long bi = row / s;
        float v;
        if (si == 0) v = token[j];
        else if (si == 1) v = prompt[j];
        else v = emb[(bi * t + (si - 2)) * d + j] + pos[(long long)(si - 2) * d + j];
        z0[idx] = v * ndt_drop_factor(key, (unsigned long long)idx, drop_p, keep);
    }
}

// backward of embed_assemble_forward, with dseq = dropout'(dz0) recomputed on the fly:
// demb[b, t] = dseq[b, 2 + t]; dtoken = Σ_b dseq[b, 0]; dmask_tokens[scheme] = Σ_b dseq[b, 1]
// and 0 for the other rows; dpos[t] = Σ_b dseq[b, 2 + t] for t < T and 0 for T <= t < P.
// Parameter gradients are written (not added); sums over b run in order (deterministic).
// One thread per (row of [token, prompt, pos…], channel): (P + 2) * D threads.
extern "C" __global__ void embed_assemble_backward(float* demb, float* dtoken, float* dmask_tokens,
                                                   float* dpos, const float* dz0, int b, int t,
                                                   int p_rows, int d, const StepScalars* sc,
                                                   unsigned long long stream) {
    int s = t + 2;
    long long total = (long long)(p_rows + 2) * d;
    float drop_p = sc->dropout;
    unsigned long long key = drop_p > 0.0f ? ndt_key(sc->seed, stream) : 0ULL;
    float keep = drop_p > 0.0f ? ndt_keep_scale(drop_p) : 1.0f;
    int scheme = sc->scheme;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        int j = (int)(idx % d);
        int si = (int)(idx / d);
        float acc = 0.0f;
        if (si < s)
            for (int bi = 0; bi < b; bi++) {
                unsigned long long k = ((unsigned long long)bi * s + si) * d + j;
                float g = dz0[k] * ndt_drop_factor(key, k, drop_p, keep);
                acc += g;
                if (si >= 2) demb[((long long)bi * t + (si - 2)) * d + j] = g;
            }
        // A null dtoken, dmask_tokens or dpos (a frozen tensor's) is not written.
        if (si == 0) {
            if (dtoken) dtoken[j] = acc;
        } else if (si == 1) {
            if (dmask_tokens)
                for (int r = 0; r < 4; r++) dmask_tokens[r * d + j] = (r == scheme) ? acc : 0.0f;
        } else {
            if (dpos) dpos[(long long)(si - 2) * d + j] = acc;
        }
    }
}

// y[b, t] = seq[b, 2 + t] (the data tokens). y: [B, T, D]; seq: [B, S, D].
extern "C" __global__ void drop_prefix_f32(float* y, const float* seq, int b, int t, int d) {
    long long total = (long long)b * t * d;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        long long row = idx / d;
        int j = (int)(idx % d);
        long long bi = row / t, ti = row % t;
        y[idx] = seq[(bi * (t + 2) + ti + 2) * d + j];
    }
}

// backward of drop_prefix_f32: dseq[b, 0..2] = 0, dseq[b, 2 + t] = dy[b, t].
extern "C" __global__ void pad_prefix_f32(float* dseq, const float* dy, int b, int t, int d) {
    int s = t + 2;
    long long total = (long long)b * s * d;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        long long row = idx / d;
        int j = (int)(idx % d);
        long long bi = row / s;
        int si = (int)(row % s);
        dseq[idx] = si < 2 ? 0.0f : dy[(bi * t + si - 2) * d + j];
    }
}

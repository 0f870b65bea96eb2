// defines: bps_accumulate
//
// Sufficient statistics of bits per spike (SPEC §5, paper eq. 1) per neuron, in f64, added to
// running sums across batches: the twin of `eval::bps::BpsAccum::add_log_rate`.
//   count[j] += 1, spikes[j] += x, model_nll[j] += λ - x ln λ,  λ = exp(r) (0 -> 1e-9),
// over the included entries of neuron j (NaN counts skipped). Legend: R rows (B·T), N neurons.
#include "common.cuh"

// count, spikes, model_nll: [N]; log_rates, x: [R, N]; include: [R, N] (null: every entry).
// One thread per neuron; rows in order (deterministic). grid ceil(N / 128), block 128.
extern "C" __global__ void bps_accumulate(unsigned long long* count, double* spikes,
                                          double* model_nll, const float* log_rates,
                                          const float* x, const unsigned char* include, int rows,
                                          int n) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    unsigned long long c = 0;
    double sp = 0.0, nll = 0.0;
    for (int r = 0; r < rows; r++) {
        long long i = (long long)r * n + j;
        if (include && !include[i]) continue;
        double xv = (double)x[i];
        if (xv != xv) continue;
        double lam = exp((double)log_rates[i]);
        if (lam == 0.0) lam = 1e-9;
        c += 1;
        sp += xv;
        nll += lam - xv * log(lam);
    }
    count[j] += c;
    spikes[j] += sp;
    model_nll[j] += nll;
}

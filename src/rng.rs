//! Counter-based RNG shared by the CPU and CUDA paths.

//! Counter-based random numbers shared by the CPU and CUDA paths.
//!
//! A draw is a pure function of `(key, counter)`, so any thread of any backend can produce the
//! draw for element `i` without state: `uniform(key, i)`. The mixer is splitmix64's finalizer
//! (Steele, Lea & Flood 2014), applied twice; `kernels/rng.cuh` is its twin on the GPU.

/// splitmix64 finalizer: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key of an independent stream derived from a seed and a stream number
/// (e.g. one stream per training step and purpose).
#[inline]
pub fn key(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// 64 random bits for element `counter` of stream `key`.
#[inline]
pub fn bits(key: u64, counter: u64) -> u64 {
    mix64(key ^ mix64(counter.wrapping_add(0x6a09_e667_f3bc_c909)))
}

/// Uniform f32 in [0, 1) with 24 bits of resolution.
#[inline]
pub fn uniform(key: u64, counter: u64) -> f32 {
    (bits(key, counter) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Uniform integer in `0..n` (n > 0), by multiply-shift on 32 bits (bias < n / 2^32).
#[inline]
pub fn below(key: u64, counter: u64, n: u32) -> u32 {
    (((bits(key, counter) >> 32) * n as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let k = key(42, 7);
        let n = 100_000u64;
        let mut hist = [0u32; 10];
        for i in 0..n {
            let u = uniform(k, i);
            assert!((0.0..1.0).contains(&u));
            hist[(u * 10.0) as usize] += 1;
        }
        for h in hist {
            assert!((h as f64 - 10_000.0).abs() < 400.0, "bucket {h}");
        }
    }

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(bits(key(1, 2), 3), bits(key(1, 2), 3));
        assert_ne!(bits(key(1, 2), 3), bits(key(1, 3), 3));
        assert_ne!(bits(key(1, 2), 3), bits(key(2, 2), 3));
        for i in 0..1000 {
            assert!(below(key(5, 5), i, 7) < 7);
        }
    }
}

//! Content hashes, all SHA-256 (the `sha2` crate): a file's digest recorded in a dataset's
//! provenance (`sha256sum` prints the same), job ids, and the kernel caches' file names.
//!
//! Not for seeds: `model::init` derives each tensor's random stream from its name with its own
//! fixed function, which must never change (it would change every initial weight).

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(bytes);
    h.hex()
}

/// A streaming SHA-256, for data read in blocks.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher(Sha256::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest as 64 lowercase hex digits.
    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A 128-bit id (32 hex digits: the first half of the SHA-256) of a sequence of byte strings.
/// Each part is length-prefixed, so `["ab", "c"]` and `["a", "bc"]` get different ids.
pub fn id_of(parts: &[&[u8]]) -> String {
    let mut h = Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut s = h.hex();
    s.truncate(32);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // FIPS 180-4 examples and edge lengths around the padding boundary.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            sha256_hex(&[b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn streaming_equals_one_shot_across_block_edges() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for split in [0, 1, 55, 56, 63, 64, 65, 999, 1000] {
            let mut h = Hasher::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.hex(), sha256_hex(&data), "split at {split}");
        }
    }

    #[test]
    fn ids_are_32_hex_digits_and_separate_their_parts() {
        let a = id_of(&[b"ab", b"c"]);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, id_of(&[b"a", b"bc"]));
        assert_ne!(a, id_of(&[b"abc"]));
        assert_eq!(a, id_of(&[b"ab", b"c"]));
    }
}

//! FNV-1a, 32 and 64 bits: tiny, dependency-free, and stable across runs, platforms and
//! Rust versions (unlike `DefaultHasher`), which is what sticky keys and generated names
//! need. Not for untrusted keys in a hash table: it has no protection against flooding.

const OFFSET32: u32 = 0x811c_9dc5;
const PRIME32: u32 = 0x0100_0193;
/// The 64-bit offset basis: the state to start [`fnv1a64_extend`] from.
pub(crate) const OFFSET64: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME64: u64 = 0x0000_0100_0000_01b3;

/// 32-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(OFFSET32, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME32))
}

/// 64-bit FNV-1a hash; the sticky key of a client id is `fnv1a64(id)`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(OFFSET64, bytes)
}

/// Continues a 64-bit FNV-1a hash from `state` over `bytes`, for hashing a sequence of
/// pieces without joining them first.
pub(crate) fn fnv1a64_extend(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME64))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference vectors from the FNV authors' test suite (draft-eastlake-fnv).
    #[test]
    fn fnv1a32_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn fnv1a64_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn extending_equals_hashing_the_concatenation() {
        assert_eq!(fnv1a64_extend(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
        assert_eq!(fnv1a64_extend(OFFSET64, b""), fnv1a64(b""));
    }
}
